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
``interval_coverage`` (``intervals.coverage``): how often the out-of-fold intervals hold
their reliability bin's and their district's observed share poor, against the nominal
level, beside the members'-spread interval. The figures and the HTML report are built by
``crossvalidation_report.py`` (its ``report_document`` is also called inside QGIS).
"""

import dataclasses
import datetime
import json
import os
import time
from typing import Any

from ..atomic import check_output_path
from ..errors import PovmapInputError
from ..model.training_settings import TrainingSettings, check_balance, check_nominal
from ..names import BASELINE, ENSEMBLE, METRIC_NAMES, RANDOM, RANDOM_DRAWS
from ..progress import Reporter, StageReporter
from ..wording import metric_text
from .crossvalidation_report import write_figures
from .interval_report import COVERAGE_COLUMNS, coverage_rows
from .validation_outputs import (
    OUTCOMES,
    hitmiss_style_with_counts,
    metrics_csv_path,
    metrics_files,
    model_names,
    outcomes,
)

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
METRIC_KEYS = METRIC_NAMES
SUMMARY_ROWS = ("median", "min", "max")
POOLED_ROW = "pooled"  # the CSV's interval rows: all out-of-fold cells
THRESHOLD = 0.5  # members' votes
DECISION_RULE = (
    "calibrated prob_mean >= the fold's training cells' share of poor cells"  # as train decides
)
NO_DISTRICT = "(no district)"
STACKING_MODES = ("nested", "validation", "off")
INNER_FOLDS = 3  # STACKING=nested: inner folds of whole districts inside each fold's training
# a fold's cell counts, recorded with its nested run in the run history
FOLD_CELL_COUNTS = (
    "test_cells",
    "test_poor",
    "train_cells",
    "train_poor",
    "train_after_balancing",
    "validation_cells",
)


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


def assign_folds(districts, folds, seed=0):
    """Fold (1..folds) of each district, whole districts per fold, balanced by cell count.

    ``districts``: the district of each cell. Greedy: districts from the
    largest to the smallest (equal sizes in a seeded random order) each go to
    the fold with the fewest cells so far (the lowest fold number on ties).
    Returns {district: fold}.
    """
    import numpy as np

    names, counts = np.unique(np.asarray(districts, dtype=str), return_counts=True)
    folds = int(folds)
    if folds < 2:
        raise PovmapInputError("FOLDS", f"{folds} folds: give at least 2.")
    if len(names) < 2:
        raise PovmapInputError(
            "GRID",
            f"the labelled cells lie in {len(names)} district(s) "
            f"({', '.join(names) or 'none'}); cross-validation by district needs at least 2: "
            "give a grid whose cells carry their districts (Build training grid with DISTRICTS), "
            "or evaluate a random holdout (Train with SPLIT=random).",
        )
    if len(names) < folds:
        raise PovmapInputError(
            "FOLDS",
            f"{folds} folds but the labelled cells lie in only {len(names)} district(s) "
            f"({', '.join(names)}); every fold needs at least one whole district: use FOLDS ≤ {len(names)}.",
        )
    shuffled = np.random.default_rng(seed).permutation(len(names))
    order = shuffled[np.argsort(-counts[shuffled], kind="stable")]
    sizes = np.zeros(folds, dtype="int64")
    assignment = {}
    for index in order:
        fold = int(np.argmin(sizes))
        assignment[str(names[index])] = fold + 1
        sizes[fold] += counts[index]
    return assignment


@dataclasses.dataclass
class _Folds:
    """The labelled cells' folds: whole districts per fold (:func:`assign_folds`)."""

    districts: Any  # each cell's district (NO_DISTRICT where it has none)
    assignment: dict  # {district: fold}
    cell_folds: Any  # each cell's fold
    numbers: list  # 1..folds
    districts_of: dict  # {fold: its districts, sorted}


@dataclasses.dataclass
class _FoldTraining:
    """What every fold trains with: the options, the store, the members and the labelled cells."""

    options: CrossValidateOptions
    store: Any
    preset: dict
    members: list
    inputs: list
    store_rows: Any
    labels: Any


