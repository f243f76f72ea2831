"""Fitting the ensemble's members with Keras, shared by ``train`` and each cross-validation fold.

TensorFlow's set-up (mixed precision on a GPU, deterministic ops on the CPU), the members'
inputs and batches, each member trained with early stopping on validation loss (best
weights kept) and its predictions of some cells; Keras's state is cleared after each
member, so memory stays flat.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from . import learning_data, models, statistics_member
from .environment import MIXED_PRECISION_POLICY

if TYPE_CHECKING:
    from ..chips.chip_store import ChipStore
    from ..progress import Reporter


# what fit_members records of each member's training
MEMBER_FIT_KEYS = ("epochs_trained", "best_epoch", "best_val_loss", "parameters")
VALIDATION_BATCH_SIZE = 64  # validation cells per batch (not shuffled, so any size gives the same)


def configure_tensorflow(seed: int, reporter: Reporter) -> dict[str, Any]:
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


def model_inputs(store: ChipStore) -> list[dict[str, Any]]:
    """The members' inputs: each chip input's name, bands and shape (chip size x chip size x bands)."""
    return [
        {
            "name": spec["name"],
            "bands": list(spec["bands"]),
            "shape": [store.manifest["chip_size"]] * 2 + [len(spec["bands"])],
        }
        for spec in store.manifest["inputs"]
    ]


def member_batches(
    store: ChipStore,
    cells: tuple[np.ndarray, np.ndarray],
    train_rows: np.ndarray,
    validation_rows: np.ndarray,
    normalisation: dict[str, Any],
    batch_size: int,
    seed: int,
) -> tuple[Any, Any]:
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
    members: Sequence[str],
    inputs: list[dict[str, Any]],
    preset: dict[str, Any],
    batches: tuple[Any, Any],
    class_weight: Mapping[int, float] | None,
    seed: int,
    reporter: Reporter,
    predict_on: tuple[ChipStore, dict[str, Any], Mapping[str, np.ndarray]],
    progress: tuple[float, float] = (0, 100),
    backbone_files: Mapping[str, str] | None = None,
    weights_folder: str | None = None,
    log_best_epoch: bool = False,
) -> tuple[dict[str, Any], dict[str, list[np.ndarray]]]:
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
    fitted: dict[str, Any] = {}
    probabilities: dict[str, list[np.ndarray]] = {part: [] for part in parts}
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


def _fit_record(model: Any, losses: Sequence[float]) -> dict[str, Any]:
    """MEMBER_FIT_KEYS of a member fitted with these validation losses per epoch."""
    return {
        "epochs_trained": len(losses),
        "best_epoch": int(np.argmin(losses)) + 1,
        "best_val_loss": float(np.min(losses)),
        "parameters": int(model.count_params()),
    }


def member_weights_file(architecture: str) -> str:
    """The file name of a member's weights in the model package."""
    if statistics_member.is_statistics_member(architecture):
        return statistics_member.weights_file(architecture)
    return f"{architecture}.weights.h5"


def _fit_member(
    architecture: str,
    index: int,
    count: int,
    inputs: list[dict[str, Any]],
    preset: dict[str, Any],
    train_data: Any,
    validation_data: Any,
    class_weight: Mapping[int, float] | None,
    seed: int,
    reporter: Reporter,
    backbone_weights: str | None = None,
) -> tuple[Any, list[float]]:
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


def _clear_session() -> None:
    """Drop Keras's global state between folds, so memory stays flat over many trainings."""
    import keras

    keras.backend.clear_session()


def _predict_member(
    model: Any, store: ChipStore, rows: np.ndarray, normalisation: dict[str, Any]
) -> np.ndarray:
    names = [tensor.name for tensor in model.inputs]
    return learning_data.predict_rows([model], store, rows, normalisation, names)[0]
