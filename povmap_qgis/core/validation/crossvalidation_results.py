"""The cross-validation's results: pooled out-of-fold outputs, metrics document and files.

Every cell's out-of-fold ensemble outputs and the metrics of all cells pooled; the
metrics document (settings, data, each fold, median / min / max across folds, pooled,
verdict, stacking, interval coverage, ROC curves); its tidy CSV rows; and the written
outputs (metrics JSON + CSV, the grid with folds and out-of-fold predictions).
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..names import BASELINE, ENSEMBLE, RANDOM, RANDOM_DRAWS
from ..names import METRIC_NAMES as METRIC_KEYS
from .fold_training import DECISION_RULE, THRESHOLD, json_ready
from .interval_report import COVERAGE_COLUMNS, coverage_rows
from .nested_stacking import stacking_summary
from .validation_outputs import hitmiss_style_with_counts, metrics_files, model_names

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from .crossvalidation import CrossValidateOptions
    from .district_folds import DistrictFolds
    from .fold_training import FoldTraining, OutOfFold


METRICS_FORMAT = "povmap-crossvalidation"
METRICS_FORMAT_VERSION = "1.0"
CSV_COLUMNS = (
    "fold",
    "districts",
    "model",
    "n",
    "recall",
    "precision",
    "accuracy",
    "auc",
) + COVERAGE_COLUMNS  # filled on the interval rows (pooled out-of-fold cells) only
SUMMARY_ROWS = ("median", "min", "max")
POOLED_ROW = "pooled"  # the CSV's interval rows: all out-of-fold cells


def pooled_outputs(
    run: FoldTraining, out: OutOfFold
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Every cell's out-of-fold ensemble outputs, and the metrics of all cells pooled."""
    from ..model import ensemble_judges

    member_probabilities = [out.probabilities[member] for member in run.members]
    outputs = ensemble_judges.ensemble_outputs(
        member_probabilities, THRESHOLD, out.calibrated, out.decision
    )
    outputs["prob_raw"], outputs["prob_mean"] = out.raw, out.calibrated
    outputs["prob_baseline"] = out.simple
    outputs["prob_low"], outputs["prob_high"] = out.low, out.high
    pooled = json_ready(
        ensemble_judges.holdout_metrics(
            run.members,
            run.labels,
            member_probabilities,
            THRESHOLD,
            run.options.seed,
            calibrated=out.calibrated,
            baseline=(out.simple, out.simple_threshold),
            decision_threshold=out.decision,
            raw=out.raw,
        )
    )
    return outputs, pooled


def metrics_document(
    run: FoldTraining,
    folds: DistrictFolds,
    fold_results: Mapping[int, tuple[dict[str, Any], dict[str, Any]]],
    out: OutOfFold,
    pooled_results: tuple[dict[str, np.ndarray], dict[str, Any]],
    environment: dict[str, Any],
    flagged: Any,
) -> dict[str, Any]:
    """The metrics document (METRICS): settings, data, each fold, summary, pooled, verdict."""
    from .interval_coverage import coverage

    outputs, pooled = pooled_results
    labels = run.labels
    return {
        "format": METRICS_FORMAT,
        "format_version": METRICS_FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "settings": _settings(run.options, run.preset, run.members, environment),
        "data": {
            "cells": int(len(labels)),
            "poor_cells": int(labels.sum()),
            "flagged_cells": int(flagged),
            "districts": {
                name: {
                    "fold": fold,
                    "cells": int((folds.districts == name).sum()),
                    "poor": int(labels[folds.districts == name].sum()),
                }
                for name, fold in sorted(folds.assignment.items())
            },
        },
        "members": run.members,
        "threshold": THRESHOLD,
        "folds": [
            dict(record, metrics=json_ready(result)) for record, result in fold_results.values()
        ],
        "summary": _summary(
            {fold: result for fold, (_, result) in fold_results.items()}, run.members
        ),
        "pooled": pooled,
        "verdict": _verdict(labels, folds.districts, outputs, pooled, run.options.seed),
        "stacking": stacking_summary(run, folds, fold_results, out),
        "interval_coverage": coverage(
            labels,
            out.calibrated,
            out.low,
            out.high,
            folds.districts,
            run.options.nominal,
            spread=(out.spread_low, out.spread_high),
            folds=folds.cell_folds,
        ),
        "roc": _roc(run, folds, out, outputs),
    }


