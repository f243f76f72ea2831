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
"""

import dataclasses
import json
import os
import platform
import shutil
import time

import numpy as np

from ..atomic import out_of_room, partial_path, publish_folder
from ..chips import chip_features
from ..chips.chip_store import ChipStore
from ..errors import PovmapInputError
from ..labels import label_sentence, poor_below_from_metadata
from ..names import BASELINE, CELL_ID, ENSEMBLE, RANDOM, RANDOM_DRAWS
from ..progress import Reporter
from ..validation import metrics
from . import learning_data, model_package, models, pretrained, stacking, statistics_member
from .environment import MIXED_PRECISION_POLICY
from .training_settings import DEFAULT_NOMINAL, TrainingSettings, check_balance, check_nominal

PAPER_FRACTIONS = (15596, 1732, 1925)  # train, validation, test cells in the paper


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


def train(options, reporter=None):
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
    partial = _partial_folder(options.output_path)
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
        manifest = _manifest(
            options,
            store,
            (cells, split, train_rows),
            (inputs, normalisation),
            _member_records(members, fitted, preset),
            preset,
            judged,
            environment,
            time.monotonic() - started,
        )
        manifest["training_cells"] = _write_training_cells(partial, store, options, cells, split)
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


def _summary(options, members, cells, probabilities, judged, started):
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


def _check_options(options):
    model_package.check_package_path(options.output_path)
    check_nominal(options)
    check_stacking(options.stacking, TRAIN_STACKING)
    if options.target_recall is not None and not 0 < options.target_recall <= 1:
        raise PovmapInputError(
            "TARGET_RECALL",
            "must be between 0 and 1 (e.g. 0.8), or empty for a threshold at the training cells' "
            "share of poor cells.",
        )


def _cells_and_split(store, options, reporter):
    """The usable labelled cells and their train / validation / test split, reported."""
    cells, flagged = usable_cells(store, options, reporter)
    split = _split(cells, options)
    for part, rows in split.items():
        reporter.info(
            f"{part}: {len(rows)} cells, {int(cells['label'].to_numpy()[rows].sum())} poor"
        )
    if flagged:
        reporter.info(f"{flagged} cells flagged for nodata in the chip store are left out.")
    return cells, split


def _member_records(members, fitted, preset):
    """The manifest's ``members``: each member's architecture, weights file and training."""
    return [
        {
            "name": architecture,
            "architecture": architecture,
            "architecture_version": models.ARCHITECTURE_VERSIONS[architecture],
            "weights": fitted[architecture]["weights"],
            "dense_units": preset["dense_units"],
            "dropout": preset["dropout"],
        }
        | {key: fitted[architecture][key] for key in MEMBER_FIT_KEYS}
        for architecture in members
    ]


def _judge(options, members, store, cells, split, normalisation, probabilities, reporter):
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


def preset_and_members(options):
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


def check_stacking(value, allowed):
    """Refuse a STACKING other than ``allowed``."""
    if value not in allowed:
        raise PovmapInputError(
            "STACKING", f"unknown stacking '{value}' (use {' or '.join(allowed)})."
        )


# the parts whose probabilities train keeps of each member (calibration, then holdout metrics)
PARTS = ("validation", "test")
# what fit_members records of each member's training
MEMBER_FIT_KEYS = ("epochs_trained", "best_epoch", "best_val_loss", "parameters")
VALIDATION_BATCH_SIZE = 64  # validation cells per batch (not shuffled, so any size gives the same)


def model_inputs(store):
    """The members' inputs: each chip input's name, bands and shape (chip size x chip size x bands)."""
    return [
        {
            "name": spec["name"],
            "bands": list(spec["bands"]),
            "shape": [store.manifest["chip_size"]] * 2 + [len(spec["bands"])],
        }
        for spec in store.manifest["inputs"]
    ]


def member_batches(store, cells, train_rows, validation_rows, normalisation, batch_size, seed):
    """Keras batches of the training cells (shuffled and augmented by ``seed``) and of the
    validation cells. ``cells``: (store row, label) arrays; ``*_rows`` index them."""
    from .keras_pieces import ChipBatches

    store_rows, labels = cells
    train_data = ChipBatches(
        store,
        store_rows[train_rows],
        labels[train_rows],
        normalisation,
        int(batch_size),
        training=True,
        seed=seed,
    )
    validation_data = ChipBatches(
        store,
        store_rows[validation_rows],
        labels[validation_rows],
        normalisation,
        VALIDATION_BATCH_SIZE,
    )
    return train_data, validation_data


def fit_members(
    members,
    inputs,
    preset,
    batches,
    class_weight,
    seed,
    reporter,
    predict_on,
    progress=(0, 100),
    backbone_files=None,
    weights_folder=None,
    log_best_epoch=False,
):
    """Fit each member in turn and predict some cells with it; shared by ``train`` and each
    cross-validation fold.

    ``batches``: (training, validation) from :func:`member_batches`; ``predict_on``:
    (store, normalisation, {part: store rows}); ``progress``: the span of ``reporter``'s
    percent the members share. With ``weights_folder`` each member's weights are saved
    there. Keras's state is cleared after each member, so memory stays flat.
    Returns ({member: {MEMBER_FIT_KEYS..., "weights"}}, {part: [probabilities per member]}).
    """
    store, normalisation, parts = predict_on
    start, end = progress
    fitted, probabilities = {}, {part: [] for part in parts}
    for index, architecture in enumerate(members):
        reporter.check_canceled()
        stage = reporter.stage(
            start + (end - start) * index / len(members),
            start + (end - start) * (index + 1) / len(members),
        )
        model, losses = _fit_member(
            architecture,
            index,
            len(members),
            inputs,
            preset,
            *batches,
            class_weight,
            seed,
            stage,
            (backbone_files or {}).get(architecture),
        )
        record = {}
        if weights_folder is not None:
            record["weights"] = member_weights_file(architecture)
            model.save_weights(os.path.join(weights_folder, record["weights"]))
        for part, rows in parts.items():
            probabilities[part].append(_predict_member(model, store, rows, normalisation))
        record.update(_fit_record(model, losses))
        if log_best_epoch:
            reporter.info(
                f"{architecture}: best validation loss {np.min(losses):.4f} at epoch "
                f"{np.argmin(losses) + 1} of {len(losses)}"
            )
        fitted[architecture] = record
        _clear_session()
    return fitted, probabilities


def _fit_record(model, losses):
    """MEMBER_FIT_KEYS of a member fitted with these validation losses per epoch."""
    return {
        "epochs_trained": len(losses),
        "best_epoch": int(np.argmin(losses)) + 1,
        "best_val_loss": float(np.min(losses)),
        "parameters": int(model.count_params()),
    }


def member_weights_file(architecture):
    """The file name of a member's weights in the model package."""
    if statistics_member.is_statistics_member(architecture):
        return statistics_member.weights_file(architecture)
    return f"{architecture}.weights.h5"


