"""The report of ``evaluate``: its figures (PNG) and its HTML document (core/report/page.py).

Plain Python: ``report_document`` is also called inside QGIS, after QGIS has
rendered the maps; matplotlib is imported only where the figures are drawn
(in the worker).
"""

from __future__ import annotations

import os
import types
from collections.abc import Iterable, Sequence
from typing import Any

from ..names import BASELINE, CELL_ID, ENSEMBLE, METRIC_NAMES, RANDOM
from ..wording import metric_text
from .interval_report import interval_coverage_section
from .validation_outputs import OUTCOMES, model_names


def write_figures(folder: str, document: dict[str, Any], members: Sequence[str]) -> dict[str, str]:
    """ROC curves (members + ensemble) and confusion matrices as PNGs in ``folder``; {name: path}."""
    from ..report import figures as drawing

    os.makedirs(folder, exist_ok=True)
    overall = document["metrics"]["all"]
    figures = {}
    if document["roc"].get(ENSEMBLE):
        title = f"ROC curves, {overall[ENSEMBLE]['n']} cells (dots: at the threshold)"
        figures["roc"] = drawing.save(
            drawing.roc_figure(document["roc"], overall, members, title),
            os.path.join(folder, "roc.png"),
        )
    figures["confusion"] = drawing.save(
        drawing.confusion_figure(overall, members), os.path.join(folder, "confusion.png")
    )
    figures["reliability"] = drawing.save(
        drawing.reliability_figure(reliability_curves(overall), "Reliability of the probabilities"),
        os.path.join(folder, "reliability.png"),
    )
    return figures


def reliability_curves(metrics_by_model: dict[str, Any]) -> dict[str, Any]:
    """{legend label: reliability bins} of the ensemble (calibrated and raw) and the baseline."""
    ensemble = metrics_by_model[ENSEMBLE]
    curves = {}
    if ensemble.get("reliability_raw"):
        curves["ensemble before calibration (prob_raw)"] = ensemble["reliability_raw"]
    curves["ensemble (prob_mean)"] = ensemble.get("reliability")
    if BASELINE in metrics_by_model:
        curves["baseline (prob_baseline)"] = metrics_by_model[BASELINE].get("reliability")
    return curves


# the report's metric tables: their columns and the metrics' keys
METRIC_COLUMNS = ("model", "cells", "recall", "precision", "accuracy", "AUC")

_TABLE_KEYS = ("n", *METRIC_NAMES)


def report_document(
    summary: dict[str, Any], maps: Iterable[tuple[str, str]] = ()
) -> dict[str, Any]:
    """Title, notices and sections of the HTML report (core/report/page.py) for an ``evaluate`` summary.

    ``maps``: [(png path, caption)] rendered by QGIS.
    """
    from ..decision import verdict as verdict_blocks
    from ..report import page as report

    settings, data, overall = summary["settings"], summary["data"], summary["metrics"]["all"]
    figures = summary.get("figures") or {}
    notices = []
    if settings.get("model_notice"):
        notices.append(settings["model_notice"])
    sections = [
        verdict_blocks.verdict_section(summary.get("verdict"), report),
        report.Section("Run settings", [_run_settings(summary, report)]),
        report.Section("Data", [_data_summary(data, report)]),
        _metrics_section(summary, report),
        _unsurveyed_section(summary, report),
        _roc_section(summary, figures, report),
        verdict_blocks.calibration_section(
            overall, figures.get("reliability"), report, summary.get("calibrated", False)
        ),
        _confusion_section(summary, figures, report),
        _district_section(summary, report),
        _outcomes_section(summary, report),
    ]
    if summary.get("interval_coverage"):
        coverage = summary["interval_coverage"]
        sections.append(
            interval_coverage_section(
                coverage, summary["members"], report, "against TRUTH", coverage.get("rule")
            )
        )
    if maps:
        sections.append(
            report.Section(
                "Maps", [report.Figure(path, caption, caption) for path, caption in maps]
            )
        )
    if summary.get("notes"):
        sections.append(
            report.Section(
                "Notes",
                [
                    report.Paragraph("Values shown as – are undefined for these cells:"),
                    report.BulletList(summary["notes"]),
                ],
            )
        )
    ensemble = overall[ENSEMBLE]
    subtitle = (
        f"{data.get('predictions_name') or data['predictions_layer']} against "
        f"{data.get('truth_name') or data['truth_layer']}: {data['common_cells']} cells "
        f"· ensemble recall {metric_text(ensemble['recall'])}, precision "
        f"{metric_text(ensemble['precision'])}, accuracy {metric_text(ensemble['accuracy'])}, AUC "
        f"{metric_text(ensemble['auc'])}"
    )
    return {
        "title": "Poverty map evaluation",
        "subtitle": subtitle,
        "notices": notices,
        "sections": sections,
    }


