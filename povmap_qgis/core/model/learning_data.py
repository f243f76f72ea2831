"""Feeding chips to Keras: labels joined to the store, normalisation, batches, augmentation.

Batches are read from the chip store with pread (only the rows of the batch),
normalised with statistics of the training cells, and — for training —
augmented with the eight flips/90° rotations that leave overhead imagery
plausible. All inputs of a cell get the same transform, so they stay aligned.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import vectors
from ..chips import grid_cells
from ..chips.input_transforms import apply_transform, choose_transforms
from ..errors import PovmapInputError
from ..grid import cells
from ..names import CELL_ID

if TYPE_CHECKING:
    import pandas as pd

    from ..chips.chip_store import ChipStore
    from ..progress import Reporter


def read_labelled_cells(
    grid_path: str,
    grid_layer: str | None = None,
    parameter: str = "GRID",
    reporter: Reporter | None = None,
    id_field: str = CELL_ID,
) -> pd.DataFrame:
    """cell_id, label and district of a labelled grid (a training grid).

    ``id_field``: the grid's cell id (an own grid's ID_FIELD), returned as ``cell_id``.
    Cells without a label (NULL) are left out, and counted to ``reporter``.
    """
    import pyogrio

    layer = vectors.spatial_layer(grid_path, grid_layer, parameter)
    info = vectors.layer_info(grid_path, layer, parameter)
    fields = list(info["fields"])
    if id_field != CELL_ID:
        grid_cells.read_cell_ids(
            grid_path, layer, id_field, info, parameter
        )  # missing, NULL, repeated
    for field in (id_field, "label"):
        if field not in fields:
            raise PovmapInputError(
                parameter,
                f"the layer '{layer}' has no {field} field; use a labelled grid made by Build training grid.",
            )
    columns = [id_field, "label"] + (["district"] if "district" in fields else [])
    frame = pyogrio.read_dataframe(grid_path, layer=layer, columns=columns, read_geometry=False)
    frame = frame.rename(columns={id_field: CELL_ID})
    unlabelled = int(frame["label"].isna().sum())
    if unlabelled and reporter is not None:
        reporter.warning(
            f"{parameter}: {unlabelled} of {len(frame)} cells have no label (NULL) and are left out."
        )
    frame = frame[frame["label"].notna()]
    if "district" not in frame:
        frame["district"] = None
    frame = frame.assign(label=_zero_one_labels(frame["label"], layer, parameter))
    frame = frame.astype({"cell_id": "int64", "label": "int64"})
    cells.check_unique_ids(frame["cell_id"], parameter, layer)  # type: ignore[arg-type]  # a layer here
    return frame


def _zero_one_labels(labels: Any, layer: str | None, parameter: str) -> np.ndarray:
    """The label field as numbers 0/1, or a message saying what else it holds."""
    import pandas

    numbers = pandas.to_numeric(labels, errors="coerce")
    text = numbers.isna()
    if text.any():
        examples = ", ".join(f"'{value}'" for value in sorted({str(v) for v in labels[text]})[:5])
        raise PovmapInputError(
            parameter,
            f"the label field of '{layer}' holds text ({examples} in {int(text.sum())} cells); "
            "it must be 1 (poor) or 0 (not poor), as Build training grid writes it.",
        )
    other = ~numbers.isin([0, 1])
    if other.any():
        examples = ", ".join(f"{value:g}" for value in sorted(set(numbers[other]))[:5])
        raise PovmapInputError(
            parameter,
            f"the label field of '{layer}' must be 1 (poor) or 0 (not poor); {int(other.sum())} "
            f"cells hold {examples}.",
        )
    return numbers


def store_rows_for(store: ChipStore, cell_ids: Any, parameter: str = "GRID") -> np.ndarray:
    """Row of each cell id in the store; a clear error if some are missing."""
    order = np.argsort(store.cell_ids)
    stored = np.asarray(store.cell_ids)[order]
    positions = np.searchsorted(stored, cell_ids)
    positions = np.clip(positions, 0, len(stored) - 1)
    found = stored[positions] == cell_ids
    if not found.all():
        missing = int((~found).sum())
        raise PovmapInputError(
            parameter,
            f"{missing} of {len(cell_ids)} cells of the grid are not in the chip store; sample chips for this grid (Sample image chips) first.",
        )
    return order[positions]


def training_normalisation(
    store: ChipStore, rows: np.ndarray, reporter: Reporter | None = None
) -> dict[str, Any]:
    """Value transforms chosen from the training cells' chips, then their mean/std (train and cross-validation)."""
    transforms = choose_transforms(store, rows)
    for name, spec in transforms.items():
        if reporter is not None and spec["transform"] != "none":
            reporter.info(
                f"input {name}: {spec['transform']} before normalisation ({spec['rule']})"
            )
    return normalisation_from(store, rows, transforms=transforms)


