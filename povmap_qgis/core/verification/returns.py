"""What comes back from the field, matched to the sample by cell id.

Three kinds of returns, one reader:

- nothing (RETURNS empty): the sample layer itself, its visit fields filled in
  (in QGIS, or by QField on the layer of the field project);
- a GeoPackage or other vector file: the copy QField (or anyone) edited;
- a CSV or XLSX export of ODK Central or KoBoToolbox: column names may carry the
  form's group (``visit/observed_poor`` in KoBo, ``visit-observed_poor`` in ODK
  Central) and the servers' own columns (``_uuid``, ``_submission_time``,
  ``KEY``, ``meta-instanceID``), which are used to name a submission.

A column answers to a field when its name is the field's, or ends with ``/field``
or ``-field``. ``observed_poor``: 1/0, yes/no, true/false (any case); empty
with both counts given: poor when more than half of the households visited are
judged poor (the map's label is the median household's). A cell with no usable
return is a missing visit: listed, never guessed.

Refused, with the rows named (never silently dropped): no id column, a return
without an id, an id not in the sample, a cell returned twice, an
``observed_poor`` that is not yes/no, counts that are not whole numbers, more
poor households than households visited.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import PovmapInputError

if TYPE_CHECKING:
    import pandas as pd


OBSERVED_FIELD = "observed_poor"
COUNT_FIELDS = ("households_visited", "households_poor")
SUBMISSION_COLUMNS = ("_uuid", "KEY", "meta-instanceID", "meta/instanceID", "instanceID", "_id")
YES = {"1", "yes", "y", "true", "oui", "si", "sí", "1.0"}
NO = {"0", "no", "n", "false", "non", "0.0"}
SHOWN = 8


def column_for(columns: Iterable[str], field: str) -> str | None:
    """The column answering to ``field`` (exact, else with a group prefix), or None."""
    if field in columns:
        return field
    matches = [c for c in columns if str(c).endswith((f"/{field}", f"-{field}"))]
    return matches[0] if len(matches) == 1 else None


def read_returns(path: str, parameter: str = "RETURNS") -> pd.DataFrame:
    """The returns as a pandas DataFrame of strings (every cell as text, '' when empty)."""
    import pandas

    extension = os.path.splitext(path)[1].lower()
    try:
        if extension in (".csv", ".txt"):
            frame = pandas.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        elif extension in (".xlsx", ".xlsm"):
            frame = pandas.read_excel(path, dtype=str, keep_default_na=False, engine="openpyxl")
        else:
            import pyogrio

            from ..vectors import spatial_layer

            layer = spatial_layer(path, None, parameter)
            frame = pyogrio.read_dataframe(path, layer=layer, read_geometry=False)
            frame = frame.astype(object).where(frame.notna(), "").astype(str)
    except PovmapInputError:
        raise
    except Exception as error:
        raise PovmapInputError(
            parameter,
            f"cannot read '{path}' ({error}); give the CSV or XLSX export of ODK Central or "
            "KoBoToolbox, or the GeoPackage QField edited.",
        ) from None
    return frame.fillna("")


def observations(
    frame: pd.DataFrame,
    sample_ids: Iterable[Any],
    id_field: str,
    observed_field: str,
    parameter: str = "RETURNS",
    id_parameter: str = "ID_FIELD",
) -> dict[int, tuple[int, int | None, int | None]]:
    """{cell id: (observed 1/0, households visited or None, households poor or None)} of the
    returns in ``frame`` (strings), checked against the sample's ids (see the module doc)."""
    columns = [str(column) for column in frame.columns]
    id_column = column_for(columns, id_field)
    if id_column is None:
        raise PovmapInputError(
            id_parameter,
            f"the returns have no {id_field} column (nor one ending in /{id_field} or -{id_field}): "
            f"its columns are {', '.join(columns[:30]) or 'none'}; choose the column holding the "
            "cell id in Cell id field in the returns (ID_FIELD).",
        )
    observed_column = column_for(columns, observed_field)
    count_columns = {field: column_for(columns, field) for field in COUNT_FIELDS}
    if observed_column is None and None in count_columns.values():
        raise PovmapInputError(
            "OBSERVED_FIELD",
            f"the returns have no {observed_field} column, nor both {' and '.join(COUNT_FIELDS)}: "
            f"its columns are {', '.join(columns[:30]) or 'none'}.",
        )
    submission = next(
        (column_for(columns, name) for name in SUBMISSION_COLUMNS if column_for(columns, name)),
        None,
    )
    known = {int(cell) for cell in sample_ids}
    found: dict[int, tuple[int, int | None, int | None]] = {}
    where: dict[int, str] = {}
    problems: dict[str, list[str]] = {
        "no_id": [],
        "unknown": [],
        "twice": [],
        "observed": [],
        "counts": [],
        "above": [],
    }
    for number, row in enumerate(frame.to_dict("records"), start=2):
        name = f"row {number}" + (
            f" ({row[submission]})" if submission and row.get(submission) else ""
        )
        text = str(row[id_column]).strip()
        if not text:
            problems["no_id"].append(name)
            continue
        try:
            cell = _cell_id(text)
        except (ValueError, ArithmeticError):
            problems["unknown"].append(f"{text} ({name})")
            continue
        if cell not in known:
            problems["unknown"].append(f"{cell} ({name})")
            continue
        counts = []
        for field in COUNT_FIELDS:
            value = str(row.get(count_columns[field], "") if count_columns[field] else "").strip()
            count = _whole_number(value)
            if value and count is None:
                problems["counts"].append(f"{cell} ({name}: {field} '{value}')")
            counts.append(count)
        visited, poor = counts
        if visited is not None and poor is not None and poor > visited:
            problems["above"].append(f"{cell} ({name}: {poor} poor of {visited} visited)")
        value = str(row.get(observed_column, "") if observed_column else "").strip().lower()
        observed: int | None
        if value in YES:
            observed = 1
        elif value in NO:
            observed = 0
        elif not value:
            observed = (
                None if visited is None or poor is None or not visited else int(2 * poor > visited)
            )
        else:
            problems["observed"].append(f"{cell} ({name}: '{value}')")
            continue
        if observed is None:
            continue  # a row without an answer: the cell counts as not visited
        if cell in found:
            problems["twice"].append(f"{cell} ({where[cell]} and {name})")
            continue
        found[cell], where[cell] = (observed, visited, poor), name
    _refuse(problems, parameter, id_field, observed_field)
    return found


