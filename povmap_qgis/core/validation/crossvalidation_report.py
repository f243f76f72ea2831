"""The report of ``crossvalidate``: its figures (PNG) and its HTML document (core/report/page.py).

Plain Python: ``report_document`` is also called inside QGIS, after QGIS has
rendered the maps; matplotlib is imported only where the figures are drawn
(in the worker).
"""

from __future__ import annotations

import os
import types
from collections.abc import Iterable, Sequence
from typing import Any

from ..model.training_settings import INTERVAL_METHOD
from ..names import ENSEMBLE, RANDOM
from ..names import METRIC_NAMES as METRIC_KEYS
from ..wording import metric_text
from .evaluation_report import reliability_curves
from .interval_report import interval_coverage_section
from .validation_outputs import OUTCOMES, model_names


def write_figures(folder: str, document: dict[str, Any], members: Sequence[str]) -> dict[str, str]:
    """Pooled ROC curves and confusion matrices, and the ensemble's ROC curve per fold, as PNGs in ``folder``; {name: path}."""
    from ..report import figures as drawing

    os.makedirs(folder, exist_ok=True)
    pooled = document["pooled"]
    figures = {}
    if document["roc"]["pooled"].get(ENSEMBLE):
        title = f"ROC curves of the out-of-fold predictions, {pooled[ENSEMBLE]['n']} cells (dots: at the threshold)"
        figures["roc"] = drawing.save(
            drawing.roc_figure(document["roc"]["pooled"], pooled, members, title),
            os.path.join(folder, "roc.png"),
        )
    fold_curves = {
        f"fold {fold}": curve for fold, curve in document["roc"]["folds"].items() if curve
    }
    if fold_curves:
        fold_metrics = {
            f"fold {record['fold']}": record["metrics"][ENSEMBLE] for record in document["folds"]
        }
        figures["roc_folds"] = drawing.save(
            drawing.fold_roc_figure(
                fold_curves, fold_metrics, "The ensemble's ROC curve in each held-out fold"
            ),
            os.path.join(folder, "roc_folds.png"),
        )
    figures["confusion"] = drawing.save(
        drawing.confusion_figure(pooled, members), os.path.join(folder, "confusion.png")
    )
    figures["reliability"] = drawing.save(
        drawing.reliability_figure(
            reliability_curves(pooled), "Reliability of the out-of-fold probabilities"
        ),
        os.path.join(folder, "reliability.png"),
    )
    return figures


def report_document(
    summary: dict[str, Any], maps: Iterable[tuple[str, str]] = ()
) -> dict[str, Any]:
    """Title, notices and sections of the HTML report (core/report/page.py) for a ``crossvalidate`` summary.

    ``maps``: [(png path, caption)] rendered by QGIS.
    """
    from ..decision.verdict import calibration_section, verdict_section
    from ..report import page as report

    settings, data = summary["settings"], summary["data"]
    members = list(summary["members"])
    models = model_names(members, summary["summary"])
    figures = summary.get("figures") or {}
    sections = [
        verdict_section(summary.get("verdict"), report),
        report.Section("Run settings", [_run_settings(summary, report)]),
        _folds_section(summary, report),
        _fold_metrics_section(summary, models, report),
        _across_folds_section(summary, models, report),
    ]
    if summary.get("stacking"):
        sections.append(stacking_section(summary["stacking"], report))
    judged = [calibration_section(summary["pooled"], figures.get("reliability"), report)]
    if summary.get("interval_coverage"):
        judged.append(
            interval_coverage_section(
                summary["interval_coverage"], members, report, rule=_interval_rule(summary)
            )
        )
    shown = [_confusion_section(summary, figures, report)]
    if maps:
        shown.append(
            report.Section(
                "Maps", [report.Figure(path, caption, caption) for path, caption in maps]
            )
        )
    roc = _roc_section(figures, report)
    # the calibration follows the ROC curves; without them it comes last
    sections += [roc, *judged, *shown] if roc else [*shown, *judged]
    notes = _notes_section(summary, models, report)
    if notes:
        sections.append(notes)
    ensemble = summary["summary"][ENSEMBLE]
    subtitle = (
        f"{settings['folds']} folds, {data['cells']} cells, {len(data['districts'])} districts · "
        f"ensemble, median of the folds: recall {metric_text(ensemble['recall']['median'])}, "
        f"precision {metric_text(ensemble['precision']['median'])}, accuracy "
        f"{metric_text(ensemble['accuracy']['median'])}, AUC {metric_text(ensemble['auc']['median'])}"
    )
    pooled = (summary.get("pooled") or {}).get(ENSEMBLE) or {}
    if pooled.get("auc") is not None:
        subtitle += (
            f" · AUC of all out-of-fold cells pooled {metric_text(pooled['auc'])} (the verdict's)"
        )
    return {
        "title": "Poverty model cross-validation (leave districts out)",
        "subtitle": subtitle,
        "notices": [],
        "sections": sections,
    }


