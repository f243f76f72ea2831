"""The folds of the cross-validation: whole districts per fold, balanced by cell count.

Greedy: the largest district goes to the fold with the fewest cells (the SEED breaks ties
between districts of equal size). Also each fold's stratified validation share of its
training folds, as ``train`` takes one. Used by ``crossvalidation.py`` for the outer folds
and by ``nested_stacking.py`` for the inner folds of STACKING=nested.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import PovmapInputError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from ..progress import Reporter


NO_DISTRICT = "(no district)"


def assign_folds(
    districts: Sequence[Any] | np.ndarray, folds: int, seed: int = 0
) -> dict[Any, int]:
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
class DistrictFolds:
    """The labelled cells' folds: whole districts per fold (:func:`assign_folds`)."""

    districts: Any  # each cell's district (NO_DISTRICT where it has none)
    assignment: dict  # {district: fold}
    cell_folds: Any  # each cell's fold
    numbers: list  # 1..folds
    districts_of: dict  # {fold: its districts, sorted}


def folds_of_cells(cells: pd.DataFrame, options: Any, reporter: Reporter) -> DistrictFolds:
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
    return DistrictFolds(districts, assignment, cell_folds, numbers, districts_of)


def validation_split(
    rows: np.ndarray, labels: np.ndarray, share: float, seed: int, fold: int
) -> tuple[np.ndarray, np.ndarray]:
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