def normalisation_from(
    store: ChipStore,
    rows: np.ndarray,
    batch_rows: int = 256,
    transforms: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Per input and band: mean and std over the valid pixels of ``rows`` (training cells only).

    ``transforms`` ({input: spec} from ``input_transforms.choose_transforms``):
    each input's values are transformed first and its spec is kept in its entry,
    so that ``normalise`` applies the same transform wherever chips are read.
    """
    transforms = transforms or {}
    statistics = {}
    for name in store.input_names:
        bands = store.chips(name).shape[-1]
        count, total, squares = np.zeros(bands), np.zeros(bands), np.zeros(bands)
        for start in range(0, len(rows), batch_rows):
            values = (
                apply_transform(
                    store.batch_of(name, np.sort(rows[start : start + batch_rows])),
                    transforms.get(name),
                )
                .astype("float64")
                .reshape(-1, bands)
            )
            valid = ~np.isnan(values)
            count += valid.sum(axis=0)
            total += np.where(valid, values, 0).sum(axis=0)
            squares += np.where(valid, values**2, 0).sum(axis=0)
        mean = total / np.maximum(count, 1)
        std = np.sqrt(np.maximum(squares / np.maximum(count, 1) - mean**2, 0))
        statistics[name] = {"mean": mean.tolist(), "std": np.where(std > 1e-6, std, 1.0).tolist()}
        statistics[name].update(transforms.get(name) or {})
    return statistics


def normalise(
    chips: Mapping[str, np.ndarray], normalisation: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """float32 inputs with zero mean / unit std per band; nodata (NaN) becomes 0, the mean.

    The input's value transform (e.g. log1p for radiance, recorded in its
    normalisation entry) is applied first.
    """
    out = {}
    for name, values in chips.items():
        mean = np.asarray(normalisation[name]["mean"], dtype="float32")
        std = np.asarray(normalisation[name]["std"], dtype="float32")
        # one new array, then in place: this runs for every batch a prediction reads
        scaled = np.subtract(apply_transform(values, normalisation[name]), mean, dtype="float32")
        np.divide(scaled, std, out=scaled)
        out[name] = np.nan_to_num(scaled, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    return out


def dihedral(chips: Mapping[str, np.ndarray], transforms: np.ndarray) -> dict[str, np.ndarray]:
    """Apply one of 8 flips/rotations per cell (same for every input of a cell)."""
    out = {}
    for name, values in chips.items():
        transformed = np.empty_like(values)
        for index, transform in enumerate(transforms):
            cell = np.rot90(values[index], k=int(transform) % 4, axes=(0, 1))
            transformed[index] = cell[:, ::-1] if transform >= 4 else cell
        out[name] = transformed
    return out


def predict_rows(
    models: Sequence[Any],
    store: ChipStore,
    rows: np.ndarray,
    normalisation: Mapping[str, Any],
    names: Sequence[str],
    batch_rows: int = 128,
    on_batch: Callable[[int], None] | None = None,
) -> list[np.ndarray]:
    """Each model's probabilities for store ``rows``, batch by batch.

    The last batch is padded to the batch size so that Keras traces the
    prediction function once, not again for a smaller final batch.
    """
    outputs = [np.empty(len(rows), dtype="float32") for _ in models]
    for start in range(0, len(rows), batch_rows):
        picked = rows[start : start + batch_rows]
        padded = (
            np.concatenate([picked, np.repeat(picked[-1:], batch_rows - len(picked))])
            if len(rows) > batch_rows
            else picked
        )
        probabilities = predict_batch(models, store.batch(padded, names), normalisation)
        for values, out in zip(probabilities, outputs, strict=True):
            out[start : start + len(picked)] = values[: len(picked)]
        if on_batch:
            on_batch(start + len(picked))
    return outputs


def predict_batch(
    models: Sequence[Any], chips: Mapping[str, np.ndarray], normalisation: Mapping[str, Any]
) -> list[np.ndarray]:
    """Each model's probabilities for one batch of chips ({input: [n, H, W, bands]} as stored).

    The one place chips meet the members, whether they come from a store
    (``predict_rows``) or straight from the rasters (core/model/raster_prediction.py).
    """
    normalised = normalise(chips, normalisation)
    return [np.asarray(model.predict_on_batch(normalised)).reshape(-1) for model in models]