def _run_settings(summary: dict[str, Any], report: types.ModuleType) -> Any:
    """The compared layers, the model, its threshold and decision rule, the random baseline."""
    settings = summary["settings"]
    predictions_layer = (
        f" (layer {settings['predictions_layer']})" if settings.get("predictions_layer") else ""
    )
    truth_layer = f" (layer {settings['truth_layer']})" if settings.get("truth_layer") else ""
    return report.KeyValues(
        [
            ("Predictions", f"{settings['predictions']}" + predictions_layer),
            ("Ground truth", f"{settings['truth']}" + truth_layer),
            ("Model", settings.get("model") or "not recorded in the prediction layer"),
            ("Members", ", ".join(summary["members"])),
            ("Ensemble's class (pred)", _decision_text(settings.get("decision_threshold"))),
            (
                "Members' vote threshold",
                f"{settings['threshold']:g} ({settings['threshold_source']}; each member's "
                "probability ≥ it counts as a vote, information only where a decision threshold "
                "decides pred)",
            ),
            (
                "Random baseline",
                f"median of {settings['random_draws']} coin-flip predictions, seed "
                f"{settings['seed']}",
            ),
            (
                "Created",
                f"{summary.get('created', '')} by povmap-qgis {settings.get('povmap_qgis', '')}",
            ),
        ]
    )


def _data_summary(data: dict[str, Any], report: types.ModuleType) -> Any:
    """The cells compared and the cells of each layer left out, the districts, flags."""
    compared = data["common_cells"]
    return report.KeyValues(
        [
            (f"Cells compared (matched by {data.get('id_field', CELL_ID)})", compared),
            (
                "Observed poor",
                f"{data['poor_cells']} ({_share(data['poor_cells'], compared)}); "
                f"{data['label_meaning']}",
            ),
            (
                "Predicted poor (ensemble)",
                f"{data['predicted_poor_cells']} "
                f"({_share(data['predicted_poor_cells'], compared)})",
            ),
            (
                "Prediction layer",
                f"{data['prediction_cells']} cells, {data['predictions_without_truth']} without "
                f"a label ({data['predictions_crs'] or 'CRS unknown'})",
            ),
            (
                "Ground-truth layer",
                f"{data['truth_cells']} cells, {data['truth_without_prediction']} without a "
                f"prediction ({data['truth_crs'] or 'CRS unknown'})",
            ),
            ("Districts", ", ".join(data["districts"]) or "none"),
            (
                "Cells with too much nodata in their chips",
                "not recorded" if data["flagged_cells"] is None else data["flagged_cells"],
            ),
            (
                "Cells outside the training range (out_of_range)",
                _out_of_range_text(data.get("out_of_range_cells")),
            ),
        ]
    )


def _metrics_section(summary: dict[str, Any], report: types.ModuleType) -> Any:
    """Every model's metrics on all compared cells, and on the cells in the training range."""
    members, draws = list(summary["members"]), summary["settings"]["random_draws"]
    overall = summary["metrics"]["all"]
    blocks = [
        report.Paragraph(
            "Recall: share of the poor cells predicted poor (programmes care most: nobody poor "
            "left out). Precision: share of the cells predicted poor that are poor. Accuracy: "
            "share of cells predicted right. AUC: how well the probability ranks poor above "
            "not-poor cells (0.5 = random)."
        ),
        report.Table(
            list(METRIC_COLUMNS),
            [
                [_model_label(model, draws)] + [overall[model][key] for key in _TABLE_KEYS]
                for model in model_names(members, overall)
            ],
            caption="All compared cells. Members: probability ≥ threshold; ensemble: pred as "
            "written (calibrated mean probability ≥ the decision threshold, or the members' "
            "majority vote for an older package), AUC from the mean probability; random: "
            "medians of the draws.",
            emphasis=[len(members)],
        ),
    ]
    in_range = summary["metrics"].get("in_range")
    if in_range:
        blocks.append(
            report.Table(
                list(METRIC_COLUMNS),
                [
                    [_model_label(model, draws)] + [in_range[model][key] for key in _TABLE_KEYS]
                    for model in model_names(members, in_range)
                ],
                caption="Cells inside the training range only (out_of_range = 0): cells whose "
                "per-chip statistics lie within what the model was trained on.",
                emphasis=[len(members)],
            )
        )
    new_cells = summary["metrics"].get("new_cells")
    if new_cells:
        blocks.append(
            report.Table(
                list(METRIC_COLUMNS),
                [
                    [_model_label(model, draws)] + [new_cells[model][key] for key in _TABLE_KEYS]
                    for model in model_names(members, new_cells)
                ],
                caption="Cells the model did not train on only (training_cell = 0): the compared "
                "cells that were training cells of the package are left out.",
                emphasis=[len(members)],
            )
        )
    return report.Section("Metrics", blocks)