def _fit_member(
    architecture,
    index,
    count,
    inputs,
    preset,
    train_data,
    validation_data,
    class_weight,
    seed,
    reporter,
    backbone_weights=None,
):
    """Build and fit member ``index`` of ``count`` (early stopping on validation loss, best weights kept).

    Returns the model and its validation losses per epoch. ``reporter``'s 0–100 %
    spans this member's epochs; Cancel is checked between batches.
    """
    import keras

    from .keras_pieces import ProgressCallback

    if statistics_member.is_statistics_member(architecture):
        return statistics_member.fit(
            inputs, train_data, validation_data, seed + index, reporter, class_weight
        )
    keras.utils.set_random_seed(seed + index)
    model = models.build_member(architecture, inputs, backbone_weights=backbone_weights)
    model.compile(
        optimizer=keras.optimizers.Adam(preset["learning_rate"]),
        loss="binary_crossentropy",
        metrics=[keras.metrics.AUC(name="auc")],
    )
    history = model.fit(
        train_data,
        validation_data=validation_data,
        epochs=int(preset["epochs"]),
        verbose=0,
        class_weight=class_weight,
        callbacks=[
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=int(preset["patience"]), restore_best_weights=True
            ),
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss", factor=0.5, patience=max(2, int(preset["patience"]) // 3)
            ),
            ProgressCallback(reporter, architecture, index, count, int(preset["epochs"])),
        ],
    )
    return model, history.history["val_loss"]


