"""The HTML report of Accuracy from the verification: a plain summary first, then the
estimates beside a random choice of cells, the error matrix, the strata, the map.

Plain Python (no numpy, no qgis): the Processing adapter calls it inside QGIS
after rendering the map.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

LABELS = {
    "overall_accuracy": "Overall accuracy (cells the map classes right)",
    "users_accuracy_poor": "User's accuracy of poor (precision: map's poor cells that are poor)",
    "producers_accuracy_poor": "Producer's accuracy of poor (recall: poor cells the map calls poor)",
    "poor_share": "Share of poor cells",
    "poor_people_share": "Share of poor people (people in poor cells)",
    "map_bias": "The map's bias (its share of poor cells − the estimated share)",
    "inclusion_error": "Inclusion error (enrolled cells that are not poor)",
    "exclusion_error": "Exclusion error (poor cells left out)",
}


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f} %"


def _interval(value: dict[str, Any]) -> str:
    return (
        f"{_percent(value['estimate'])} (95 %: {_percent(value['low'])}–{_percent(value['high'])})"
    )


def _points(value: dict[str, Any]) -> str:
    """A difference of shares in percentage points with its interval: "+22 points (95 %: +3 to +41)"."""
    return (
        f"{100 * value['estimate']:+.0f} points (95 %: {100 * value['low']:+.0f} to "
        f"{100 * value['high']:+.0f})"
    )


def headline(summary: dict[str, Any]) -> str:
    """One sentence a manager can read: how often the map's poor cells were poor."""
    users = summary["users_accuracy_poor"]
    if users["estimate"] is None:
        return "No visited cell was called poor by the map: its precision cannot be estimated."
    return (
        f"The map's poor cells were poor {_percent(users['estimate'])} of the time "
        f"(95 %: {_percent(users['low'])}–{_percent(users['high'])}), from "
        f"{summary['visits']['visited']} visited cells."
    )


def _plain(summary: dict[str, Any]) -> str:
    parts = [headline(summary)]
    producers, share = summary["producers_accuracy_poor"], summary["poor_share"]
    if producers["estimate"] is not None:
        parts.append(f"Of the poor cells, the map found {_interval(producers)}.")
    if share["estimate"] is not None:
        parts.append(
            f"{_interval(share)} of the cells are poor; the map calls "
            f"{_percent(summary['map_poor_share'])} poor."
        )
    if summary.get("inclusion_error"):
        parts.append(
            f"Of the enrolled cells, {_interval(summary['inclusion_error'])} are not poor; of the "
            f"poor cells, {_interval(summary['exclusion_error'])} are left out."
        )
    random = summary["random"]
    precision, recall = random["precision_minus_random"], random["recall_minus_random"]
    if precision["low"] is not None:
        parts.append(
            f"Cells picked at random would be poor {_percent(random['users_accuracy_poor'])} of the "
            f"time: the map's poor cells are poor {_points(precision)} more often — "
            + (
                "better than a random choice."
                if precision["low"] > 0
                else "not shown to be better than a random choice."
            )
        )
    if recall["low"] is not None:
        parts.append(
            f"A random choice of as many cells would find {_percent(random['producers_accuracy_poor'])} "
            f"of the poor cells: the map finds {_points(recall)} more — "
            + (
                "better than random."
                if recall["low"] > 0
                else "not shown to be better than random."
            )
        )
    return " ".join(parts)


def report_document(
    summary: dict[str, Any], maps: Iterable[tuple[str, str]] = ()
) -> dict[str, Any]:
    """Title, subtitle, notices and sections of the HTML report; ``maps``: [(png path, caption)]."""
    from ..report import page as report

    estimates = [
        [
            LABELS[key],
            summary[key]["estimate"],
            summary[key]["low"],
            summary[key]["high"],
            summary["random"].get(key),
        ]
        for key in LABELS
        if key in summary
    ]
    for key, label in (
        ("precision_minus_random", "Precision − a random choice's (difference of shares)"),
        ("recall_minus_random", "Recall − a random choice's (difference of shares)"),
    ):
        margin = summary["random"][key]
        estimates.append([label, margin["estimate"], margin["low"], margin["high"], 0.0])
    matrix = summary["error_matrix"]["shares"]
    sections = [
        report.Section("Summary", [report.Paragraph(_plain(summary), kind="notice")]),
        report.Section(
            "Estimates with 95 % intervals",
            [
                report.Table(
                    ["", "estimate", "95 % low", "95 % high", "random choice of cells"],
                    estimates,
                    caption="Design-based estimates (Olofsson et al. 2014; stratified ratio "
                    "estimators, each visited cell weighted by its stratum's cells / visits). A random "
                    "choice of cells is poor as often as cells are, and finds the share of the poor "
                    "equal to the share of cells it picks (here: the map's share called poor).",
                )
            ],
        ),
        report.Section(
            "Error matrix (estimated share of the cells)",
            [
                report.Table(
                    ["map \\ observed", "poor", "not poor"],
                    [["poor", *matrix[0]], ["not poor", *matrix[1]]],
                    caption="Rows: the map's class; columns: the class observed in the field; each "
                    "entry the estimated share of all cells of the map.",
                )
            ],
        ),
        report.Section(
            "Strata",
            [
                report.Table(
                    [
                        "stratum",
                        "cells",
                        "drawn",
                        "visited",
                        "weight",
                        "observed poor",
                        "map agrees",
                        "share poor",
                    ],
                    [
                        [
                            row["stratum"],
                            row["cells"],
                            row["sampled"],
                            row["visited"],
                            row["weight"],
                            row["observed_poor"],
                            row["agree"],
                            row["poor_share"],
                        ]
                        for row in summary["strata"]
                    ],
                    digits=2,
                )
            ],
        ),
    ]
    if maps:
        sections.append(
            report.Section("Map", [report.Figure(path, caption, caption) for path, caption in maps])
        )
    visits = summary["visits"]
    settings = [
        ("Sample", summary["sample"]),
        ("Returns", summary["returns"] or "the sample layer's own visit fields"),
        ("Cells drawn / visited", f"{visits['sampled']} / {visits['visited']}"),
        ("Cells in the sampled population", summary["design"]["cells"]),
        (
            "Cells never drawn",
            ", ".join(f"{k}: {v}" for k, v in (summary["design"].get("left_out") or {}).items()),
        ),
        ("Strata", summary["design"]["kind"]),
        ("Seed", summary["design"]["seed"]),
    ]
    if summary.get("new_model"):
        settings.append(("New model package (recalibrated)", summary["new_model"]["path"]))
    sections.append(report.Section("Design and data", [report.KeyValues(settings)]))
    if summary["notes"]:
        sections.append(report.Section("Notes", [report.BulletList(summary["notes"])]))
    return {
        "title": "Accuracy of the poverty map from the field verification",
        "subtitle": headline(summary),
        "notices": [],
        "sections": sections,
    }
