"""One fold of the cross-validation: train on the other folds, predict the held-out one.

Every member is trained on the fold's training cells exactly as ``train`` trains it (a
stratified validation share, undersampling, normalisation from training cells only, early
stopping); the fold's baseline, stacking (``nested_stacking.py`` for STACKING=nested),
calibration, decision threshold and interval rule are fitted without its held-out cells,
whose numbers go into ``OutOfFold``. Each fold is its own nested run in the run history.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..names import ENSEMBLE
from ..names import METRIC_NAMES as METRIC_KEYS
from ..wording import metric_text
from .nested_stacking import (
    INNER_FOLDS,
    InnerFoldsReporter,
    calibrated_like_the_map,
    fit_members_on,
    inner_stacking,
    stacking_without_images,
)

if TYPE_CHECKING:
    import numpy as np

    from ..progress import Reporter
    from .crossvalidation import CrossValidateOptions
    from .district_folds import DistrictFolds


THRESHOLD = 0.5  # members' votes
DECISION_RULE = (
    "calibrated prob_mean >= the fold's training cells' share of poor cells"  # as train decides
)
# a fold's cell counts, recorded with its nested run in the run history
FOLD_CELL_COUNTS = (
    "test_cells",
    "test_poor",
    "train_cells",
    "train_poor",
    "train_after_balancing",
    "validation_cells",
)


@dataclasses.dataclass
class FoldTraining:
    """What every fold trains with: the options, the store, the members and the labelled cells."""

    options: CrossValidateOptions
    store: Any
    preset: dict
    members: list
    inputs: list
    store_rows: Any
    labels: Any


@dataclasses.dataclass
class OutOfFold:
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
    def empty(cls, members: Sequence[str], count: int) -> OutOfFold:
        import numpy as np

        return cls(
            {member: np.full(count, np.nan) for member in members},
            *(np.full(count, np.nan) for _ in range(10)),
        )


def run_fold(
    run: FoldTraining,
    folds: DistrictFolds,
    fold: int,
    out: OutOfFold,
    reporter: Reporter,
    span: tuple[float, float],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One fold as its own nested run in the run history (its parameters, epochs and final
    metrics), ``span`` of ``reporter``'s percent; returns the fold's record and metrics."""
    params = {"fold": fold, "districts": folds.districts_of[fold], "seed": run.options.seed + fold}
    with reporter.nested_run(f"fold {fold}", params) as fold_history:
        record, fold_metrics, roc = _fit_fold(run, folds, fold, out, fold_history.stage(*span))
        fold_history.final_metrics(
            {
                "metrics": json_ready(fold_metrics),
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


def _fit_fold(
    run: FoldTraining, folds: DistrictFolds, fold: int, out: OutOfFold, reporter: Reporter
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Train every member on the other folds as ``train`` does, fit the fold's baseline, stacking
    and calibration, predict the fold's cells into ``out``; returns its record, metrics and ROC.

    STACKING=nested: first the members and the baseline are trained on inner folds of the
    training districts (:func:`inner_stacking`) and the stacking is fitted on their inner
    out-of-fold predictions; the held-out fold is never seen by members, stacking or
    calibration.
    """
    import numpy as np

    from ..model import ensemble_judges

    options, store, store_rows, labels = run.options, run.store, run.store_rows, run.labels
    test = np.flatnonzero(folds.cell_folds == fold)
    training_folds = np.flatnonzero(folds.cell_folds != fold)
    started = time.monotonic()
    inner = None
    if options.stacking == "nested":
        share = INNER_FOLDS / (INNER_FOLDS + 1)
        inner = inner_stacking(
            run, folds, fold, training_folds, InnerFoldsReporter(reporter, 0, 100 * share)
        )
        reporter = reporter.stage(100 * share, 100)
    inner_seconds = time.monotonic() - started
    trained = fit_members_on(
        run,
        training_folds,
        (options.seed, fold, options.seed + fold, options.seed + 1000 * fold),
        reporter,
        {"test": test},
        predict_validation=True,
    )
    train_rows, validation, balanced = (
        trained["train_rows"],
        trained["validation"],
        trained["balanced"],
    )
    normalisation, fitted, predicted = (
        trained["normalisation"],
        trained["fitted"],
        trained["predicted"],
    )
    # baseline fitted on this fold's training cells; both calibrated on its validation cells
    judges = ensemble_judges.fit_baseline_and_calibration(
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
    without = stacking_without_images(run.members, judges["stacking"], fit_set)
    if without is not None:
        without["calibrated_test"] = calibrated_like_the_map(without, judges, labels[validation])
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
    fold_metrics = ensemble_judges.holdout_metrics(
        *scored,
        THRESHOLD,
        options.seed + fold,
        calibrated=judges["calibrated_test"],
        baseline=(judges["baseline_test"], judges["baseline"]["threshold"]),
        decision_threshold=judges["decision_threshold"],
        raw=judges["raw_test"],
    )
    roc = ensemble_judges.holdout_curves(
        *scored, judges["calibrated_test"], judges["baseline_test"]
    )
    return record, fold_metrics, roc


def _fold_record(
    fold: int,
    folds: DistrictFolds,
    labels: np.ndarray,
    rows: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    fitted: dict[str, Any],
    judges: dict[str, Any],
) -> dict[str, Any]:
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


def _fill_out_of_fold(
    out: OutOfFold,
    test: np.ndarray,
    members: Sequence[str],
    probabilities: Sequence[np.ndarray],
    judges: dict[str, Any],
    without: dict[str, Any] | None = None,
) -> None:
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


def json_ready(value: Any) -> Any:
    """JSON-ready copy: numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    return value.item() if hasattr(value, "item") else value