def _clear_session():
    """Drop Keras's global state between folds, so memory stays flat over many trainings."""
    import keras

    keras.backend.clear_session()


def grid_id_field(store, options):
    """The grid's cell id field: the option, else the one the chip store was sampled by."""
    return options.id_field or store.manifest["settings"].get("id_field") or CELL_ID


def usable_cells(store, options: TrainingSettings, reporter=None):
    cells = learning_data.read_labelled_cells(
        options.grid_path,
        options.grid_layer,
        reporter=reporter,
        id_field=grid_id_field(store, options),
    )
    if cells.empty:
        raise PovmapInputError("GRID", "the grid has no labelled cells.")
    cells["store_row"] = learning_data.store_rows_for(store, cells["cell_id"].to_numpy())
    max_nodata = float(store.manifest.get("max_nodata", 0.1))
    flagged = (np.asarray(store.nodata_fraction)[cells["store_row"].to_numpy()] > max_nodata).any(
        axis=1
    )
    cells = cells[~flagged].reset_index(drop=True)
    if cells["label"].nunique() < 2:
        raise PovmapInputError(
            "GRID",
            "the labelled cells hold one class only; training needs poor and not-poor cells.",
        )
    return cells, int(flagged.sum())


def _split(cells, options):
    everything = np.arange(len(cells))
    labels = cells["label"].to_numpy()
    if options.split == "districts":
        wanted = [name.strip() for name in (options.test_districts or []) if name and name.strip()]
        if not wanted:
            raise PovmapInputError(
                "TEST_DISTRICTS", "name the districts to hold out for testing (comma-separated)."
            )
        known = set(cells["district"].dropna().astype(str))
        missing = [name for name in wanted if name not in known]
        if missing:
            raise PovmapInputError(
                "TEST_DISTRICTS",
                f"no labelled cells in {', '.join(missing)}; districts of the grid: {', '.join(sorted(known))}.",
            )
        is_test = cells["district"].astype(str).isin(wanted).to_numpy()
        test, rest = everything[is_test], everything[~is_test]
        if not len(rest):
            raise PovmapInputError(
                "TEST_DISTRICTS",
                f"every labelled district is held out ({', '.join(sorted(known))}); leave at "
                "least one district (better several) for training and validation.",
            )
        share = options.validation_fraction / (1 - options.test_fraction)
        train_rows, validation = _split_part(rest, share, labels, options.seed)
    elif options.split == "random":
        rest, test = _split_part(everything, options.test_fraction, labels, options.seed)
        share = options.validation_fraction / (1 - options.test_fraction)
        train_rows, validation = _split_part(rest, share, labels, options.seed)
    else:
        raise PovmapInputError("SPLIT", f"unknown split '{options.split}' (random or districts).")
    for part, rows in (("training", train_rows), ("validation", validation), ("test", test)):
        if len(np.unique(labels[rows])) < 2:
            raise PovmapInputError(
                "SPLIT",
                f"the {part} cells hold one class only ({len(rows)} cells); use more cells or other test districts.",
            )
    return {"train": np.sort(train_rows), "validation": np.sort(validation), "test": np.sort(test)}


