"""Train the poverty ensemble on a chip store (pipeline step 4, runs in the worker).

Cells: the labelled grid's cells that are in the store and not flagged for
nodata. Split: a random holdout stratified by label (train / validation / test
in the paper's 15,596 / 1,732 / 1,925 proportions) or whole districts held out
for testing. Normalisation comes from training cells only; the majority class
is undersampled in training (the paper) or class weights are used. Each member
is trained with early stopping on validation loss, best weights kept; the
ensemble's probability (``prob_raw``) is the stacking of the members and the
transparent baseline fitted on the validation cells (``core.model.stacking``;
STACKING=off: the members' mean), calibrated on the validation cells, and its class ``pred`` = calibrated mean >= the decision threshold
(``calibration.decision_threshold``: the training cells' share of poor cells,
or TARGET_RECALL's rule on the validation cells); the members' votes at
``threshold`` (0.5 on their balanced scale) are kept as information.

The step in modules: ``training_split.py`` (the cells and their split), ``member_fitting.py``
(the members, with Keras), ``ensemble_judges.py`` (baseline, stacking, calibration,
thresholds, holdout metrics), ``training_manifest.py`` (what the package records).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..atomic import out_of_room, publish_folder
from ..chips.chip_store import ChipStore
from ..errors import PovmapInputError
from ..names import BASELINE, ENSEMBLE
from ..progress import Reporter
from ..validation import metrics
from . import learning_data, model_package, models, pretrained, stacking
from .ensemble_judges import PARTS, fit_baseline_and_calibration, holdout_curves, holdout_metrics
from .member_fitting import configure_tensorflow, fit_members, member_batches, model_inputs
from .training_manifest import (
    member_records,
    package_manifest,
    partial_package_folder,
    write_package_training_cells,
)
from .training_settings import TrainingSettings, check_nominal
from .training_split import (
    PAPER_FRACTIONS,
    balanced_training_rows,
    district_values,
    split_cells,
    usable_cells,
)

if TYPE_CHECKING:
    import pandas as pd


@dataclasses.dataclass(kw_only=True)
class TrainOptions(TrainingSettings):
    """What ``train`` takes: the shared training settings, the holdout and the package."""

    output_path: str
    split: str = "random"  # "random" or "districts"
    test_districts: list | None = None
    validation_fraction: float = PAPER_FRACTIONS[1] / sum(PAPER_FRACTIONS)
    test_fraction: float = PAPER_FRACTIONS[2] / sum(PAPER_FRACTIONS)
    pretrained: str | None = (
        None  # None, "imagenet" (Keras cache) or a folder of Keras notop .h5 files
    )
    target_recall: float | None = None  # None: the training cells' share of poor cells
    # "validation": prob_raw is the stacking fitted on the validation cells; "off": the mean
    stacking: str = "validation"
    demonstration_notice: str | None = None  # written into the manifest (the bundled model)


def train(options: TrainOptions, reporter: Reporter | None = None) -> dict[str, Any]:
    """Train the members, fit the judges, write the model package; return a summary."""
    reporter = reporter or Reporter()
    started = time.monotonic()
    preset, members = preset_and_members(options)
    _check_options(options)
    store = ChipStore(options.chips_path)
    cells, split = _cells_and_split(store, options, reporter)
    backbone_files = pretrained.backbone_weights(options.pretrained, members, reporter)
    environment = configure_tensorflow(options.seed, reporter)
    store_rows, labels = cells["store_row"].to_numpy(), cells["label"].to_numpy()
    train_rows, class_weight = balanced_training_rows(split["train"], labels, options, reporter)
    normalisation = learning_data.training_normalisation(store, store_rows[train_rows], reporter)
    reporter.progress(3)
    inputs = model_inputs(store)
    batches = member_batches(
        store,
        (store_rows, labels),
        train_rows,
        split["validation"],
        normalisation,
        preset["batch_size"],
        options.seed,
    )
    partial = partial_package_folder(options.output_path)
    try:
        fitted, probabilities = fit_members(
            members,
            inputs,
            preset,
            batches,
            class_weight,
            options.seed,
            reporter,
            predict_on=(store, normalisation, {part: store_rows[split[part]] for part in PARTS}),
            progress=(3, 95),
            backbone_files=backbone_files,
            weights_folder=partial,
            log_best_epoch=True,
        )
        judged = _judge(
            options,
            members,
            store,
            (store_rows, labels, district_values(cells)),
            split,
            normalisation,
            probabilities,
            reporter,
        )
        manifest = package_manifest(
            options,
            store,
            (cells, split, train_rows),
            (inputs, normalisation),
            member_records(members, fitted, preset),
            preset,
            judged,
            environment,
            time.monotonic() - started,
        )
        manifest["training_cells"] = write_package_training_cells(
            partial, store, options, cells, split
        )
        model_package.write_manifest(partial, manifest)
        publish_folder(partial, options.output_path)
    except BaseException as error:
        diagnosis = out_of_room(error, partial, options.output_path)  # a full disk, said so
        shutil.rmtree(partial, ignore_errors=True)
        if diagnosis is not None:
            raise diagnosis from error
        raise
    reporter.progress(100)
    fingerprint = manifest["training"]["fingerprint"]
    return _summary(options, members, (labels, split, fingerprint), probabilities, judged, started)


def _summary(
    options: TrainOptions,
    members: Sequence[str],
    cells: tuple[np.ndarray, dict[str, np.ndarray], str],
    probabilities: dict[str, list[np.ndarray]],
    judged: dict[str, Any],
    started: float,
) -> dict[str, Any]:
    """What ``train`` returns: the package, its holdout metrics and ROC curves, cell counts,
    the training data fingerprint (the run history names the model after it)."""
    labels, split, fingerprint = cells
    return {
        "output": os.path.abspath(options.output_path),
        "members": members,
        "threshold": judged["threshold"],
        "metrics": judged["holdout"],
        "roc": holdout_curves(
            members,
            labels[split["test"]],
            probabilities["test"],
            judged["calibrated_test"],
            judged["baseline_test"],
        ),
        "cells": {part: int(len(rows)) for part, rows in split.items()},
        "training_fingerprint": fingerprint,
        "seconds": round(time.monotonic() - started, 1),
    }


def _check_options(options: TrainOptions) -> None:
    model_package.check_package_path(options.output_path)
    check_nominal(options)
    check_stacking(options.stacking, TRAIN_STACKING)
    if options.target_recall is not None and not 0 < options.target_recall <= 1:
        raise PovmapInputError(
            "TARGET_RECALL",
            "must be between 0 and 1 (e.g. 0.8), or empty for a threshold at the training cells' "
            "share of poor cells.",
        )


def _cells_and_split(
    store: ChipStore, options: TrainOptions, reporter: Reporter
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The usable labelled cells and their train / validation / test split, reported."""
    cells, flagged = usable_cells(store, options, reporter)
    split = split_cells(cells, options)
    for part, rows in split.items():
        reporter.info(
            f"{part}: {len(rows)} cells, {int(cells['label'].to_numpy()[rows].sum())} poor"
        )
    if flagged:
        reporter.info(f"{flagged} cells flagged for nodata in the chip store are left out.")
    return cells, split


