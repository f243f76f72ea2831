"""The report of ``target``: the summary line, the targeting curve figure and the HTML
document (core/report/page.py).

Plain Python: ``report_document`` is also called inside QGIS, after QGIS has
rendered the map; matplotlib is imported only where the figure is drawn.
"""

from __future__ import annotations  # imported inside QGIS too (report_document), maybe Python 3.9

import types
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..names import CELL_ID
from .selection import ALLOCATION_COLUMNS, INTERVAL_COLUMNS

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def headline(summary: dict[str, Any]) -> str:
    expected = summary["expected"]
    text = (
        f"{summary['selected_cells']} cells selected"
        + (
            f" ({summary['selected_people']:,.0f} people)"
            if summary["selected_people"] is not None
            else ""
        )
        + f"; expected coverage of the poor {_percent(expected['coverage'])}, inclusion error "
        f"{_percent(expected['inclusion_error'])}, exclusion error {_percent(expected['exclusion_error'])}"
    )
    if summary["measured"]:
        measured = summary["measured"]["measured"]
        text += (
            f"; measured on {summary['measured']['truth_cells']} TRUTH cells: coverage "
            f"{_percent(measured['coverage'])}, inclusion error {_percent(measured['inclusion_error'])}, "
            f"exclusion error {_percent(measured['exclusion_error'])}"
        )
    return text


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


# name -> (legend label, colour, line width, line style) of the targeting curves
TARGETING_CURVES = {
    "model": ("model (cells in the map's order)", "#000000", 2.4, "-"),
    "baseline": ("transparent baseline (prob_baseline)", "#0072B2", 1.5, "--"),
    "district": ("district targeting (whole districts)", "#E69F00", 1.6, "-"),
    "district_survey": ("district targeting by the TRUTH survey's rates", "#CC79A7", 1.3, "-."),
    "random": ("random selection", "#888888", 1.0, ":"),
}