def _split_part(rows, share, labels, seed):
    """``rows`` split in two, stratified by label; too few cells to do so is a GRID message."""
    from sklearn.model_selection import train_test_split

    try:
        return train_test_split(rows, test_size=share, random_state=seed, stratify=labels[rows])
    except ValueError:
        poor = int(labels[rows].sum())
        raise PovmapInputError(
            "GRID",
            f"{len(rows)} labelled cells ({poor} poor, {len(rows) - poor} not poor) are too few "
            "to split into training, validation and test cells that each hold both classes; "
            "use a grid with more labelled cells (lower MIN_OBS in Build training grid, or a "
            "larger survey).",
        ) from None


def balanced_training_rows(train_rows, labels, options: TrainingSettings, reporter):
    if options.balance == "class_weights":
        counts = np.bincount(labels[train_rows], minlength=2)
        weights = {label: float(len(train_rows) / (2 * counts[label])) for label in (0, 1)}
        reporter.info(f"class weights: not poor {weights[0]:.2f}, poor {weights[1]:.2f}")
        return train_rows, weights
    check_balance(options)
    rng = np.random.default_rng(options.seed)
    by_class = [train_rows[labels[train_rows] == label] for label in (0, 1)]
    keep = min(len(rows) for rows in by_class)
    kept = np.sort(np.concatenate([rng.choice(rows, keep, replace=False) for rows in by_class]))
    reporter.info(
        f"undersampling: {keep} poor and {keep} not-poor training cells (of {len(train_rows)})"
    )
    return kept, None


def configure_tensorflow(seed, reporter):
    import keras
    import tensorflow

    gpus = tensorflow.config.list_physical_devices("GPU")
    if gpus:
        keras.mixed_precision.set_global_policy(MIXED_PRECISION_POLICY)
        reporter.info(f"training on {len(gpus)} GPU(s) with mixed precision")
    else:
        tensorflow.config.experimental.enable_op_determinism()
        reporter.info(f"training on the CPU ({os.cpu_count()} cores)")
    keras.utils.set_random_seed(seed)
    return {
        "tensorflow": tensorflow.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "device": "gpu" if gpus else "cpu",
    }


def _predict_member(model, store, rows, normalisation):
    names = [tensor.name for tensor in model.inputs]
    return learning_data.predict_rows([model], store, rows, normalisation, names)[0]


def ensemble_outputs(member_probabilities, threshold, calibrated=None, decision=None):
    """prob_mean (the members' mean), votes, pred, disagreement (std of members) and members
    (their probabilities, for ``stacking.combine``).

    ``pred``: with a ``decision`` threshold, ``calibrated`` (the calibrated mean;
    the raw mean when None) >= ``decision``; without one (packages from before the
    decision threshold), the members' majority vote at ``threshold`` (the paper).
    ``votes`` (members at ``threshold``) are kept as information either way.
    """
    stacked = np.vstack(member_probabilities)
    votes = (stacked >= threshold).sum(axis=0)
    mean = stacked.mean(axis=0)
    if decision is None:
        pred = (votes * 2 > len(stacked)).astype("int32")
    else:
        scale = mean if calibrated is None else np.asarray(calibrated, dtype="float64")
        pred = (scale >= decision).astype("int32")
    return {
        "prob_mean": mean,
        "votes": votes,
        "pred": pred,
        "disagreement": stacked.std(axis=0),
        "members": list(member_probabilities),
    }


