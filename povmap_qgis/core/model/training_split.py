"""The labelled cells ``train`` and cross-validation learn from, and how they are split.

Cells: the labelled grid's cells that are in the chip store and not flagged for nodata.
Split: a random holdout stratified by label (train / validation / test in the paper's
15,596 / 1,732 / 1,925 proportions) or whole districts held out for testing. The majority
class is undersampled in training (the paper) or class weights are used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import PovmapInputError
from . import learning_data
from .training_settings import TrainingSettings, check_balance

if TYPE_CHECKING:
    import pandas as pd

    from ..chips.chip_store import ChipStore
    from ..progress import Reporter


PAPER_FRACTIONS = (15596, 1732, 1925)  # train, validation, test cells in the paper


def grid_id_field(store: ChipStore, options: TrainingSettings) -> str:
    """The grid's cell id field: the option, else the one the chip store was sampled by."""
    return store.id_field(options.id_field)


def usable_cells(
    store: ChipStore, options: TrainingSettings, reporter: Reporter | None = None
) -> tuple[pd.DataFrame, int]:
    cells = learning_data.read_labelled_cells(
        options.grid_path,
        options.grid_layer,
        reporter=reporter,
        id_field=grid_id_field(store, options),
    )
    if cells.empty:
        raise PovmapInputError("GRID", "the grid has no labelled cells.")
    cells["store_row"] = learning_data.store_rows_for(store, cells["cell_id"].to_numpy())
    flagged = (
        np.asarray(store.nodata_fraction)[cells["store_row"].to_numpy()] > store.max_nodata
    ).any(axis=1)
    cells = cells[~flagged].reset_index(drop=True)
    if cells["label"].nunique() < 2:
        raise PovmapInputError(
            "GRID",
            "the labelled cells hold one class only; training needs poor and not-poor cells.",
        )
    return cells, int(flagged.sum())


def split_cells(cells: pd.DataFrame, options: Any) -> dict[str, np.ndarray]:
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


def _split_part(rows: np.ndarray, share: float, labels: np.ndarray, seed: int) -> list[np.ndarray]:
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


def balanced_training_rows(
    train_rows: np.ndarray, labels: np.ndarray, options: TrainingSettings, reporter: Reporter
) -> tuple[np.ndarray, dict[int, float] | None]:
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


def district_values(cells: pd.DataFrame) -> np.ndarray | None:
    """Each labelled cell's district (None where it has none), or None without districts."""
    if "district" not in cells or cells["district"].isna().all():
        return None
    return np.asarray(
        [None if value is None or value != value else str(value) for value in cells["district"]],
        dtype=object,
    )