STACKING_WORDS = {
    "nested": "nested: in each fold, fitted on the out-of-fold predictions of {inner} inner folds "
    "of its training districts (members and baseline retrained in each), so the held-out fold "
    "is never seen by members, stacking or calibration",
    "validation": "fitted on each fold's validation cells (as Train does; cheaper, a little "
    "optimistic: the members chose their best epoch on the same cells)",
    "off": "off: prob_raw is the members' mean",
}


def stacking_section(found: dict[str, Any], report: types.ModuleType) -> Any:
    """What carries the signal: each fold's stacking weights and shares, and its time cost."""
    mode = found["mode"]
    blocks = [
        report.Paragraph(
            "prob_raw combines the members and the transparent baseline by a non-negative "
            "logistic regression on their logits (a candidate that adds nothing gets weight 0); "
            + STACKING_WORDS.get(mode, mode).format(inner=found.get("inner_folds"))
            + f". The inner folds took {found['seconds']['inner_folds']} s of the folds' "
            f"{found['seconds']['folds']} s."
        )
    ]
    if found.get("images"):
        blocks.append(report.Paragraph(found["images"]["sentence"]))
    fitted = {fold: record for fold, record in found["folds"].items() if "weights" in record}
    if fitted:
        names = list(dict.fromkeys(n for r in fitted.values() for n in r["candidates"]))
        rows = []
        for fold, record in fitted.items():
            weights = dict(zip(record["candidates"], record["weights"], strict=True))
            shares = record.get("contributions") or {}
            rows.append(
                [fold, record["cells"]]
                + [
                    f"{weights[name]:.3f} ({shares.get(name, 0):.0%})" if name in weights else "–"
                    for name in names
                ]
                + [record["intercept"]]
            )
        blocks.append(
            report.Table(
                ["fold", "cells fitted on"] + names + ["intercept"],
                rows,
                caption="Weight of each candidate's logit (in brackets: its share of the "
                "stacking's signal, weight × spread of its logits).",
            )
        )
    return report.Section("Stacking: what carries the signal", blocks)


def _run_settings(summary: dict[str, Any], report: types.ModuleType) -> Any:
    """The run's inputs, members, folds, training settings, decision rule and software."""
    settings = summary["settings"]
    grid_layer = f" (layer {settings['grid_layer']})" if settings.get("grid_layer") else ""
    return report.KeyValues(
        [
            ("Chip store", settings["chips"]),
            ("Labelled grid", settings["grid"] + grid_layer),
            ("Preset and members", f"{settings['preset']}: {', '.join(summary['members'])}"),
            (
                "Folds",
                f"{settings['folds']} (whole districts per fold, balanced by cell count; seed "
                f"{settings['seed']})",
            ),
            (
                "Training",
                f"up to {settings['max_epochs']} epochs, batch {settings['batch_size']}, "
                f"learning rate {settings['learning_rate']:g}, patience {settings['patience']}, "
                f"balance {settings['balance']}; validation: a stratified share of the training "
                "folds",
            ),
            (
                "Decision threshold",
                f"members {settings['threshold']:g}; ensemble: pred = mean probability calibrated "
                f"in the fold ≥ {_fold_thresholds(settings, summary['folds'])}, AUC from it; "
                "the baseline: the same rule on its own calibrated probability",
            ),
            (
                "Device",
                f"{settings.get('device', '')} (TensorFlow {settings.get('tensorflow', '')}, "
                f"Keras {settings.get('keras', '')})",
            ),
            (
                "Created",
                f"{summary.get('created', '')} by povmap-qgis {settings.get('povmap_qgis', '')}, "
                f"{summary.get('seconds', '')} s",
            ),
        ]
    )


