"""Predictions against observed labels (pipeline step 6, runs in the worker).

Cells of a prediction layer (``povmap:predict``) are matched with the cells
of a labelled grid (held-out cells, or a new ground-truth survey gridded with
``povmap:buildtraininggrid``) by ``cell_id`` (an own grid's id: ``id_field``) —
never by location, so the two
layers may be stored in different CRSs. For every member (its probability at
the model's threshold), the ensemble (its ``pred`` majority vote; AUC from
``prob_mean``) and the paper's random baseline (median of RANDOM_DRAWS
coin-flip predictions) this writes recall, precision, accuracy and AUC, over
all matched cells and per district, as JSON and a tidy CSV; ROC curves and
confusion matrices as PNGs; and the hit/miss layer (prediction fields +
``label`` + ``outcome``), styled, with the count of each outcome in its legend.

Truth with one class only (e.g. every surveyed cell poor) is not an error:
recall, precision and accuracy are still reported where defined; AUC and ROC
curves are undefined, left empty (None) with a note and a warning.

numpy and pandas are imported inside the functions that need them. The
figures and the HTML report are built by ``evaluation_report.py`` (its
``report_document`` is also called inside QGIS).

The step in modules: ``evaluation_inputs.py`` (the prediction layer and the matched cells),
``evaluation_scopes.py`` (the numbers of each scope of cells).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import time
from typing import TYPE_CHECKING, Any

from ..atomic import check_output_path
from ..errors import PovmapInputError
from ..grid.labelled_grid import read_labelled_grid
from ..names import BASELINE, ENSEMBLE, RANDOM, RANDOM_DRAWS
from ..progress import Reporter
from ..wording import metric_text
from .evaluation_inputs import check_votes, match_cells, read_predictions
from .evaluation_report import write_figures
from .evaluation_scopes import (
    ALL_SCOPE,
    IN_RANGE_SCOPE,
    NEW_CELLS_SCOPE,
    district_groups,
    evaluation_verdict,
    in_range_metrics,
    interval_coverage,
    metric_notes,
    new_cell_metrics,
    outcome_counts,
    roc_curves,
    scope_metrics,
    training_cells_compared,
)
from .interval_report import COVERAGE_COLUMNS, coverage_rows
from .validation_outputs import (
    hitmiss_style_with_counts,
    metrics_csv_path,
    metrics_files,
    model_names,
)

if TYPE_CHECKING:
    import pandas as pd


METRICS_FORMAT = "povmap-evaluation"
METRICS_FORMAT_VERSION = "1.0"
CSV_COLUMNS = (
    "scope",
    "model",
    "n",
    "recall",
    "precision",
    "accuracy",
    "auc",
) + COVERAGE_COLUMNS  # filled on the interval rows only


@dataclasses.dataclass
class EvaluateOptions:
    predictions_path: str
    truth_path: str
    hitmiss_path: str
    metrics_path: str
    figures_folder: str | None = None  # PNGs (ROC curves, confusion matrices); None: no figures
    predictions_layer: str | None = None
    truth_layer: str | None = None
    random_draws: int = RANDOM_DRAWS
    seed: int = 0
    style_qml_path: str | None = None  # resources/styles/hitmiss.qml; legend labels get the counts
    # The cell id both layers share (an own grid's ID_FIELD); None: the id Predict poverty
    # recorded in the prediction layer, else cell_id.
    id_field: str | None = None
    # the layers' names in the user's project (e.g. "Predictions — Kotlani (demo_compact)");
    # None: the layer's name in its file
    predictions_name: str | None = None
    truth_name: str | None = None


def evaluate(options: EvaluateOptions, reporter: Reporter | None = None) -> dict[str, Any]:
    """Compare predictions with observed labels; write the outputs; return a summary (see module doc)."""
    reporter = reporter or Reporter()
    started = time.monotonic()
    _check_options(options)
    predictions = read_predictions(options)
    options = dataclasses.replace(options, id_field=predictions["id_field"])
    reporter.progress(10)
    reporter.check_canceled()
    truth = read_labelled_grid(
        options.truth_path,
        options.truth_layer,
        options.id_field,  # type: ignore[arg-type]  # the layer's, set above
        reporter,
    )
    reporter.progress(20)
    cells, data = match_cells(predictions, truth, options, reporter)
    _report_matched(cells, data, options, reporter)
    check_votes(cells, predictions, reporter)
    reporter.check_canceled()

    districts = district_groups(cells)
    overall = scope_metrics(cells, predictions, options)
    in_range = in_range_metrics(cells, predictions, options, reporter)
    trained_on = training_cells_compared(cells, predictions["metadata"], reporter)
    new_cells = new_cell_metrics(cells, trained_on, districts, predictions, options)
    by_district = {}
    for index, (district, group) in enumerate(districts):
        reporter.progress(20 + 45 * (index + 1) / (len(districts) + 1))
        reporter.check_canceled()
        by_district[district] = scope_metrics(group, predictions, options)
    document = {
        "format": METRICS_FORMAT,
        "format_version": METRICS_FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "settings": _settings(options, predictions),
        "data": data,
        "members": predictions["members"],
        "threshold": predictions["threshold"],
        "metrics": {"all": overall, "districts": by_district}
        | ({"in_range": in_range} if in_range is not None else {})
        | new_cells,
        "training_districts": _training_districts(predictions["metadata"]),
        "training_cells": trained_on,
        "roc": roc_curves(cells, predictions["members"]),
        "verdict": evaluation_verdict(cells, overall, options),
        "calibrated": "prob_raw" in cells,
        "outcomes": {
            "all": outcome_counts(cells),
            "districts": {district: outcome_counts(group) for district, group in districts},
        },
        "notes": metric_notes(overall, by_district, data, in_range),
    }
    coverage = interval_coverage(cells, predictions, reporter)
    if coverage is not None:
        document["interval_coverage"] = coverage
    reporter.progress(70)
    reporter.check_canceled()
    figures = (
        write_figures(options.figures_folder, document, predictions["members"])
        if options.figures_folder
        else {}
    )
    reporter.progress(85)
    reporter.check_canceled()
    _write_outputs(options, document, cells, predictions)
    reporter.progress(100)
    ensemble = overall[ENSEMBLE]
    reporter.info(
        "ensemble "
        + "  ".join(
            f"{key} {metric_text(ensemble[key])}"
            for key in ("recall", "precision", "accuracy", "auc")
        )
        + f"; random baseline (median of {options.random_draws}) "
        + "  ".join(
            f"{key} {metric_text(overall[RANDOM][key])}"
            for key in ("recall", "precision", "accuracy")
        )
    )
    if BASELINE in overall:
        reporter.info(
            "transparent baseline (prob_baseline) "
            + "  ".join(
                f"{key} {metric_text(overall[BASELINE][key])}"
                for key in ("recall", "precision", "accuracy", "auc")
            )
        )
    verdict = document.get("verdict") or {}
    if verdict.get("headline"):
        reporter.info(f"Verdict: {verdict['headline']} {verdict.get('sentence', '')}".strip())
    return dict(
        document,
        hitmiss=os.path.abspath(options.hitmiss_path),
        metrics_json=os.path.abspath(options.metrics_path),
        metrics_csv=os.path.abspath(metrics_csv_path(options.metrics_path)),
        figures=figures,
        seconds=round(time.monotonic() - started, 2),
    )


def _report_matched(
    cells: pd.DataFrame, data: dict[str, Any], options: EvaluateOptions, reporter: Reporter
) -> None:
    """How many cells were matched and left out; a warning when they hold one class only."""
    labels = cells["label"].to_numpy()
    reporter.info(
        f"{data['common_cells']} cells matched by {options.id_field} ({data['poor_cells']} poor); "
        f"{data['truth_without_prediction']} TRUTH cells without a prediction, "
        f"{data['predictions_without_truth']} predicted cells without a label."
    )
    if data["poor_cells"] in (0, len(labels)):
        reporter.warning(
            f"TRUTH: all {len(labels)} matched cells are {'poor' if data['poor_cells'] else 'not poor'} (one class): "
            "AUC and ROC curves are undefined and left empty; recall, precision and accuracy are reported where defined."
        )


def _check_options(options: EvaluateOptions) -> None:
    check_output_path(options.hitmiss_path, "HITMISS", (".gpkg",))
    check_output_path(options.metrics_path, "METRICS", (".json",))
    for path, parameter in (
        (options.predictions_path, "PREDICTIONS"),
        (options.truth_path, "TRUTH"),
    ):
        if not path or not os.path.exists(path):
            raise PovmapInputError(parameter, f"the file '{path}' does not exist.")
        if os.path.abspath(path) in (
            os.path.abspath(options.hitmiss_path),
            os.path.abspath(options.metrics_path),
        ):
            raise PovmapInputError(
                "HITMISS", f"'{path}' is the {parameter} input; choose another output name."
            )
    if int(options.random_draws) < 1:
        raise PovmapInputError(
            "RANDOM_DRAWS", f"{options.random_draws} draws: give at least 1 (the paper: 1000)."
        )


def _settings(options: EvaluateOptions, predictions: dict[str, Any]) -> dict[str, Any]:
    from ..version import plugin_version

    metadata = predictions["metadata"]
    return {
        "predictions": os.path.abspath(options.predictions_path),
        "predictions_layer": options.predictions_layer,
        "truth": os.path.abspath(options.truth_path),
        "truth_layer": options.truth_layer,
        "random_draws": int(options.random_draws),
        "seed": int(options.seed),
        "threshold": predictions["threshold"],
        "threshold_source": "layer metadata povmap:threshold"
        if not predictions["threshold_note"]
        else f"default ({predictions['threshold_note']})",
        "decision_threshold": predictions.get("decision_threshold"),
        "model": metadata.get("povmap:model"),
        "model_notice": _model_notice(metadata.get("povmap:model")),
        "povmap_qgis": plugin_version(),
    }


def _training_districts(metadata: dict[str, Any]) -> dict[str, Any] | None:
    """{district: labelled cells the model learned from}, from the prediction layer's metadata; None when not recorded."""
    try:
        seen = json.loads(metadata.get("povmap:training_districts", "null"))
    except ValueError:
        return None
    return seen if isinstance(seen, dict) else None