def _cell_id(text: str) -> int:
    """The whole-number id in ``text``, exactly (povmap's ids have 18 digits: no float on the way)."""
    import decimal

    try:
        return int(text)
    except ValueError:
        number = decimal.Decimal(text)  # "2.0", "5.00000282650000064E17"
        if number != number.to_integral_value():
            raise ValueError(text) from None
        return int(number)


def _whole_number(text: str) -> int | None:
    """A count of 0 or more from its text, None when empty or not one."""
    try:
        number = float(text)
    except ValueError:
        return None
    if not math.isfinite(number) or number < 0 or number != int(number):
        return None
    return int(number)


MESSAGES = {
    "no_id": "returns without a cell id",
    "unknown": "cell ids that are not in the sample (a typing error? a cell of another sample?)",
    "twice": "cells returned more than once (keep one return per cell)",
    "observed": "{observed} values that are not yes/no or 1/0",
    "counts": "household counts that are not whole numbers of 0 or more",
    "above": "more households judged poor than households visited",
}


def _refuse(
    problems: Mapping[str, list[str]], parameter: str, id_field: str, observed_field: str
) -> None:
    found = [(kind, rows) for kind, rows in problems.items() if rows]
    if not found:
        return
    parts = []
    for kind, rows in found:
        shown = ", ".join(rows[:SHOWN]) + (f", … ({len(rows)} in all)" if len(rows) > SHOWN else "")
        parts.append(f"{len(rows)} {MESSAGES[kind].format(observed=observed_field)}: {shown}")
    raise PovmapInputError(
        parameter,
        "the returns cannot be used as they are — " + "; ".join(parts) + ". Correct them in the "
        f"file (or on the server and export again); every return needs its cell's {id_field}. "
        "Nothing was written.",
    )