def _judge(
    options: TrainOptions,
    members: Sequence[str],
    store: ChipStore,
    cells: tuple[np.ndarray, np.ndarray, np.ndarray | None],
    split: dict[str, np.ndarray],
    normalisation: dict[str, Any],
    probabilities: dict[str, list[np.ndarray]],
    reporter: Reporter,
) -> dict[str, Any]:
    """The members' vote threshold, the baseline and the calibration (fitted on the validation
    cells) and the holdout metrics (test cells), reported. ``cells``: (store row, label,
    district or None) arrays.

    Returns ``fit_baseline_and_calibration``'s dict with ``threshold``, ``threshold_rule``
    and ``holdout``.
    """
    store_rows, labels, districts = cells
    threshold, rule = _threshold(
        options,
        labels[split["validation"]],
        np.mean(probabilities["validation"], axis=0),
        reporter,
    )
    judges = fit_baseline_and_calibration(
        store,
        store_rows,
        labels,
        split,
        normalisation,
        probabilities,
        options.target_recall,
        districts=districts,
        nominal=options.nominal,
        members=members,
        stacking_mode=options.stacking,
    )
    reporter.info(stacking.describe(judges["stacking"]))
    decision, decision_rule = judges["decision_threshold"], judges["decision_rule"]
    reporter.info(f"pred: {decision_rule} ({decision:.3f})")
    holdout = holdout_metrics(
        members,
        labels[split["test"]],
        probabilities["test"],
        threshold,
        options.seed,
        calibrated=judges["calibrated_test"],
        baseline=(judges["baseline_test"], judges["baseline"]["threshold"]),
        decision_threshold=decision,
        raw=judges["raw_test"],
    )
    _report_calibration(judges, holdout, reporter)
    _report_interval(judges, labels[split["test"]], probabilities["test"], reporter)
    for name, result in holdout.items():
        reporter.info(
            f"holdout {name:17s} "
            + "  ".join(
                f"{key} {result[key]:.3f}" if result[key] is not None else f"{key} –"
                for key in metrics.METRIC_NAMES
            )
        )
    return dict(judges, threshold=threshold, threshold_rule=rule, holdout=holdout)


