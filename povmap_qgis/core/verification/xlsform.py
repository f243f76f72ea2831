"""The XLSForm (.xlsx) of a verification visit, for ODK Collect and KoBoToolbox.

A minimal default — not a poverty scorecard of our own: the cell, where and when,
how many households were visited, how many the programme's own rule judges poor,
whether the cell is poor (most of its households are: the map's label is the
median household's), a photo and notes. A programme adds its scorecard's
questions to the ``survey`` sheet (inside the ``visit`` group) and keeps these
names: Accuracy from the verification reads ``cell_id``, ``observed_poor``,
``households_visited`` and ``households_poor`` from the returns, with or
without the group prefix (``visit/observed_poor`` in KoBo, ``visit-observed_poor``
in ODK Central). The sampled cells are the choice list ``cell`` (with each
centre as ``geometry``, so ODK Collect can pick the cell from a map).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

GROUP = "visit"
SURVEY_COLUMNS = (
    "type",
    "name",
    "label",
    "hint",
    "required",
    "constraint",
    "constraint_message",
    "appearance",
    "default",
    "parameters",
)
YES, NO = "yes", "no"


def survey_rows(id_field: str) -> list[dict[str, str]]:
    """The survey sheet's rows (dicts by SURVEY_COLUMNS)."""
    return [
        {"type": "begin_group", "name": GROUP, "label": "Verification visit"},
        {
            "type": "select_one cell",
            "name": id_field,
            "label": "Cell",
            "hint": "The sampled cell you are in (its number on the list or map).",
            "required": "yes",
            "appearance": "map",
        },
        {"type": "geopoint", "name": "location", "label": "Where you are"},
        {"type": "date", "name": "visit_date", "label": "Date of the visit", "default": "today()"},
        {
            "type": "integer",
            "name": "households_visited",
            "label": "Households visited",
            "required": "yes",
            "constraint": ". >= 1",
            "constraint_message": "At least one household.",
        },
        {
            "type": "integer",
            "name": "households_poor",
            "label": "Households judged poor by the programme's rule",
            "hint": "Counted with the programme's own scorecard or rule.",
            "required": "yes",
            "constraint": ". >= 0 and . <= ${households_visited}",
            "constraint_message": "Not more than the households visited.",
        },
        {
            "type": "select_one yes_no",
            "name": "observed_poor",
            "label": "Is the cell poor (more than half of its households poor)?",
            "required": "yes",
        },
        {
            "type": "image",
            "name": "photo",
            "label": "Photo (optional)",
            "parameters": "max-pixels=1024",
        },
        {"type": "text", "name": "notes", "label": "Notes"},
        {"type": "end_group", "name": GROUP},
    ]


def write_xlsform(
    path: str,
    cells: Iterable[tuple[Any, str, float, float]],
    id_field: str,
    title: str,
    form_id: str,
    version: str,
) -> None:
    """Write the form to ``path``; ``cells``: [(id, label, latitude, longitude)]; ``id_field``:
    the name of the cell question (the sample's id field)."""
    from openpyxl import Workbook

    book = Workbook()
    survey = book.active
    survey.title = "survey"
    survey.append(list(SURVEY_COLUMNS))
    for row in survey_rows(id_field):
        survey.append([row.get(column, "") for column in SURVEY_COLUMNS])
    choices = book.create_sheet("choices")
    choices.append(["list_name", "name", "label", "geometry"])
    for cell, label, latitude, longitude in cells:
        choices.append(["cell", str(cell), label, f"{latitude:.7f} {longitude:.7f} 0 0"])
    choices.append(["yes_no", YES, "Yes", ""])
    choices.append(["yes_no", NO, "No", ""])
    settings = book.create_sheet("settings")
    settings.append(["form_title", "form_id", "version"])
    settings.append([title, form_id, version])
    book.save(path)