def _folds_section(summary: dict[str, Any], report: types.ModuleType) -> Any:
    """Each fold's test districts and cell counts, and each district's fold."""
    fold_rows = [
        [
            record["fold"],
            ", ".join(record["districts"]),
            record["test_cells"],
            record["test_poor"],
            record["train_cells"],
            record["validation_cells"],
        ]
        for record in summary["folds"]
    ]
    district_rows = [
        [name, values["fold"], values["cells"], values["poor"]]
        for name, values in summary["data"]["districts"].items()
    ]
    columns = ["fold", "test districts", "test cells", "poor", "training cells", "validation cells"]
    return report.Section(
        "Folds",
        [
            report.Table(
                columns,
                fold_rows,
                caption="Each fold's districts are held out; members are trained on the other folds.",
            ),
            report.Table(["district", "fold", "cells", "poor"], district_rows),
        ],
    )


def _fold_metrics_section(
    summary: dict[str, Any], models: Sequence[str], report: types.ModuleType
) -> Any:
    """Every model's metrics in each held-out fold, the ensemble's rows in bold."""
    metric_rows: list[list[Any]] = []
    emphasis: list[int] = []
    for record in summary["folds"]:
        for model in models:
            values = record["metrics"][model]
            if model == ENSEMBLE:
                emphasis.append(len(metric_rows))
            metric_rows.append(
                [record["fold"], _model_label(model, summary), values["n"]]
                + [values[key] for key in METRIC_KEYS]
            )
    return report.Section(
        "Metrics per fold",
        [
            report.Paragraph(
                "The held-out fold's cells predicted by members trained without them. Recall: "
                "share of the poor cells predicted poor; precision: share of the cells predicted "
                "poor that are poor; accuracy: share predicted right; AUC: ranking of poor above "
                "not-poor cells (0.5 = random)."
            ),
            report.Table(
                ["fold", "model", "cells", "recall", "precision", "accuracy", "AUC"],
                metric_rows,
                emphasis=emphasis,
            ),
        ],
    )


def _across_folds_section(
    summary: dict[str, Any], models: Sequence[str], report: types.ModuleType
) -> Any:
    """Each model's median and range over the folds, and its metrics on all cells pooled."""
    summary_rows: list[list[Any]] = []
    summary_emphasis: list[int] = []
    for model in models:
        values = summary["summary"][model]
        if model == ENSEMBLE:
            summary_emphasis.append(len(summary_rows))
        summary_rows.append(
            [_model_label(model, summary)]
            + [values[key]["median"] for key in METRIC_KEYS]
            + [_range(values[key]) for key in METRIC_KEYS]
        )
    pooled_rows = [
        [_model_label(model, summary)]
        + [summary["pooled"][model][key] for key in ("n",) + METRIC_KEYS]
        for model in models
    ]
    names = ["recall", "precision", "accuracy", "AUC"]
    return report.Section(
        "Across folds",
        [
            report.Table(
                ["model"]
                + [f"{name} (median)" for name in names]
                + [f"{name} range" for name in names],
                summary_rows,
                caption="Median and range (min–max) over the folds where the metric is defined.",
                emphasis=summary_emphasis,
            ),
            report.Table(
                ["model", "cells"] + names,
                pooled_rows,
                caption="All out-of-fold predictions pooled (every labelled cell once).",
                emphasis=[len(summary["members"])],
            ),
        ],
    )


