"""Leave-districts-out k-fold cross-validation of the ensemble (runs in the worker).

Whole districts make up each fold, balanced by cell count (greedy: the
largest district goes to the fold with the fewest cells; the SEED breaks
ties between districts of equal size). For each fold every member is trained
on the other folds exactly as ``train`` trains it (a stratified validation
share of the training folds, undersampling, normalisation from training cells
only, early stopping) and predicts the held-out fold. The map's probability is the
stacking of the members and the baseline (``core.model.stacking``): with STACKING=nested
its weights are fitted on inner out-of-fold predictions of the fold's training districts
(``INNER_FOLDS`` folds of whole districts, members and baseline retrained in each), so the
held-out fold is never seen by members, stacking or calibration; STACKING=validation fits
it on the fold's validation cells (as ``train``); off: the members' mean. Per fold: recall,
precision, accuracy and AUC of each member (probability >= 0.5), the ensemble
(pred: its mean probability calibrated in the fold >= the fold's training
cells' share of poor cells, as ``train`` decides; AUC of that probability), the
baseline (the same rule on its own calibrated probability) and the random baseline — the
paper's Table 5 layout — then their median, minimum and maximum across folds.

Outputs: metrics as JSON and a tidy CSV beside it (fold, districts, model, n,
recall, precision, accuracy, auc; fold = median / min / max for the summary
rows; then coverage, nominal, mean_width on the intervals' rows, fold = pooled) and the grid with ``fold`` and the out-of-fold ``prob_<member>``,
``prob_mean``, ``prob_raw``, ``prob_low``/``prob_high``, ``prob_baseline``, ``votes``,
``pred`` and ``outcome`` (hit, miss, false_alarm, correct_rejection) of every
cell; ``prob_low``/``prob_high`` by each fold's interval rule (``intervals.fit_interval``,
fitted on the fold's validation cells by district at ``NOMINAL``). The metrics hold
``interval_coverage`` (``interval_coverage.coverage``): how often the out-of-fold intervals hold
their reliability bin's and their district's observed share poor, against the nominal
level, beside the members'-spread interval. The figures and the HTML report are built by
``crossvalidation_report.py`` (its ``report_document`` is also called inside QGIS).

The step in modules: ``district_folds.py`` (the folds), ``fold_training.py`` (one fold),
``nested_stacking.py`` (STACKING=nested and what the image members add),
``crossvalidation_results.py`` (pooled outputs, the metrics document, the files written).
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

from ..atomic import check_output_path
from ..model.training_settings import TrainingSettings, check_balance, check_nominal
from ..progress import Reporter
from .crossvalidation_report import write_figures
from .crossvalidation_results import metrics_document, pooled_outputs, write_outputs
from .district_folds import folds_of_cells
from .fold_training import FoldTraining, OutOfFold, run_fold
from .validation_outputs import OUTCOMES, metrics_csv_path, outcomes

STACKING_MODES = ("nested", "validation", "off")


@dataclasses.dataclass(kw_only=True)
class CrossValidateOptions(TrainingSettings):
    """What ``crossvalidate`` takes: the shared training settings (every fold trains as
    ``train``), the folds and the outputs."""

    metrics_path: str
    output_grid_path: str
    folds: int = 6
    # default style of OUTPUT_GRID (hit/miss; counts are added to its legend)
    style_qml_path: str | None = None
    extra_styles: list | None = None  # [(qml path, style name)] stored beside it
    figures_folder: str | None = (
        None  # PNGs for the report (ROC curves, confusion matrices); None: none
    )
    # how prob_raw combines the members and the baseline in each fold (core/model/stacking.py):
    # "nested" (fitted on inner out-of-fold predictions of the fold's training districts),
    # "validation" (fitted on the fold's validation cells, as train does) or "off" (the mean)
    stacking: str = "nested"


def crossvalidate(
    options: CrossValidateOptions, reporter: Reporter | None = None
) -> dict[str, Any]:
    """Run the k-fold cross-validation; write the outputs; return a summary (see module doc)."""
    from ..chips.chip_store import ChipStore
    from ..model import member_fitting, training_split

    reporter = reporter or Reporter()
    started = time.monotonic()
    preset, members = _check_options(options)
    store = ChipStore(options.chips_path)
    cells, flagged = training_split.usable_cells(store, options, reporter)
    folds = folds_of_cells(cells, options, reporter)
    if flagged:
        reporter.info(f"{flagged} cells flagged for nodata in the chip store are left out.")
    reporter.progress(2)
    reporter.check_canceled()

    environment = member_fitting.configure_tensorflow(options.seed, reporter)
    run = FoldTraining(
        options,
        store,
        preset,
        members,
        member_fitting.model_inputs(store),
        cells["store_row"].to_numpy(),
        cells["label"].to_numpy(),
    )
    out = OutOfFold.empty(members, len(cells))
    fold_results = {}
    for position, fold in enumerate(folds.numbers):
        reporter.check_canceled()
        span = (
            3 + 92 * position / len(folds.numbers),
            3 + 92 * (position + 1) / len(folds.numbers),
        )
        fold_results[fold] = run_fold(run, folds, fold, out, reporter, span)
    reporter.check_canceled()

    outputs, pooled = pooled_outputs(run, out)
    document = metrics_document(
        run, folds, fold_results, out, (outputs, pooled), environment, flagged
    )
    images = document["stacking"]["images"]
    if images:
        document["verdict"]["sentence"] += " " + images["sentence"]
        reporter.info(images["sentence"])
    reporter.info(
        f"stacking {options.stacking}: the inner folds took {document['stacking']['seconds']['inner_folds']} s "
        f"of the folds' {document['stacking']['seconds']['folds']} s"
    )
    _report_coverage(document["interval_coverage"], reporter)
    cell_outcomes = outcomes(run.labels, outputs["pred"])
    document["outcomes"] = {outcome: int((cell_outcomes == outcome).sum()) for outcome in OUTCOMES}
    reporter.progress(96)
    write_outputs(
        options,
        document,
        cells,
        folds.cell_folds,
        out.probabilities,
        outputs,
        cell_outcomes,
        members,
        id_field=training_split.grid_id_field(store, options),
    )
    figures = (
        write_figures(options.figures_folder, document, members) if options.figures_folder else {}
    )
    reporter.progress(100)
    return dict(
        document,
        metrics_json=os.path.abspath(options.metrics_path),
        metrics_csv=os.path.abspath(metrics_csv_path(options.metrics_path)),
        output_grid=os.path.abspath(options.output_grid_path),
        figures=figures,
        seconds=round(time.monotonic() - started, 1),
    )


def _report_coverage(coverage: dict[str, Any], reporter: Reporter) -> None:
    """The out-of-fold intervals' coverage (both checks) and widths in the log; warnings when short."""
    districts = coverage.get("districts")
    reporter.info(
        f"prob_low–prob_high hold their fold's reliability bin's observed share poor for "
        f"{coverage['coverage']:.1%} of the out-of-fold cells"
        + (
            f" ({coverage['pooled_coverage']:.1%} with every fold's cells in one set of bins, "
            "which cannot see how a new district differs)"
            if coverage.get("pooled_coverage") is not None
            else ""
        )
        + (
            f" and their district's for {districts['coverage']:.0%} of {districts['districts']} "
            "districts"
            if districts and districts["coverage"] is not None
            else ""
        )
        + f" (nominal {coverage['nominal']:.0%}; mean width {coverage['mean_width']:.3f}"
        + (
            f", the members' spread's {coverage['spread']['mean_width']:.3f} covering "
            f"{coverage['spread']['coverage']:.1%})"
            if coverage.get("spread")
            else ")"
        )
    )
    for warning in coverage["warnings"]:
        reporter.warning(warning)


def _check_options(options: CrossValidateOptions) -> tuple[dict[str, Any], list[str]]:
    """The output paths, the preset and members, the balance; returns (preset, members)."""
    from ..model import training

    check_output_path(options.metrics_path, "METRICS", (".json",))
    check_output_path(options.output_grid_path, "OUTPUT_GRID", (".gpkg",))
    preset, members = training.preset_and_members(options)
    check_balance(options)
    check_nominal(options)
    training.check_stacking(options.stacking, STACKING_MODES)
    return preset, members