@dataclasses.dataclass
class _OutOfFold:
    """Each cell's numbers from the fold that held it out (NaN until that fold is done)."""

    probabilities: dict  # {member: probability}
    calibrated: Any  # the ensemble mean calibrated in the fold
    low: Any  # its interval (the fold's interval rule)
    high: Any
    spread_low: Any  # the members'-spread interval, for comparison
    spread_high: Any
    simple: Any  # the fold's baseline's calibrated probability
    simple_threshold: Any  # and the baseline's decision threshold
    decision: Any  # the ensemble's decision threshold in the fold
    raw: Any  # prob_raw: the fold's stacking of members and baseline (or the members' mean)
    without_images: Any  # the stacking refitted without the image members, calibrated likewise

    @classmethod
    def empty(cls, members, count):
        import numpy as np

        return cls(
            {member: np.full(count, np.nan) for member in members},
            *(np.full(count, np.nan) for _ in range(10)),
        )


def crossvalidate(options, reporter=None):
    """Run the k-fold cross-validation; write the outputs; return a summary (see module doc)."""
    from ..chips.chip_store import ChipStore
    from ..model import training

    reporter = reporter or Reporter()
    started = time.monotonic()
    preset, members = _check_options(options)
    store = ChipStore(options.chips_path)
    cells, flagged = training.usable_cells(store, options, reporter)
    folds = _folds(cells, options, reporter)
    if flagged:
        reporter.info(f"{flagged} cells flagged for nodata in the chip store are left out.")
    reporter.progress(2)
    reporter.check_canceled()

    environment = training.configure_tensorflow(options.seed, reporter)
    run = _FoldTraining(
        options,
        store,
        preset,
        members,
        training.model_inputs(store),
        cells["store_row"].to_numpy(),
        cells["label"].to_numpy(),
    )
    out = _OutOfFold.empty(members, len(cells))
    fold_results = {}
    for position, fold in enumerate(folds.numbers):
        reporter.check_canceled()
        span = (
            3 + 92 * position / len(folds.numbers),
            3 + 92 * (position + 1) / len(folds.numbers),
        )
        fold_results[fold] = _run_fold(run, folds, fold, out, reporter, span)
    reporter.check_canceled()

    outputs, pooled = _pooled(run, out)
    document = _document(run, folds, fold_results, out, (outputs, pooled), environment, flagged)
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
    _write_outputs(
        options,
        document,
        cells,
        folds.cell_folds,
        out.probabilities,
        outputs,
        cell_outcomes,
        members,
        id_field=training.grid_id_field(store, options),
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


def _report_coverage(coverage, reporter):
    """The out-of-fold intervals' coverage (both checks) and widths in the log; warnings when short."""
    districts = coverage.get("districts")
    reporter.info(
        f"prob_low–prob_high hold their reliability bin's observed share poor for "
        f"{coverage['coverage']:.1%} of the out-of-fold cells"
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


def _check_options(options):
    """The output paths, the preset and members, the balance; returns (preset, members)."""
    from ..model import training

    check_output_path(options.metrics_path, "METRICS", (".json",))
    check_output_path(options.output_grid_path, "OUTPUT_GRID", (".gpkg",))
    preset, members = training.preset_and_members(options)
    check_balance(options)
    check_nominal(options)
    training.check_stacking(options.stacking, STACKING_MODES)
    return preset, members


def _folds(cells, options, reporter):
    """Each cell's district and fold, the folds reported."""
    import numpy as np

    districts = (
        cells["district"].where(cells["district"].notna(), NO_DISTRICT).astype(str).to_numpy()
    )
    if (districts == NO_DISTRICT).all():
        raise PovmapInputError(
            "GRID",
            "the labelled cells have no district; use a training grid built with a districts layer "
            "(Build training grid, DISTRICTS).",
        )
    if (districts == NO_DISTRICT).any():
        reporter.warning(
            f"{int((districts == NO_DISTRICT).sum())} labelled cells have no district; they form "
            f"one group '{NO_DISTRICT}'."
        )
    assignment = assign_folds(districts, options.folds, options.seed)
    cell_folds = np.array([assignment[name] for name in districts], dtype="int32")
    labels = cells["label"].to_numpy()
    numbers = list(range(1, int(options.folds) + 1))
    districts_of = {
        fold: sorted(name for name, number in assignment.items() if number == fold)
        for fold in numbers
    }
    for fold in numbers:
        rows = cell_folds == fold
        reporter.info(
            f"fold {fold}: {int(rows.sum())} cells ({int(labels[rows].sum())} poor) in "
            f"{', '.join(districts_of[fold])}"
        )
    return _Folds(districts, assignment, cell_folds, numbers, districts_of)


def _run_fold(run, folds, fold, out, reporter, span):
    """One fold as its own nested run in the run history (its parameters, epochs and final
    metrics), ``span`` of ``reporter``'s percent; returns the fold's record and metrics."""
    params = {"fold": fold, "districts": folds.districts_of[fold], "seed": run.options.seed + fold}
    with reporter.nested_run(f"fold {fold}", params) as fold_history:
        record, fold_metrics, roc = _fit_fold(run, folds, fold, out, fold_history.stage(*span))
        fold_history.final_metrics(
            {
                "metrics": _plain(fold_metrics),
                "cells": {key: record[key] for key in FOLD_CELL_COUNTS},
                "decision_threshold": record["decision_threshold"],
                "roc": roc,
            }
        )
        ensemble = fold_metrics[ENSEMBLE]
        reporter.info(
            f"fold {fold} ({', '.join(folds.districts_of[fold])}): ensemble "
            + "  ".join(f"{key} {metric_text(ensemble[key])}" for key in METRIC_KEYS)
        )
    return record, fold_metrics


def _fit_fold(run, folds, fold, out, reporter):
    """Train every member on the other folds as ``train`` does, fit the fold's baseline, stacking
    and calibration, predict the fold's cells into ``out``; returns its record, metrics and ROC.

    STACKING=nested: first the members and the baseline are trained on inner folds of the
    training districts (:func:`_inner_stacking`) and the stacking is fitted on their inner
    out-of-fold predictions; the held-out fold is never seen by members, stacking or
    calibration.
    """
    import numpy as np

    from ..model import learning_data, training

    options, store, store_rows, labels = run.options, run.store, run.store_rows, run.labels
    test = np.flatnonzero(folds.cell_folds == fold)
    training_folds = np.flatnonzero(folds.cell_folds != fold)
    started = time.monotonic()
    inner = None
    if options.stacking == "nested":
        share = INNER_FOLDS / (INNER_FOLDS + 1)
        inner = _inner_stacking(
            run, folds, fold, training_folds, _InnerReporter(reporter, 0, 100 * share)
        )
        reporter = reporter.stage(100 * share, 100)
    inner_seconds = time.monotonic() - started
    share = training.PAPER_FRACTIONS[1] / sum(training.PAPER_FRACTIONS[:2])
    train_rows, validation = _validation_split(training_folds, labels, share, options.seed, fold)
    balanced, class_weight = training.balanced_training_rows(train_rows, labels, options, reporter)
    normalisation = learning_data.training_normalisation(store, store_rows[balanced], reporter)
    batches = training.member_batches(
        store,
        (store_rows, labels),
        balanced,
        validation,
        normalisation,
        run.preset["batch_size"],
        options.seed + fold,
    )
    fitted, predicted = training.fit_members(
        run.members,
        run.inputs,
        run.preset,
        batches,
        class_weight,
        options.seed + 1000 * fold,
        reporter,
        predict_on=(
            store,
            normalisation,
            {"test": store_rows[test], "validation": store_rows[validation]},
        ),
    )
    # baseline fitted on this fold's training cells; both calibrated on its validation cells
    judges = training.fit_baseline_and_calibration(
        store,
        store_rows,
        labels,
        {"train": train_rows, "validation": validation, "test": test},
        normalisation,
        predicted,
        districts=folds.districts,
        nominal=options.nominal,
        members=run.members,
        stacking_mode="validation" if options.stacking == "nested" else options.stacking,
        fitted_stacking=None if inner is None else inner["stacking"],
    )
    fit_set = (
        (inner["candidates"], labels[training_folds])
        if inner is not None
        else (judges["candidates_validation"], labels[validation])
    )
    without = _stacking_without_images(run.members, judges["stacking"], fit_set)
    if without is not None:
        without["calibrated_test"] = _calibrated_like_the_map(without, judges, labels[validation])
    _fill_out_of_fold(out, test, run.members, predicted["test"], judges, without)
    record = _fold_record(
        fold, folds, labels, (test, train_rows, balanced, validation), fitted, judges
    )
    record["stacking"] = judges["stacking"]
    record["stacking_without_images"] = without and without["stacking"]
    record["seconds"] = {
        "inner": round(inner_seconds, 1),
        "fold": round(time.monotonic() - started, 1),
    }
    scored = (run.members, labels[test], predicted["test"])  # the fold's cells, as judged
    fold_metrics = training.holdout_metrics(
        *scored,
        THRESHOLD,
        options.seed + fold,
        calibrated=judges["calibrated_test"],
        baseline=(judges["baseline_test"], judges["baseline"]["threshold"]),
        decision_threshold=judges["decision_threshold"],
        raw=judges["raw_test"],
    )
    roc = training.holdout_curves(*scored, judges["calibrated_test"], judges["baseline_test"])
    return record, fold_metrics, roc


class _InnerReporter(StageReporter):
    """The inner folds' messages and progress, without their per-epoch metrics: the fold's run
    history holds the metrics of the members that predict the fold."""

    def metric(self, name, value, step=None):
        pass

    def stage(self, start, end):
        return _InnerReporter(self, start, end)


def _inner_stacking(run, folds, fold, rows, reporter):
    """STACKING=nested: the stacking fitted on inner out-of-fold predictions of ``rows`` (the
    fold's training cells).

    The training districts are split into ``INNER_FOLDS`` folds of whole districts
    (:func:`assign_folds`); for each, the members (as ``train`` trains them) and the
    baseline learn from the others and predict it. Returns {"stacking", "candidates"
    ({name: probability of each of ``rows``})}, or None when the training cells lie in
    one district (then the stacking is fitted on the validation cells, with a warning).
    """
    import numpy as np

    from ..chips.chip_features import chip_features
    from ..model import baseline, learning_data, stacking, training

    options, store, store_rows, labels = run.options, run.store, run.store_rows, run.labels
    districts = folds.districts[rows]
    count = min(INNER_FOLDS, len(np.unique(districts)))
    if count < 2:
        reporter.warning(
            f"fold {fold}: its training cells lie in one district, so there are no inner folds "
            "of districts; its stacking is fitted on its validation cells (STACKING=validation)."
        )
        return None
    assignment = assign_folds(districts, count, options.seed + fold)
    inner_folds = np.array([assignment[name] for name in districts])
    names = list(run.members) + [stacking.BASELINE]
    candidates = {name: np.full(len(rows), np.nan) for name in names}
    share = training.PAPER_FRACTIONS[1] / sum(training.PAPER_FRACTIONS[:2])
    for inner in range(1, count + 1):
        reporter.check_canceled()
        stage = reporter.stage(100 * (inner - 1) / count, 100 * inner / count)
        held = inner_folds == inner
        train_rows, validation = _validation_split(
            rows[~held], labels, share, options.seed + 100 * fold, inner
        )
        balanced, class_weight = training.balanced_training_rows(train_rows, labels, options, stage)
        normalisation = learning_data.training_normalisation(store, store_rows[balanced], stage)
        batches = training.member_batches(
            store,
            (store_rows, labels),
            balanced,
            validation,
            normalisation,
            run.preset["batch_size"],
            options.seed + 100 * fold + inner,
        )
        _, predicted = training.fit_members(
            run.members,
            run.inputs,
            run.preset,
            batches,
            class_weight,
            options.seed + 1000 * fold + 100 * inner,
            stage,
            predict_on=(store, normalisation, {"held": store_rows[rows[held]]}),
        )
        simple = baseline.fit(
            chip_features(store, store_rows[train_rows], normalisation),
            labels[train_rows],
            normalisation,
        )
        found = stacking.candidates_of(
            run.members,
            predicted["held"],
            baseline.probabilities(
                simple, chip_features(store, store_rows[rows[held]], normalisation)
            ),
        )
        for name in names:
            candidates[name][held] = found[name]
    fitted = stacking.fit(
        candidates,
        labels[rows],
        f"inner out-of-fold cells ({count} folds of the training districts)",
        names=names,
    )
    reporter.info(f"fold {fold}: {stacking.describe(fitted)}")
    return {"stacking": fitted, "candidates": candidates}


def _stacking_without_images(members, fitted, fit_set):
    """The fold's stacking refitted on the same cells without the image members (every member
    but the statistics members), to measure what they add; None without a stacking or without
    image members. Returns {"stacking", "names"}."""
    from ..model import stacking, statistics_member

    images = [member for member in members if not statistics_member.is_statistics_member(member)]
    if not stacking.is_stacked(fitted) or not images:
        return None
    candidates, labels = fit_set
    names = [name for name in fitted["candidates"] if name not in images]
    refitted = stacking.fit(
        {name: candidates[name] for name in names}, labels, fitted["fitted_on"], names=names
    )
    return {"stacking": refitted, "names": names}


def _fold_record(fold, folds, labels, rows, fitted, judges):
    """A fold's districts, cell counts, members' epochs and judges. ``rows``: (test, training,
    balanced training, validation) cells."""
    test, train_rows, balanced, validation = rows
    return {
        "fold": fold,
        "districts": folds.districts_of[fold],
        "test_cells": int(len(test)),
        "test_poor": int(labels[test].sum()),
        "train_cells": int(len(train_rows)),
        "train_poor": int(labels[train_rows].sum()),
        "train_after_balancing": int(len(balanced)),
        "validation_cells": int(len(validation)),
        "members": {
            member: {key: values[key] for key in ("epochs_trained", "best_epoch", "best_val_loss")}
            for member, values in fitted.items()
        },
        "decision_threshold": judges["decision_threshold"],
        "calibration": judges["calibration"],
        "interval": judges["interval"],
        "baseline": {
            key: judges["baseline"][key]
            for key in ("coefficients", "intercept", "threshold", "calibration")
        },
    }


def _calibrated_like_the_map(without, judges, validation_labels):
    """The test cells' probability of the stacking without the image members, calibrated as the
    map's prob_mean is in the fold (Platt scaling on the validation cells, or none where the
    stacking was fitted on them), so that the two are compared on an equal footing."""
    from ..model import calibration, stacking

    def combined(part):
        found = judges[f"candidates_{part}"]
        return stacking.combine(without["stacking"], {n: found[n] for n in without["names"]})

    if judges["calibration"]["method"] != "platt":
        return combined("test")
    platt = calibration.fit_platt(combined("validation"), validation_labels)
    return calibration.calibrate(combined("test"), platt)


def _fill_out_of_fold(out, test, members, probabilities, judges, without=None):
    """The held-out cells' member probabilities, prob_raw and calibrated probability, interval,
    baseline and (``without``) the stacking without the image members."""
    import numpy as np

    from ..model import calibration, intervals

    for member, values in zip(members, probabilities, strict=True):
        out.probabilities[member][test] = values
    out.raw[test] = judges["raw_test"]
    out.calibrated[test] = judges["calibrated_test"]
    raw, spread = judges["raw_test"], np.std(probabilities, axis=0)
    out.low[test], out.high[test] = intervals.cell_interval(
        raw, judges["calibration"], judges["interval"], spread
    )
    out.spread_low[test], out.spread_high[test] = calibration.interval(
        raw, spread, judges["calibration"]
    )
    out.simple[test] = judges["baseline_test"]
    out.simple_threshold[test] = judges["baseline"]["threshold"]
    out.decision[test] = judges["decision_threshold"]
    if without is not None:
        out.without_images[test] = without["calibrated_test"]


def _pooled(run, out):
    """Every cell's out-of-fold ensemble outputs, and the metrics of all cells pooled."""
    from ..model import training

    member_probabilities = [out.probabilities[member] for member in run.members]
    outputs = training.ensemble_outputs(
        member_probabilities, THRESHOLD, out.calibrated, out.decision
    )
    outputs["prob_raw"], outputs["prob_mean"] = out.raw, out.calibrated
    outputs["prob_baseline"] = out.simple
    outputs["prob_low"], outputs["prob_high"] = out.low, out.high
    pooled = _plain(
        training.holdout_metrics(
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


def _document(run, folds, fold_results, out, pooled_results, environment, flagged):
    """The metrics document (METRICS): settings, data, each fold, summary, pooled, verdict."""
    from ..model import intervals

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
        "folds": [dict(record, metrics=_plain(result)) for record, result in fold_results.values()],
        "summary": _summary(
            {fold: result for fold, (_, result) in fold_results.items()}, run.members
        ),
        "pooled": pooled,
        "verdict": _verdict(labels, folds.districts, outputs, pooled, run.options.seed),
        "stacking": _stacking_summary(run, folds, fold_results, out),
        "interval_coverage": intervals.coverage(
            labels,
            out.calibrated,
            out.low,
            out.high,
            folds.districts,
            run.options.nominal,
            spread=(out.spread_low, out.spread_high),
        ),
        "roc": _roc(run, folds, out, outputs),
    }


def _stacking_summary(run, folds, fold_results, out):
    """How prob_raw was made in the folds: the mode, each fold's weights and contributions, the
    time the inner folds cost, and what the image members add out of fold (``images``)."""
    import numpy as np

    from ..decision.verdict import bootstrap_auc
    from ..model import stacking, statistics_member
    from . import metrics

    records = [record for record, _ in fold_results.values()]
    inner = sum(record["seconds"]["inner"] for record in records)
    total = sum(record["seconds"]["fold"] for record in records)
    summary = {
        "mode": run.options.stacking,
        "inner_folds": INNER_FOLDS if run.options.stacking == "nested" else None,
        "folds": {str(record["fold"]): record["stacking"] for record in records},
        "seconds": {"inner_folds": round(inner, 1), "folds": round(total, 1)},
        "images": None,
    }
    images = [m for m in run.members if not statistics_member.is_statistics_member(m)]
    shares = [stacking.imagery_share(record["stacking"]) for record in records]
    if not images or any(share is None for share in shares) or np.isnan(out.without_images).any():
        return summary
    labels = run.labels
    interval = bootstrap_auc(
        labels, out.calibrated, out.without_images, groups=folds.districts, seed=run.options.seed
    )
    with_images = metrics.binary_metrics(labels, out.calibrated >= 0.5, out.calibrated)["auc"]
    without = metrics.binary_metrics(labels, out.without_images >= 0.5, out.without_images)["auc"]
    found = {
        "members": images,
        "share_median": float(np.median(shares)),
        "share_range": [float(min(shares)), float(max(shares))],
        "auc_with": with_images,
        "auc_without": without,
        "difference_interval": interval["difference"],
    }
    found["sentence"] = images_sentence(found)
    summary["images"] = found
    return summary


def images_sentence(found):
    """One sentence: what the image members add to the stacking, out of fold."""
    low, high = found["difference_interval"] or (None, None)
    interval = (
        f", 95 % interval {low:+.3f} to {high:+.3f} with districts resampled"
        if low is not None
        else ""
    )
    return (
        f"The image members ({', '.join(found['members'])}) carry "
        f"{found['share_median']:.0%} of the stacking's signal (median over the folds, "
        f"{found['share_range'][0]:.0%}–{found['share_range'][1]:.0%}); out of fold the "
        f"map's AUC is {metric_text(found['auc_with'])} with them and "
        f"{metric_text(found['auc_without'])} with the stacking refitted without them (difference "
        f"{found['auc_with'] - found['auc_without']:+.3f}{interval})."
    )


def _roc(run, folds, out, outputs):
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


def _verdict(labels, districts, outputs, pooled, seed):
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


def _validation_split(rows, labels, share, seed, fold):
    """A stratified validation share of the training folds (as ``train`` does), the rest for training."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    if min(np.bincount(labels[rows], minlength=2)) < 2:
        raise PovmapInputError(
            "FOLDS",
            f"the training folds of fold {fold} hold (almost) one class only; use fewer folds or more labelled cells.",
        )
    train_rows, validation = train_test_split(
        rows, test_size=share, random_state=seed + fold, stratify=labels[rows]
    )
    return np.sort(train_rows), np.sort(validation)


def _plain(value):
    """JSON-ready copy: numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value.item() if hasattr(value, "item") else value


def _summary(fold_metrics, members):
    """model -> metric -> {median, min, max, folds (defined values)} across folds."""
    import numpy as np

    summary = {}
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


def _settings(options, preset, members, environment):
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


def tidy_rows(document):
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


def _csv(value):
    return "" if value is None else repr(float(value))


def _write_outputs(
    options, document, cells, cell_folds, probabilities, outputs, cell_outcomes, members, id_field
):
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

    def spread(values, dtype):
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
    grid["outcome"] = np.where(found, np.asarray(cell_outcomes, dtype=object)[positions], None)
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


def _nullable(values, dtype):
    import pandas

    return pandas.array([None if value != value else int(value) for value in values], dtype=dtype)