def fit_baseline_and_calibration(
    store,
    store_rows,
    labels,
    split,
    normalisation,
    member_probabilities,
    target_recall=None,
    districts=None,
    nominal=DEFAULT_NOMINAL,
    members=None,
    stacking_mode="off",
    fitted_stacking=None,
):
    """The transparent baseline (fitted on the training cells), the stacking and the ensemble's
    calibration.

    The baseline is calibrated on the validation cells (``calibration.fit_platt``),
    never on the test cells. ``split``: {"train", "validation", "test"} rows of
    ``labels``; ``member_probabilities``: {"validation": [...], "test": [...]} per
    member (``members``: their names). ``prob_raw`` is :func:`stacking.combine` of the
    members and the baseline's raw probability: with ``stacking_mode`` "validation" the
    stacking is fitted on the validation cells; with ``fitted_stacking`` (the nested
    cross-validation's, fitted on inner out-of-fold predictions) that one is used;
    otherwise ("off") it is the members' mean. The ensemble's calibration is Platt
    scaling of the validation cells' ``prob_raw``. Also returns ``raw_test`` and the
    calibrated ensemble and baseline probabilities of the test cells and the ensemble's
    decision threshold and its rule (``calibration.decision_threshold``; the prevalence
    is that of the training cells before undersampling). Shared by ``train`` and the
    cross-validation. ``interval``: the prob_low/prob_high rule fitted on the
    validation cells' ``prob_raw`` and their ``districts`` (each labelled cell's, or
    None) at the ``nominal`` coverage (``intervals.fit_interval``).
    """
    from . import baseline, calibration, intervals

    members = list(members or range(len(member_probabilities["validation"])))
    validation_labels = labels[split["validation"]]
    fitted = baseline.fit_calibrated(
        store,
        (store_rows[split["train"]], labels[split["train"]]),
        (store_rows[split["validation"]], validation_labels),
        normalisation,
        target_recall,
    )
    candidates = {
        part: stacking.candidates_of(
            members,
            member_probabilities[part],
            baseline.probabilities(
                fitted, chip_features.chip_features(store, store_rows[split[part]], normalisation)
            ),
        )
        for part in PARTS
    }
    if fitted_stacking is not None:
        combiner = fitted_stacking
    elif stacking_mode == "validation":
        combiner = stacking.fit(candidates["validation"], validation_labels, "validation cells")
    else:
        combiner = {"method": "none", "note": "STACKING=off"}
    raw = {part: stacking.combine(combiner, candidates[part]) for part in PARTS}
    ensemble_calibration = dict(
        calibration.fit_platt(raw["validation"], validation_labels), fitted_on="validation cells"
    )
    calibrated_validation = calibration.calibrate(raw["validation"], ensemble_calibration)
    decision, rule = calibration.decision_threshold(
        target_recall,
        validation_labels,
        calibrated_validation,
        float(np.mean(labels[split["train"]])),
        ensemble_calibration,
    )
    validation_districts = None if districts is None else np.asarray(districts)[split["validation"]]
    interval_rule = intervals.fit_interval(
        raw["validation"],
        validation_labels,
        validation_districts,
        ensemble_calibration,
        nominal,
        seed=0,
    )
    return {
        "baseline": fitted,
        "stacking": combiner,
        "calibration": ensemble_calibration,
        "interval": interval_rule,
        "decision_threshold": decision,
        "decision_rule": rule,
        "calibrated_validation": calibrated_validation,
        "raw_test": raw["test"],
        "candidates_validation": candidates["validation"],
        "candidates_test": candidates["test"],
        "calibrated_test": calibration.calibrate(raw["test"], ensemble_calibration),
        "baseline_test": calibration.calibrate(
            candidates["test"][stacking.BASELINE], fitted["calibration"]
        ),
    }


def _report_calibration(judges, holdout, reporter):
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


def district_values(cells):
    """Each labelled cell's district (None where it has none), or None without districts."""
    if "district" not in cells or cells["district"].isna().all():
        return None
    return np.asarray(
        [None if value is None or value != value else str(value) for value in cells["district"]],
        dtype=object,
    )


def _report_interval(judges, labels, test_probabilities, reporter):
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


def _number(value):
    return "–" if value is None else f"{value:.3f}"


def _threshold(options, labels, probabilities, reporter):
    if options.target_recall is None:
        return 0.5, "fixed 0.5"
    threshold = metrics.threshold_for_recall(labels, probabilities, options.target_recall)
    reporter.info(
        f"threshold {threshold:.3f} reaches recall {options.target_recall:.0%} on the validation cells"
    )
    return threshold, f"target recall {options.target_recall} on validation"