def _roc(
    run: FoldTraining, folds: DistrictFolds, out: OutOfFold, outputs: dict[str, np.ndarray]
) -> dict[str, Any]:
    """ROC curves of the pooled out-of-fold predictions, and of the ensemble in each fold."""
    from . import metrics

    labels = run.labels
    pooled = [(member, out.probabilities[member]) for member in run.members]
    pooled += [(ENSEMBLE, outputs["prob_mean"]), (BASELINE, out.simple)]
    return {
        "pooled": {name: metrics.roc_points(labels, values) for name, values in pooled},
        "folds": {
            str(fold): metrics.roc_points(
                labels[folds.cell_folds == fold], outputs["prob_mean"][folds.cell_folds == fold]
            )
            for fold in folds.numbers
        },
    }


def _verdict(
    labels: np.ndarray,
    districts: np.ndarray,
    outputs: dict[str, np.ndarray],
    pooled: dict[str, Any],
    seed: int,
) -> dict[str, Any]:
    """The report's verdict on the pooled out-of-fold predictions, districts resampled."""
    from ..decision.verdict import bootstrap_auc, verdict

    interval = bootstrap_auc(
        labels, outputs["prob_mean"], outputs["prob_baseline"], groups=districts, seed=seed
    )
    return dict(
        verdict(
            pooled[ENSEMBLE]["recall"],
            pooled[ENSEMBLE]["precision"],
            pooled[ENSEMBLE]["auc"],
            interval["auc"],
            pooled[RANDOM]["recall"],
            pooled[BASELINE]["recall"],
            pooled[BASELINE]["auc"],
            interval["difference"],
            prevalence=float(sum(labels) / len(labels)),
        ),
        auc_interval=interval["auc"],
        difference_interval=interval["difference"],
        bootstrap_draws=interval["draws"],
        resampled="districts",
    )


def _summary(fold_metrics: Mapping[int, dict[str, Any]], members: Sequence[str]) -> dict[str, Any]:
    """model -> metric -> {median, min, max, folds (defined values)} across folds."""
    import numpy as np

    summary: dict[str, Any] = {}
    for model in model_names(members, next(iter(fold_metrics.values()))):
        summary[model] = {}
        for key in ("n",) + METRIC_KEYS:
            values = [
                result[model][key]
                for result in fold_metrics.values()
                if result[model][key] is not None
            ]
            summary[model][key] = (
                {
                    "median": float(np.median(values)),
                    "min": float(np.min(values)),
                    "max": float(np.max(values)),
                    "folds": len(values),
                }
                if values
                else {"median": None, "min": None, "max": None, "folds": 0}
            )
    return summary


def _settings(
    options: CrossValidateOptions,
    preset: dict[str, Any],
    members: Sequence[str],
    environment: dict[str, Any],
) -> dict[str, Any]:
    from ..version import plugin_version

    return {
        "chips": os.path.abspath(options.chips_path),
        "grid": os.path.abspath(options.grid_path),
        "grid_layer": options.grid_layer,
        "preset": options.preset,
        "members": members,
        "folds": int(options.folds),
        "seed": int(options.seed),
        "balance": options.balance,
        "stacking": options.stacking,
        "threshold": THRESHOLD,
        "decision_rule": DECISION_RULE,
        "random_draws": RANDOM_DRAWS,
        "max_epochs": int(preset["epochs"]),
        "batch_size": int(preset["batch_size"]),
        "learning_rate": float(preset["learning_rate"]),
        "patience": int(preset["patience"]),
        "nominal": float(options.nominal),
        "povmap_qgis": plugin_version(),
        **environment,
    }


