"""The reports' "Uncertainty intervals" section (cross-validation and evaluation).

Plain Python (no numpy): called inside QGIS. ``coverage`` is
``interval_coverage.coverage``'s dict; older metrics (before the district check) hold
the per-bin part only, and the section says what it can.
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from typing import Any

from ..wording import metric_text

SECTION_TITLE = "Uncertainty intervals"


def interval_coverage_section(
    coverage: dict[str, Any],
    members: Sequence[str],
    report: types.ModuleType,
    where: str = "out of fold",
    rule: str | None = None,
) -> Any:
    """The section: how the intervals are made, both coverage checks against the nominal level,
    the members'-spread interval beside them, a warning for each check short by more than 5
    points, and the per-bin and per-district tables. ``rule``: the interval rule's sentence."""
    nominal = coverage["nominal"]
    districts = coverage.get("districts")
    spread = coverage.get("spread")
    by_fold = coverage.get("binned_within") == "fold"
    made = rule or (
        "Each cell's interval prob_low–prob_high is the calibrated members' mean ∓ 1.96 × the "
        "members' standard deviation."
    )
    text = (
        f"{made} Nominal coverage {100 * nominal:.0f} %. Checked two ways on the {coverage['cells']} "
        + (f"{coverage['judged_on']} " if coverage.get("judged_on") else "cells ")
        + "— a cell has a label, not a share of poor cells, so the cells are put in 10 bins "
        "of calibrated probability"
        + (
            " within each fold (each fold's model judged on its own held-out districts' cells)"
            if by_fold
            else ""
        )
        + " and a cell's interval covers when it holds its bin's observed share poor — "
        f"{_percent(coverage['coverage'])} covered (mean width "
        f"{metric_text(coverage['mean_width'])})"
    )
    if districts and districts.get("coverage") is not None:
        text += (
            f"; and a district's interval (its cells' bounds averaged — they share the "
            "calibration's error — widened by the sampling error of its share) covers when it "
            f"holds the district's observed share poor — {_percent(districts['coverage'])} of "
            f"{districts['districts']} districts (mean width {metric_text(districts['mean_width'])})"
        )
    text += "."
    if by_fold and coverage.get("pooled_coverage") is not None:
        text += (
            f" With every fold's cells in one set of bins {_percent(coverage['pooled_coverage'])} "
            "are covered: each fold was calibrated on the other folds' districts, so in bins "
            "fed by all folds the districts' differences from their calibration cancel, and an "
            "interval without any allowance for a new district would look right there."
        )
    if spread:
        text += (
            " For comparison, the members'-spread interval (calibrated mean ∓ 1.96 × members' "
            f"standard deviation) covers {_percent(spread['coverage'])} of the cells"
            + (
                f" and {_percent(spread['district_coverage'])} of the districts"
                if spread.get("district_coverage") is not None
                else ""
            )
            + f" with mean width {metric_text(spread['mean_width'])}."
        )
    blocks = [report.Paragraph(text)]
    warnings = coverage.get("warnings")
    if warnings is None:  # metrics from before the district check
        short = coverage["coverage"] is not None and coverage["coverage"] < nominal - 0.05
        warnings = ["The intervals are too narrow for their nominal level."] if short else []
    if warnings:
        blocks.append(
            report.Paragraph(
                " ".join(warnings)
                + (
                    " With one member there is no spread and every members'-spread interval "
                    "is a point."
                    if len(members) < 2 and not rule
                    else ""
                ),
                kind="warning",
            )
        )
    blocks.append(
        report.Table(
            ["bin", "cells", "observed share poor", "mean prob_low", "mean prob_high", "covered"],
            [
                [
                    f"{row['low']:.1f}–{row['high']:.1f}",
                    row["n"],
                    row["observed"],
                    row["mean_low"],
                    row["mean_high"],
                    row["covered"],
                ]
                for row in coverage["bins"]
            ],
            caption=(
                "Share of each bin's cells whose interval holds their fold's bin's observed share "
                "poor (observed: all folds' cells)."
                if by_fold
                else "Share of each bin's cells whose interval holds the bin's observed share poor."
            ),
        )
    )
    if districts and districts.get("table"):
        blocks.append(
            report.Table(
                ["district", "cells", "observed share poor", "expected", "low", "high", "covered"],
                [
                    [
                        row["district"],
                        row["cells"],
                        row["observed"],
                        row["share"],
                        row["low"],
                        row["high"],
                        "yes" if row["covered"] else "no",
                    ]
                    for row in districts["table"]
                ],
                caption="Each district's interval of its share poor and whether it holds the "
                "observed share.",
            )
        )
    return report.Section(f"{SECTION_TITLE} ({where})", blocks)


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


# the metrics CSVs' last columns, filled on the interval rows only
COVERAGE_COLUMNS = ("coverage", "nominal", "mean_width")
INTERVAL_ROWS = (
    "prob_low–prob_high per bin",
    "prob_low–prob_high per district",
    "members' spread per bin",
    "members' spread per district",
    "prob_low–prob_high per bin, all folds' cells in one set of bins",
)


def coverage_rows(coverage: dict[str, Any] | None) -> list[tuple[str, Any, str, str, str]]:
    """[(model, n, coverage, nominal, mean width)]: the CSV rows of ``interval_coverage.coverage``'s dict
    (n: cells for the per-bin check, districts for the per-district one; in cross-validation the
    per-bin check within each fold, then every fold's cells in one set of bins)."""
    if not coverage:
        return []
    nominal = coverage["nominal"]
    districts, spread = coverage.get("districts"), coverage.get("spread")
    rows = [(INTERVAL_ROWS[0], coverage["cells"], coverage["coverage"], coverage["mean_width"])]
    if coverage.get("pooled_coverage") is not None:  # cross-validation: bins within each fold
        rows.append(
            (
                INTERVAL_ROWS[4],
                coverage["cells"],
                coverage["pooled_coverage"],
                coverage["mean_width"],
            )
        )
    if districts:
        rows.append(
            (
                INTERVAL_ROWS[1],
                districts["districts"],
                districts["coverage"],
                districts["mean_width"],
            )
        )
    if spread:
        rows.append((INTERVAL_ROWS[2], coverage["cells"], spread["coverage"], spread["mean_width"]))
        if districts and spread.get("district_coverage") is not None:
            rows.append(
                (
                    INTERVAL_ROWS[3],
                    districts["districts"],
                    spread["district_coverage"],
                    spread["district_width"],
                )
            )
    return [(name, n, _csv(value), _csv(nominal), _csv(width)) for name, n, value, width in rows]


def _csv(value: float | None) -> str:
    return "" if value is None else repr(float(value))