def _report_calibration(
    judges: dict[str, Any], holdout: dict[str, Any], reporter: Reporter
) -> None:
    fitted = judges["calibration"]
    if fitted["method"] == "platt":
        reporter.info(
            f"calibration: Platt scaling on {fitted['cells']} validation cells "
            f"(slope {fitted['slope']:.3f}, intercept {fitted['intercept']:.3f})"
        )
    else:
        reporter.warning(f"calibration: none ({fitted['note']}); prob_mean = prob_raw")
    ensemble, simple = holdout[ENSEMBLE], holdout[BASELINE]
    reporter.info(
        f"holdout calibration: ensemble ECE {_number(ensemble['ece_raw'])} raw, "
        f"{_number(ensemble['ece'])} calibrated, Brier {_number(ensemble['brier'])}; "
        f"baseline ECE {_number(simple['ece'])}, Brier {_number(simple['brier'])}"
    )


def _report_interval(
    judges: dict[str, Any],
    labels: np.ndarray,
    test_probabilities: Sequence[np.ndarray],
    reporter: Reporter,
) -> None:
    """The interval rule in the log, with its coverage of the test cells' reliability bins."""
    from . import calibration, intervals

    rule = judges["interval"]
    reporter.info(intervals.describe(rule))
    if rule.get("note"):
        reporter.warning(f"intervals: {rule['note']}")
    low, high = intervals.cell_interval(
        judges["raw_test"],
        judges["calibration"],
        rule,
        np.std(test_probabilities, axis=0),
    )
    found = calibration.interval_coverage(labels, judges["calibrated_test"], low, high)
    found["nominal"] = rule.get("nominal", found["nominal"])
    if found["coverage"] is not None:
        reporter.info(
            f"holdout: prob_low–prob_high hold their reliability bin's share poor for "
            f"{found['coverage']:.1%} of the test cells (nominal {found['nominal']:.0%}, "
            f"mean width {found['mean_width']:.3f})"
        )


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _threshold(
    options: TrainOptions,
    labels: np.ndarray,
    probabilities: Sequence[np.ndarray],
    reporter: Reporter,
) -> tuple[float, str]:
    if options.target_recall is None:
        return 0.5, "fixed 0.5"
    threshold = metrics.threshold_for_recall(labels, probabilities, options.target_recall)
    reporter.info(
        f"threshold {threshold:.3f} reaches recall {options.target_recall:.0%} on the validation cells"
    )
    return threshold, f"target recall {options.target_recall} on validation"


def preset_and_members(options: Any) -> tuple[dict[str, Any], list[str]]:
    """The preset's settings with the overrides of ``options`` (TrainingSettings), and the
    members to train (checked)."""
    if options.preset not in models.PRESETS:
        raise PovmapInputError(
            "PRESET", f"unknown preset '{options.preset}' (use {' or '.join(models.PRESETS)})."
        )
    preset = dict(models.PRESETS[options.preset])
    members = list(options.members or preset["members"])
    unknown = [member for member in members if member not in models.ARCHITECTURES]
    if unknown or not members:
        raise PovmapInputError(
            "MEMBERS",
            f"unknown member(s) {unknown or members}; choose from {', '.join(models.ARCHITECTURES)}.",
        )
    repeated = sorted({member for member in members if members.count(member) > 1})
    if repeated:
        raise PovmapInputError(
            "MEMBERS",
            f"{', '.join(repeated)} listed more than once; each member is one architecture of "
            "the ensemble and is trained once: list each once.",
        )
    for key in ("epochs", "batch_size", "learning_rate", "patience"):
        if getattr(options, key, None):
            preset[key] = getattr(options, key)
    return preset, members


TRAIN_STACKING = ("validation", "off")  # train's STACKING (crossvalidate adds "nested")


def check_stacking(value: str, allowed: Sequence[str]) -> None:
    """Refuse a STACKING other than ``allowed``."""
    if value not in allowed:
        raise PovmapInputError(
            "STACKING", f"unknown stacking '{value}' (use {' or '.join(allowed)})."
        )