def holdout_metrics(
    members,
    labels,
    member_probabilities,
    threshold,
    seed,
    calibrated=None,
    baseline=None,
    decision_threshold=None,
    raw=None,
):
    """Metrics of the members, the ensemble, the baseline (when given) and random on some cells.

    ``calibrated``: the ensemble's calibrated probability (its AUC, Brier score
    and ECE; those of ``raw`` — ``prob_raw``, default the members' mean — are kept as
    ``brier_raw`` / ``ece_raw``). ``baseline``: (calibrated probability, threshold on that scale).
    ``decision_threshold``: the ensemble predicts poor where ``calibrated`` >= it
    (None: the members' majority vote).
    """
    from . import calibration

    result = {}
    for name, probabilities in zip(members, member_probabilities, strict=True):
        result[name] = metrics.binary_metrics(labels, probabilities >= threshold, probabilities)
    ensemble = ensemble_outputs(member_probabilities, threshold, calibrated, decision_threshold)
    if calibrated is None:
        result[ENSEMBLE] = metrics.binary_metrics(labels, ensemble["pred"], ensemble["prob_mean"])
    else:
        result[ENSEMBLE] = metrics.binary_metrics(labels, ensemble["pred"], calibrated)
        raw = calibration.scores(labels, ensemble["prob_mean"] if raw is None else raw)
        result[ENSEMBLE].update(calibration.scores(labels, calibrated))
        result[ENSEMBLE].update({f"{key}_raw": value for key, value in raw.items()})
    if baseline is not None:
        probabilities, cut = baseline
        result[BASELINE] = metrics.binary_metrics(labels, probabilities >= cut, probabilities)
        result[BASELINE].update(calibration.scores(labels, probabilities))
    result[RANDOM] = metrics.random_baseline(labels, RANDOM_DRAWS, seed)
    return result


def holdout_curves(members, labels, member_probabilities, calibrated, baseline):
    """ROC curves (``metrics.roc_points``) of the members, the calibrated ensemble and the
    baseline on some cells, as :func:`holdout_metrics` scores them (None with one class)."""
    curves = {
        name: metrics.roc_points(labels, values)
        for name, values in zip(members, member_probabilities, strict=True)
    }
    curves[ENSEMBLE] = metrics.roc_points(labels, calibrated)
    curves[BASELINE] = metrics.roc_points(labels, baseline)
    return curves


def _manifest(
    options,
    store,
    training_cells,
    learned_from,
    member_records,
    preset,
    judged,
    environment,
    seconds,
):
    """The model package's manifest. ``training_cells``: (cells, split, balanced training rows);
    ``learned_from``: (inputs, normalisation); ``judged``: from :func:`_judge`."""
    from ..geopackage import read_layer_metadata
    from ..version import plugin_version

    inputs, normalisation = learned_from
    grid_metadata = read_layer_metadata(options.grid_path, options.grid_layer)
    cutoff = grid_metadata.get("cutoff")
    poor_below = poor_below_from_metadata(grid_metadata.get("poor_below"))
    manifest = {
        "format": model_package.FORMAT,
        "format_version": model_package.FORMAT_VERSION,
        "preset": options.preset,
        "members": member_records,
        "inputs": inputs,
        "chip_size": int(store.manifest["chip_size"]),
        "resolution": float(store.manifest["settings"]["resolution"]),
        "cell_size": float(store.manifest["settings"]["cell_size"]),
        "crs": store.manifest["settings"]["crs"],
        "normalisation": normalisation,
        "threshold": float(judged["threshold"]),
        "threshold_rule": judged["threshold_rule"],
        "vote": (
            "votes: members with probability >= threshold (information); "
            "pred: calibrated prob_mean >= decision_threshold"
        ),
        "label": {
            "cutoff": None if cutoff is None else float(cutoff),
            "poor_below": poor_below,
            "meaning": label_sentence(cutoff, poor_below),
        },
        "training": _training_record(options, training_cells, preset, seconds),
        "metrics": {"holdout": judged["holdout"]},
        "software": {"povmap_qgis": plugin_version(), **environment},
    }
    manifest["training"]["fingerprint"] = training_fingerprint(
        options, training_cells[0], [member["name"] for member in member_records]
    )
    if options.demonstration_notice:
        manifest["notice"] = options.demonstration_notice
    manifest["calibration"] = judged["calibration"]
    manifest["interval"] = judged["interval"]
    manifest["stacking"] = judged["stacking"]
    manifest["baseline"] = judged["baseline"]
    manifest["decision_threshold"] = float(judged["decision_threshold"])
    manifest["decision_rule"] = judged["decision_rule"]
    return manifest