def tidy_rows(document: dict[str, Any]) -> list[list[Any]]:
    """CSV rows: each fold's members, ensemble, baseline, random; then median, min and max across
    folds; then the intervals' coverage of the pooled out-of-fold cells (fold "pooled")."""
    models = model_names(document["members"], document["summary"])
    rows = []
    blank = [""] * len(COVERAGE_COLUMNS)
    for record in document["folds"]:
        for model in models:
            values = record["metrics"][model]
            rows.append(
                [record["fold"], "; ".join(record["districts"]), model, values["n"]]
                + [_csv(values[key]) for key in METRIC_KEYS]
                + blank
            )
    for statistic in SUMMARY_ROWS:
        for model in models:
            values = document["summary"][model]
            n = values["n"][statistic]
            rows.append(
                [statistic, "", model, "" if n is None else int(n)]
                + [_csv(values[key][statistic]) for key in METRIC_KEYS]
                + blank
            )
    for name, n, *values in coverage_rows(document.get("interval_coverage")):
        rows.append([POOLED_ROW, "", name, n] + [""] * len(METRIC_KEYS) + values)
    return rows


def _csv(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def write_outputs(
    options: CrossValidateOptions,
    document: dict[str, Any],
    cells: pd.DataFrame,
    cell_folds: np.ndarray,
    probabilities: Mapping[str, np.ndarray],
    outputs: dict[str, np.ndarray],
    cell_outcomes: np.ndarray,
    members: Sequence[str],
    id_field: str,
) -> None:
    """Metrics JSON and CSV, then the grid with folds and out-of-fold predictions; all appear only when all are written."""
    import geopandas
    import numpy as np

    from ..geopackage import write_layer
    from ..vectors import spatial_layer

    layer = spatial_layer(options.grid_path, options.grid_layer, "GRID")
    grid = geopandas.read_file(options.grid_path, layer=layer, engine="pyogrio")
    # cells holds the grid's id (id_field) as cell_id
    index = (
        grid[[id_field]]
        .rename(columns={id_field: "cell_id"})
        .astype({"cell_id": "int64"})
        .merge(
            cells[["cell_id"]].assign(position=np.arange(len(cells))),
            on="cell_id",
            how="left",
        )["position"]
        .to_numpy()
    )
    found = ~np.isnan(index)
    positions = np.where(found, index, 0).astype("int64")

    def spread(values: np.ndarray, dtype: str) -> Any:
        column = np.asarray(values)[positions].astype("float64")
        column[~found] = np.nan
        return column if dtype == "float64" else _nullable(column, dtype)

    grid["fold"] = spread(cell_folds, "Int32")
    for member in members:
        grid[f"prob_{member}"] = spread(probabilities[member], "float64")
    grid["prob_mean"] = spread(outputs["prob_mean"], "float64")
    for field in ("prob_raw", "prob_low", "prob_high", "prob_baseline"):
        grid[field] = spread(outputs[field], "float64")
    grid["votes"] = spread(outputs["votes"], "Int32")
    grid["pred"] = spread(outputs["pred"], "Int32")
    grid["outcome"] = np.where(found, np.asarray(cell_outcomes, dtype=object)[positions], None)  # type: ignore[call-overload]  # numpy's stubs refuse None
    with (
        metrics_files(options.metrics_path, document, CSV_COLUMNS, tidy_rows(document)),
        hitmiss_style_with_counts(options.style_qml_path, document["outcomes"]) as style,
    ):
        write_layer(
            grid,
            options.output_grid_path,
            style,
            "povmap cross-validation (out-of-fold hits and misses)",
            extra_styles=options.extra_styles,
            metadata={
                "povmap_threshold": THRESHOLD,
                "povmap_decision": DECISION_RULE,
                "povmap_decision_thresholds": json.dumps(
                    {
                        str(record["fold"]): record["decision_threshold"]
                        for record in document["folds"]
                    }
                ),
                "povmap_members": ",".join(members),
                "povmap_folds": int(options.folds),
                "povmap_seed": int(options.seed),
                "povmap_grid": os.path.abspath(options.grid_path),
                "povmap_outcomes": json.dumps(document["outcomes"]),
            },
        )


def _nullable(values: np.ndarray, dtype: str) -> Any:
    import pandas

    return pandas.array([None if value != value else int(value) for value in values], dtype=dtype)