def _roc_section(summary: dict[str, Any], figures: dict[str, str], report: types.ModuleType) -> Any:
    """The members' and the ensemble's ROC curves, or why there are none."""
    if not summary["roc"].get(ENSEMBLE):
        blocks = [
            report.Paragraph(
                "ROC curves are undefined: the compared cells hold one class only.",
                kind="warning",
            )
        ]
    elif figures.get("roc"):
        blocks = [
            report.Figure(
                figures["roc"], "ROC curves of the members and the ensemble", "ROC curves"
            )
        ]
    else:
        blocks = [report.Paragraph("ROC figure not drawn (no figures folder).")]
    return report.Section("ROC curves", blocks)


def _confusion_section(
    summary: dict[str, Any], figures: dict[str, str], report: types.ModuleType
) -> Any:
    """The confusion matrices (figure, where drawn) and the members' and ensemble's counts."""
    members, overall = list(summary["members"]), summary["metrics"]["all"]
    blocks = []
    if figures.get("confusion"):
        blocks.append(
            report.Figure(
                figures["confusion"],
                "Observed (rows) against predicted (columns)",
                "confusion matrices",
            )
        )
    blocks.append(
        report.Table(
            [
                "model",
                "hit (poor, predicted poor)",
                "miss (poor, predicted not poor)",
                "false alarm (not poor, predicted poor)",
                "correct rejection",
            ],
            [
                [model] + [overall[model][key] for key in ("tp", "fn", "fp", "tn")]
                for model in members + [ENSEMBLE]
            ],
            emphasis=[len(members)],
        )
    )
    return report.Section("Confusion matrices", blocks)


def _district_section(summary: dict[str, Any], report: types.ModuleType) -> Any:
    """Every model's metrics in each district, the ensemble's rows in bold."""
    draws = summary["settings"]["random_draws"]
    models = model_names(list(summary["members"]), summary["metrics"]["all"])
    rows = [
        [district, _model_label(model, draws)]
        + [summary["metrics"]["districts"][district][model][key] for key in _TABLE_KEYS]
        for district in summary["data"]["districts"]
        for model in models
    ]
    if not rows:
        return report.Section(
            "Per district", [report.Paragraph("The compared cells have no district field.")]
        )
    return report.Section(
        "Per district",
        [
            report.Table(
                ["district", *METRIC_COLUMNS],
                rows,
                emphasis=[index for index, row in enumerate(rows) if row[1] == ENSEMBLE],
            )
        ],
    )


def _outcomes_section(summary: dict[str, Any], report: types.ModuleType) -> Any:
    """The ensemble's hits, misses, false alarms and correct rejections, overall and per district."""
    data, outcomes_by = summary["data"], summary["outcomes"]
    blocks = [
        report.Table(
            ["outcome", "cells", "share"],
            [
                [OUTCOMES[outcome][0], count, _share(count, data["common_cells"])]
                for outcome, count in outcomes_by["all"].items()
            ],
        )
    ]
    district_rows = [
        [district] + [outcomes_by["districts"][district][outcome] for outcome in OUTCOMES]
        for district in data["districts"]
    ]
    if district_rows:
        blocks.append(
            report.Table(
                ["district", "hit", "miss", "false alarm", "correct rejection"], district_rows
            )
        )
    return report.Section("Outcomes (ensemble)", blocks)


