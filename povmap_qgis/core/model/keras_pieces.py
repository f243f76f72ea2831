"""The Keras subclasses training needs: batches of chips and the progress callback.

Keras is imported at module level here, so this module is imported only inside functions,
once ``member_fitting.configure_tensorflow`` has set TensorFlow's threads and determinism.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from ..errors import PovmapCanceledError
from .learning_data import dihedral, normalise

if TYPE_CHECKING:
    from ..chips.chip_store import ChipStore
    from ..progress import Reporter


class ChipBatches(keras.utils.PyDataset):
    """Store rows as Keras batches; shuffled and augmented (one flip/rotation per cell) when
    ``training``, the same order and augmentation for the same seed and epoch."""

    def __init__(
        self,
        store: ChipStore,
        rows: np.ndarray,
        labels: np.ndarray | None,
        normalisation: dict[str, Any],
        batch_size: int,
        training: bool = False,
        seed: int = 0,
        input_names: Sequence[str] | None = None,
        workers: int = 2,
    ) -> None:
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=8)
        self.store = store
        self.rows = np.asarray(rows, dtype="int64")
        self.labels = None if labels is None else np.asarray(labels, dtype="float32")
        self.normalisation = normalisation
        self.batch_size = batch_size
        self.training = training
        self.seed = seed
        self.names = list(input_names or store.input_names)
        self.epoch = 0
        self.order = np.arange(len(self.rows))
        self.on_epoch_end()

    def __len__(self) -> int:
        return int(np.ceil(len(self.rows) / self.batch_size))

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        picked = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        chips = normalise(self.store.batch(self.rows[picked], self.names), self.normalisation)
        if self.training:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            chips = dihedral(chips, rng.integers(0, 8, len(picked)))
        if self.labels is None:
            return (chips,)
        return chips, self.labels[picked]

    def on_epoch_end(self) -> None:
        if self.training:
            self.order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.rows))
            self.epoch += 1


class ProgressCallback(keras.callbacks.Callback):
    """Progress per batch, a log line and tracked metrics per epoch, Cancel between batches."""

    def __init__(
        self, reporter: Reporter, architecture: str, index: int, count: int, epochs: int
    ) -> None:
        super().__init__()
        self.reporter = reporter
        self.architecture = architecture
        self.index = index
        self.count = count
        self.epochs = epochs
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        steps = self.params.get("steps") or 1
        self.reporter.progress(100.0 * (self.epoch + (batch + 1) / steps) / self.epochs)
        if self.reporter.canceled():
            raise PovmapCanceledError("cancelled by the user")

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        self.reporter.info(
            f"member {self.index + 1}/{self.count} {self.architecture} epoch {epoch + 1}: "
            f"loss {logs.get('loss', float('nan')):.4f}, "
            f"validation loss {logs.get('val_loss', float('nan')):.4f}, "
            f"validation AUC {logs.get('val_auc', float('nan')):.3f}"
        )
        for key in ("loss", "auc", "val_loss", "val_auc"):
            if key in logs:
                self.reporter.metric(f"{self.architecture}/{key}", float(logs[key]), epoch + 1)