def _model_notice(model_path: str | None) -> str | None:
    """The model package's notice (demonstration models say they are not for policy use)."""
    if not model_path:
        return None
    try:
        with open(os.path.join(model_path, "manifest.json"), encoding="utf-8") as handle:
            return json.load(handle).get("notice")
    except (OSError, ValueError):
        return None


def _write_outputs(
    options: EvaluateOptions,
    document: dict[str, Any],
    cells: pd.DataFrame,
    predictions: dict[str, Any],
) -> None:
    """Metrics JSON and CSV, then the hit/miss layer; all three appear only when all three are written."""
    from ..geopackage import write_layer

    with (
        metrics_files(options.metrics_path, document, CSV_COLUMNS, tidy_rows(document)),
        hitmiss_style_with_counts(options.style_qml_path, document["outcomes"]["all"]) as style,
    ):
        # underscore keys: GDAL would cut "povmap:threshold" at the colon (see _metadata)
        metadata = {
            "povmap_threshold": predictions["threshold"],
            "povmap_members": ",".join(predictions["members"]),
            "povmap_predictions": os.path.abspath(options.predictions_path),
            "povmap_truth": os.path.abspath(options.truth_path),
            "povmap_model": predictions["metadata"].get("povmap:model", ""),
            "povmap_outcomes": json.dumps(document["outcomes"]["all"]),
        }
        write_layer(cells, options.hitmiss_path, style, "povmap hit/miss", metadata=metadata)


def tidy_rows(document: dict[str, Any]) -> list[list[Any]]:
    """CSV rows: scope (all, all (in range) and all (new cells) when judged, then districts), model, n, recall, precision, accuracy, auc."""
    in_range = document["metrics"].get("in_range")
    new_cells = document["metrics"].get("new_cells")
    scopes = (
        [(ALL_SCOPE, document["metrics"]["all"])]
        + ([(IN_RANGE_SCOPE, in_range)] if in_range else [])
        + ([(NEW_CELLS_SCOPE, new_cells)] if new_cells else [])
        + sorted(document["metrics"]["districts"].items())
    )
    rows = []
    blank = [""] * len(COVERAGE_COLUMNS)
    for scope, models in scopes:
        for model in model_names(document["members"], models):
            values = models[model]
            rows.append(
                [scope, model, values["n"]]
                + [
                    "" if values[key] is None else repr(float(values[key]))
                    for key in ("recall", "precision", "accuracy", "auc")
                ]
                + blank
            )
    for name, n, *values in coverage_rows(document.get("interval_coverage")):
        rows.append([ALL_SCOPE, name, n, "", "", "", ""] + values)
    return rows