def _unsurveyed_section(summary: dict[str, Any], report: types.ModuleType) -> Any:
    """Which compared cells and districts the model never learned from: the paper's third
    stage, a map where nobody was surveyed. A cell the model was trained on is never called
    new, whatever its district (``training_cells``, recorded since 0.3)."""
    title = "Districts the model never trained on"
    blocks = [_training_cells_paragraph(summary, report)]
    seen, districts = summary.get("training_districts"), summary["data"]["districts"]
    if seen is None:
        blocks.append(
            report.Paragraph(
                "The prediction layer does not record the districts the model was trained on (a model package from an older "
                "version, or the layer's metadata was lost), so this report cannot say which districts are new to it.",
                kind="notice",
            )
        )
        return report.Section(title, blocks)
    if not districts:
        blocks.append(report.Paragraph("The compared cells have no district field."))
        return report.Section(title, blocks)
    trained_on = summary.get("training_cells") or {"known": False, "districts": {}}
    known, among = trained_on["known"], trained_on.get("districts") or {}
    fresh_metrics = summary["metrics"].get("districts_new_cells") or {}
    rows, unseen, unseen_cells, bordering = [], [], 0, []
    for district in districts:
        values = summary["metrics"]["districts"][district][ENSEMBLE]
        shown = fresh_metrics.get(district, {}).get(ENSEMBLE, values)
        learned, training = int(seen.get(district, 0)), int(among.get(district, 0))
        status: int | str
        if learned:
            status = learned
        elif not known:
            status = "none recorded (training cells unknown)"
        elif training:
            status = f"none by district, but {training} of its cells were training cells"
            bordering.append((district, training, values["n"] - training))
        else:
            status = "none: new to the model"
        if not learned and not training:
            unseen.append(district)
            unseen_cells += values["n"]
        rows.append(
            [district, values["n"], training if known else "unknown", status]
            + [shown[key] for key in ("recall", "precision", "accuracy", "auc")]
        )
    if unseen:
        text = (
            f"{unseen_cells} of the {summary['data']['common_cells']} compared cells lie in {', '.join(unseen)}, where the model "
            "learned from no labelled cell: there its predictions show how the map does where nobody was surveyed (the "
            "paper's third validation stage)."
            + (
                ""
                if known
                else " Which compared cells were training cells cannot be known here (see above): a cell "
                "of these districts could still be one."
            )
        )
    else:
        text = (
            "Every compared district holds cells the model learned from: these numbers do not test a district nobody "
            "surveyed (use held-out districts, or a new survey of an unsurveyed district)."
        )
    blocks.append(report.Paragraph(text))
    for district, training, rest in bordering:
        blocks.append(
            report.Paragraph(
                f"{district}: the model learned from no cell filed under this district, but {training} of its compared cells "
                f"were training cells (cells of the training grid, e.g. on a district border): it is not new to the model"
                + (
                    f"; its row shows the {rest} other cells."
                    if rest
                    else ", and no compared cell of it is new."
                ),
                kind="warning",
            )
        )
    blocks.append(
        report.Table(
            [
                "district",
                "cells compared",
                "of them training cells",
                "labelled cells the model learned from",
                "recall",
                "precision",
                "accuracy",
                "AUC",
            ],
            rows,
            caption="Ensemble metrics per district (of its cells that were not training cells, where it holds "
            "both); learned-from and training cells are the training and validation cells recorded in the model "
            "package.",
        )
    )
    return report.Section(title, blocks)


def _training_cells_paragraph(summary: dict[str, Any], report: types.ModuleType) -> Any:
    """How many compared cells were training cells, with the numbers of the others."""
    trained_on = summary.get("training_cells") or {
        "known": False,
        "why": "the evaluation was made before povmap-qgis 0.3",
    }
    total = summary["data"]["common_cells"]
    if not trained_on["known"]:
        return report.Paragraph(
            f"Whether any of the {total} compared cells was a training cell of the model cannot be known: "
            f"{trained_on['why']}. Numbers of cells the model learned from would flatter it.",
            kind="notice",
        )
    compared = trained_on["compared"]
    if not compared:
        return report.Paragraph(
            f"None of the {total} compared cells was a training cell of the model: every number here is on cells "
            "it did not learn from."
        )
    fresh = (summary["metrics"].get("new_cells") or {}).get(ENSEMBLE)
    where = ", ".join(f"{name} {count}" for name, count in trained_on["districts"].items())
    text = (
        f"{compared} of the {total} compared cells were training cells of the model (it learned their labels: "
        f"training or validation cells{'; ' + where if where else ''}). They are not new to it, and the numbers over all "
        "cells include them: "
    )
    if fresh:
        text += (
            f"on the {fresh['n']} other cells the ensemble's recall is {metric_text(fresh['recall'])}, precision "
            f"{metric_text(fresh['precision'])}, accuracy {metric_text(fresh['accuracy'])}, AUC {metric_text(fresh['auc'])}."
        )
    else:
        text += "every compared cell was one, so nothing here tests the model on new cells."
    return report.Paragraph(text, kind="warning")


def _out_of_range_text(counts: dict[str, Any] | None) -> str:
    if counts is None:
        return "not recorded (a model package without a training range)"
    by_district = ", ".join(f"{name} {count}" for name, count in counts["districts"].items())
    return f"{counts['all']}" + (f" ({by_district})" if by_district else "")


def _decision_text(decision: float | None) -> str:
    if decision is None:
        return "the members' majority vote (a layer without a decision threshold: an older package)"
    return (
        f"decision threshold {decision:.3g}: calibrated prob_mean ≥ {decision:.3g} is poor; "
        "votes are information only"
    )


def _model_label(model: str, draws: int) -> str:
    return f"random (median of {draws})" if model == RANDOM else model


def _share(count: int, total: int) -> str:
    return f"{count / total:.0%}" if total else "–"