def targeting_curve_figure(
    panels: Sequence[tuple[str, Mapping[str, Any], Mapping[str, Any] | None]],
    x_label: str,
    y_label: str,
) -> Figure:
    """Targeting curves side by side: ``panels`` = [(title, {name: [x, y]}, budget point {x, y})].

    Names as in TARGETING_CURVES; the budget is marked by a dot on the
    selection and a vertical line at its share.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.4 * len(panels) + 0.4, 5.0))
    for axes, (title, curves, point) in zip(
        figure.subplots(1, len(panels), squeeze=False)[0], panels, strict=True
    ):
        for name, (label, colour, width, style) in TARGETING_CURVES.items():
            if name in curves:
                x, y = curves[name]
                axes.plot(x, y, color=colour, linewidth=width, linestyle=style, label=label)
        if point and point.get("x") is not None and point.get("y") is not None:
            axes.axvline(point["x"], color="#D55E00", linewidth=1, alpha=0.6)
            axes.plot(
                [point["x"]],
                [point["y"]],
                marker="o",
                color="#D55E00",
                markersize=8,
                linestyle="none",
                label=f"this budget ({point['x']:.0%} enrolled, {point['y']:.0%} covered)",
            )
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1.01)
        axes.set_aspect("equal")
        axes.set_xlabel(x_label)
        axes.set_ylabel(y_label)
        axes.set_title(title, fontsize=10)
        axes.grid(alpha=0.3)
        axes.legend(loc="lower right", fontsize=7.5)
    figure.tight_layout()
    return figure


# the allocation's columns in the report (all but cells_predicted)
REPORT_ALLOCATION_COLUMNS = tuple(
    key for key in ALLOCATION_COLUMNS if key not in ("cells_predicted", *INTERVAL_COLUMNS)
)  # the intervals are shown beside the expected numbers


def report_document(
    summary: dict[str, Any], maps: Iterable[tuple[str, str]] = ()
) -> dict[str, Any]:
    """Title, subtitle, notices and sections of the HTML report; ``maps``: [(png path, caption)]."""
    from ..report import page as report

    sections = [
        _summary_section(summary, report),
        _curve_section(summary, report),
        _allocation_section(summary, report),
    ]
    if maps:
        sections.append(
            report.Section("Map", [report.Figure(path, caption, caption) for path, caption in maps])
        )
    sections.append(_settings_section(summary, report))
    if summary["notes"]:
        sections.append(report.Section("Notes", [report.BulletList(summary["notes"])]))
    return {
        "title": "Targeting with the poverty map",
        "subtitle": f"{summary['data'].get('name') or summary['data']['layer']}: "
        f"{headline(summary)}",
        "notices": [],
        "sections": sections,
    }


def _poor_unit(summary: dict[str, Any]) -> str:
    return "poor people" if summary["selected_people"] is not None else "poor cells"


def _summary_section(summary: dict[str, Any], report: types.ModuleType) -> Any:
    """The selection in a sentence and in numbers, expected (and measured) errors."""
    settings, budget, expected = summary["settings"], summary["budget"], summary["expected"]
    people = summary["selected_people"] is not None
    enrolled = (
        f"{summary['selected_cells']:,} cells ({summary['selected_people']:,.0f} people)"
        if people
        else f"{summary['selected_cells']:,} cells"
    )
    ranked_by = (
        "expected poor people (probability × people)"
        if settings["rank_by"] == "expected_poor"
        else "predicted probability of being poor"
    )
    plain = (
        f"The budget of {_budget_text(budget)} enrols {enrolled}, ranked by {ranked_by}. "
        f"By the model's probabilities these cells hold {_percent(expected['coverage'])} of the "
        f"{_poor_unit(summary)} of the area; {_percent(expected['inclusion_error'])} of those "
        "enrolled are expected not to be poor (inclusion error) and "
        f"{_percent(expected['exclusion_error'])} of the poor are expected to be left out "
        "(exclusion error)."
    )
    rows = [
        ("Selected cells", summary["selected_cells"]),
        (
            "Selected people",
            f"{round(summary['selected_people']):,}" if people else "no POPULATION",
        ),
        (
            f"Budget spent ({budget['units']})",
            f"{budget['spent']:,.0f} of {budget['in_units']:,.0f}",
        ),
        ("Expected share of the poor covered", _percent(expected["coverage"]) + _between(expected)),
        ("Expected inclusion error (enrolled, not poor)", _percent(expected["inclusion_error"])),
        ("Expected exclusion error (poor, left out)", _percent(expected["exclusion_error"])),
    ]
    measured = summary.get("measured")
    if measured:
        values = measured["measured"]
        rows += [
            (
                f"Measured on {measured['truth_cells']} TRUTH cells: share of the poor covered",
                _percent(values["coverage"]),
            ),
            ("Measured inclusion error", _percent(values["inclusion_error"])),
            ("Measured exclusion error", _percent(values["exclusion_error"])),
        ]
    blocks = [report.Paragraph(plain, kind="notice"), report.KeyValues(rows)]
    if not budget["reachable"]:
        blocks.append(
            report.Paragraph(
                "The district caps made the budget unreachable: every cell they allow is selected.",
                kind="warning",
            )
        )
    return report.Section("Summary", blocks)


def _curve_section(summary: dict[str, Any], report: types.ModuleType) -> Any:
    """What the targeting curves show, their figure, and expected against measured on TRUTH."""
    measured = summary.get("measured")
    text = (
        f"Share of the {summary['budget']['units']} enrolled (x) against the share of the "
        f"{_poor_unit(summary)} covered (y) when cells are enrolled in the model's order; random "
        "selection (the diagonal); district targeting, what programmes often do today: whole "
        "districts in turn, ranked by their mean predicted probability"
    )
    if measured:
        text += (
            " (measured panel: also by their poverty rate in the TRUTH survey, as a programme "
            "with a survey of every district would)"
        )
    if summary["data"]["has_baseline"]:
        text += ", and the transparent baseline (prob_baseline)"
    text += (
        ". The dot marks this budget's selection. Expected curves judge every ranking by the "
        "model's own probabilities"
    )
    text += (
        "; the measured ones use the TRUTH labels and are the fair comparison." if measured else "."
    )
    blocks = [report.Paragraph(text)]
    figures = summary.get("figures") or {}
    if figures.get("curve"):
        blocks.append(report.Figure(figures["curve"], "Targeting curves", "targeting curves"))
    if measured:
        blocks.append(_expected_and_measured_table(measured, report))
    return report.Section("Targeting curve", blocks)


def _expected_and_measured_table(measured: dict[str, Any], report: types.ModuleType) -> Any:
    """On the TRUTH cells: the coverage and errors the model expected beside those measured."""
    keys = ("coverage", "inclusion_error", "exclusion_error")
    on_truth = measured["expected_on_truth_cells"]
    return report.Table(
        ["on the TRUTH cells", "share of the poor covered", "inclusion error", "exclusion error"],
        [
            ["expected"] + [on_truth[key] for key in keys],
            ["measured"] + [measured["measured"][key] for key in keys],
        ],
        caption=f"{measured['truth_cells']} predicted cells labelled by TRUTH "
        f"({measured['truth_poor_cells']} poor), {measured['truth_cells_selected']} of them "
        "selected.",
    )


def _allocation_section(summary: dict[str, Any], report: types.ModuleType) -> Any:
    """The allocation table (the ALLOCATION CSV's rows)."""
    headers = [
        "district",
        "cells",
        "people",
        "cells selected",
        "people selected",
        f"expected {_poor_unit(summary)}",
        "expected poor covered",
        "share of district selected",
        "share of the budget",
    ]
    return report.Section(
        "Allocation per district",
        [
            report.Table(
                headers,
                [
                    [_with_interval(row, key) for key in REPORT_ALLOCATION_COLUMNS]
                    for row in summary["allocation"]
                ],
                digits=2,
                caption="Shares in the budget's units. The same table is the ALLOCATION CSV "
                "(people there in whole people). In brackets: the interval of the expected poor, "
                "the district's prob_low–prob_high summed (its cells share the calibration's "
                "error) widened by the sampling error of its cells' labels.",
            )
        ],
    )


def _between(expected: dict[str, Any]) -> str:
    """ " (90 % interval a–b: …)" of the expected coverage, or "" without prob_low/prob_high."""
    low, high = expected.get("coverage_interval") or (None, None)
    if low is None or high is None:
        return ""
    return (
        f" ({100 * expected['interval_nominal']:.0f} % interval {_percent(low)}–{_percent(high)}: "
        "the cells' prob_low–prob_high, their errors taken as shared)"
    )


def _with_interval(row: dict[str, Any], key: str) -> Any:
    """An allocation value for the report; the expected poor (covered) with its interval."""
    value = row[key]
    if key in ("expected_poor", "expected_poor_covered") and row.get(f"{key}_low") is not None:
        return f"{value:,.1f} ({row[f'{key}_low']:,.1f}–{row[f'{key}_high']:,.1f})"
    return value


def _settings_section(summary: dict[str, Any], report: types.ModuleType) -> Any:
    """The run's inputs, budget and options, the prediction layer's cells, when it was made."""
    settings, data = summary["settings"], summary["data"]
    probabilities = (
        "calibrated on validation cells (prob_raw kept)"
        if data.get("calibrated")
        else "not calibrated (older model package): see Notes"
    )
    people = round(data["population_total"]) if data["population_total"] is not None else "–"
    return report.Section(
        "Settings and data",
        [
            report.KeyValues(
                [
                    ("Predictions", settings["predictions"]),
                    ("Cell id field", settings.get("id_field") or CELL_ID),
                    ("Population raster", settings["population"] or "none (cells counted)"),
                    ("Ground truth", settings["truth"] or "none"),
                    ("Budget", _budget_text(summary["budget"])),
                    ("Ranked by", settings["rank_by"]),
                    ("District floor", settings["district_min_share"] or "none"),
                    ("District cap", settings["district_max_share"] or "none"),
                    ("Skip cells out of range", settings["skip_out_of_range"]),
                    ("Model", settings.get("model") or "not recorded"),
                    ("Probabilities", probabilities),
                    ("Cells", data["cells"]),
                    ("Cells with a prediction", data["predicted"]),
                    ("Cells that could be selected", data["rankable"]),
                    ("People (POPULATION)", people),
                    ("Created", f"{summary['created']} by povmap-qgis {settings['povmap_qgis']}"),
                ]
            )
        ],
    )


def budget_text(budget: dict[str, Any]) -> str:
    """The budget in short ('30 % of the cells', '9,000 people'), as output layer names say it."""
    return _budget_text(budget).split(" (")[0]


def _budget_text(budget: dict[str, Any]) -> str:
    unit = budget["unit"]
    if unit.startswith("share_"):
        return f"{100 * budget['value']:g} % of the {budget['units']} ({budget['in_units']:,.0f} {budget['units']})"
    return f"{budget['value']:,.0f} {budget['units']}"