def _roc_section(figures: dict[str, str], report: types.ModuleType) -> Any:
    """The pooled ROC curves and the ensemble's per fold, where drawn; None when neither is."""
    figure_blocks = [
        report.Figure(figures[name], caption, caption)
        for name, caption in (
            ("roc", "ROC curves of all out-of-fold predictions pooled, members and ensemble"),
            (
                "roc_folds",
                "The ensemble's ROC curve in each held-out fold: the spread shows how much the "
                "districts differ",
            ),
        )
        if figures.get(name)
    ]
    return report.Section("ROC curves", figure_blocks) if figure_blocks else None


def _confusion_section(
    summary: dict[str, Any], figures: dict[str, str], report: types.ModuleType
) -> Any:
    """The pooled confusion matrices (figure, where drawn) and the ensemble's outcome counts."""
    pooled_ensemble = summary["pooled"][ENSEMBLE]
    outcome_rows = [
        [OUTCOMES[outcome][0], count, count / max(1, pooled_ensemble["n"])]
        for outcome, count in summary["outcomes"].items()
    ]
    blocks = (
        [
            report.Figure(
                figures["confusion"],
                "Observed (rows) against predicted (columns), every labelled cell "
                "predicted once by members that never saw its district",
                "confusion matrices",
            )
        ]
        if figures.get("confusion")
        else []
    )
    blocks.append(report.Table(["outcome (ensemble)", "cells", "share"], outcome_rows))
    return report.Section("Confusion matrices (out-of-fold, pooled)", blocks)


def _notes_section(summary: dict[str, Any], models: Sequence[str], report: types.ModuleType) -> Any:
    """Why some metrics are undefined in some folds; None when all are defined."""
    notes = sorted(
        {
            f"fold {record['fold']} {model}: {note}"
            for record in summary["folds"]
            for model in models
            for note in record["metrics"][model].get("notes", [])
        }
    )
    if not notes:
        return None
    return report.Section(
        "Notes",
        [
            report.Paragraph("Values shown as – are undefined for these cells:"),
            report.BulletList(notes),
        ],
    )


def _model_label(model: str, summary: dict[str, Any]) -> str:
    """A model's name in the tables; the random baseline's says how many draws."""
    if model == RANDOM:
        return f"random (median of {summary['settings']['random_draws']})"
    return model


def _interval_rule(summary: dict[str, Any]) -> str | None:
    """The folds' interval rule in a sentence (None for metrics from before it)."""
    rules = [record.get("interval") for record in summary.get("folds", [])]
    if not rules or not all(rule and rule.get("method") == INTERVAL_METHOD for rule in rules):
        return None
    taus = ", ".join(f"{rule['tau2'] ** 0.5:.2f}" for rule in rules)
    slopes = (
        " and its slope (relative σ per fold: "
        + ", ".join(f"{rule['slope_var'] ** 0.5:.2f}" for rule in rules)
        + ")"
        if all("slope_var" in rule for rule in rules)
        else ""
    )
    return (
        "Each cell's interval prob_low–prob_high comes from its fold's interval rule, fitted on "
        "that fold's validation cells by district: Platt scaling's own uncertainty (refitted "
        "leaving out one district at a time) and how much the calibration varies between "
        f"districts (τ on the logit scale, per fold: {taus}){slopes}, widened to the "
        "resolution of the reliability bins."
    )


def _fold_thresholds(settings: dict[str, Any], folds: Sequence[dict[str, Any]]) -> str:
    """The ensemble's decision threshold in words: one value (older metrics) or one per fold."""
    if "decision_threshold" in settings:
        return f"{settings['decision_threshold']:g}"
    values = ", ".join(
        f"{record['decision_threshold']:.3f}" for record in folds if "decision_threshold" in record
    )
    return f"the fold's training cells' share of poor cells ({values})"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _range(values: dict[str, Any]) -> str | None:
    if values["min"] is None:
        return None
    return f"{values['min']:.3f}–{values['max']:.3f}"