def _training_record(options, training_cells, preset, seconds):
    """The manifest's ``training``: inputs, split, balance, cells per part and settings."""
    cells, split, train_rows = training_cells
    labels = cells["label"].to_numpy()
    return {
        "chips": os.path.abspath(options.chips_path),
        "grid": os.path.abspath(options.grid_path),
        "split": options.split,
        "test_districts": options.test_districts,
        "balance": options.balance,
        "seed": options.seed,
        "pretrained": options.pretrained or "none",
        "cells": {part: int(len(rows)) for part, rows in split.items()}
        | {"train_after_balancing": int(len(train_rows))},
        "poor": {part: int(labels[rows].sum()) for part, rows in split.items()},
        "districts_seen": _districts_seen(cells, split),
        "learning_rate": preset["learning_rate"],
        "batch_size": preset["batch_size"],
        "max_epochs": preset["epochs"],
        "patience": preset["patience"],
        "seconds": round(seconds, 1),
    }


def training_fingerprint(options, cells, members):
    """12 hex digits naming what a model was trained on: the labelled cells (ids and labels,
    whatever file holds them) and the settings that make it another model (preset, members,
    split, held-out districts). Retraining on the same data with another seed keeps it; a
    different survey, grid or preset changes it. The run history's default model name ends
    with it, so two projects' packages called ``model.povmodel`` are not versions of one model."""
    import hashlib

    import numpy as np

    order = np.argsort(cells["cell_id"].to_numpy())
    record = {
        "cells": cells["cell_id"].to_numpy()[order].tolist(),
        "labels": cells["label"].to_numpy()[order].tolist(),
        "preset": options.preset,
        "members": list(members),
        "split": options.split,
        "test_districts": sorted(options.test_districts or []),
    }
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _write_training_cells(folder, store, options, cells, split):
    """The package's list of the cells the members learned from (training + validation): an
    evaluation on them is not a test on new cells (model_package.read_training_cells)."""
    import numpy as np

    rows = np.concatenate([split["train"], split["validation"]])
    settings = store.manifest["settings"]
    return model_package.write_training_cells(
        folder,
        cells["cell_id"].to_numpy()[rows],
        grid_id_field(store, options),
        settings["crs"],
        float(settings["cell_size"]),
    )


def _districts_seen(cells, split):
    """{district: labelled cells the members learned from (training + validation)}; the test cells are not seen."""
    import numpy as np

    rows = np.concatenate([split["train"], split["validation"]])
    districts = cells["district"].iloc[rows] if "district" in cells else None
    if districts is None or districts.isna().all():
        return {}
    counts = districts.dropna().astype(str).value_counts()
    return {str(name): int(counts[name]) for name in sorted(counts.index)}


def _partial_folder(path):
    folder, name = os.path.split(os.path.abspath(path.rstrip("/")))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise PovmapInputError(
            "OUTPUT",
            f"the folder '{folder}' does not exist or is not writable; choose another output path.",
        )
    partial = partial_path(os.path.join(folder, name))  # owned by this run: see atomic.run_partials
    os.makedirs(partial)
    return partial
