"""Per-chip statistics: for each input band of a cell's chip, after the input's value
transform (``input_transforms``), its ``mean``, ``max``, ``std`` and ``centre`` pixel.

The numbers the transparent baseline (``core/model/baseline.py``) and the statistics
member read, and that the drift check (``core/history/drift.py``) compares with the
training cells': one definition below all three.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .input_transforms import apply_transform

if TYPE_CHECKING:
    from .chip_store import ChipStore


STATISTICS = ("mean", "max", "std", "centre")


def feature_definition(normalisation: Mapping[str, Any]) -> list[dict[str, Any]]:
    """[{"input", "band", "statistic"}] in the order of ``chip_features``' columns."""
    return [
        {"input": name, "band": band + 1, "statistic": statistic}
        for name, spec in normalisation.items()
        for band in range(len(spec["mean"]))
        for statistic in STATISTICS
    ]


def feature_inputs(model: Mapping[str, Any]) -> list[str]:
    """The inputs in the order of a fitted baseline's feature columns.

    A manifest read back from its file has ``normalisation`` in alphabetical order
    (it is written with sorted keys), not in the order the features were fitted in.
    """
    return list(dict.fromkeys(feature["input"] for feature in model["features"]))


def package_features(store: ChipStore, rows: np.ndarray, manifest: Mapping[str, Any]) -> np.ndarray:
    """The per-chip statistics a stored package's baseline reads, in its column order."""
    return chip_features(
        store, rows, manifest["normalisation"], feature_inputs(manifest["baseline"])
    )


def chip_features(
    store: ChipStore,
    rows: np.ndarray,
    normalisation: Mapping[str, Any],
    inputs: Sequence[str] | None = None,
    batch_rows: int = 256,
) -> np.ndarray:
    """Per-chip statistics of store ``rows`` ([n, features], NaN where a chip has no valid pixel).

    Columns go input by input in the order of ``inputs`` (default: ``normalisation``'s,
    which is the fitting order only before the manifest is written: pass
    ``feature_inputs(model)`` for a stored baseline).
    """
    rows = np.asarray(rows, dtype="int64")
    parts = [
        features_of_chips(
            {
                name: store.batch_of(name, rows[start : start + batch_rows])
                for name in normalisation
            },
            normalisation,
            inputs,
        )
        for start in range(0, len(rows), batch_rows)
    ]
    if not parts:
        return np.zeros((0, len(feature_definition(normalisation))))
    return np.concatenate(parts)


def features_of_chips(
    chips: Mapping[str, np.ndarray],
    normalisation: Mapping[str, Any],
    inputs: Sequence[str] | None = None,
) -> np.ndarray:
    """Per-chip statistics of one batch of chips ({input: [n, H, W, bands]} as stored).

    The same numbers whether the chips come from a store or straight from the
    rasters (predicting without a store, core/model/raster_prediction.py).
    """
    columns = []
    for name in inputs or list(normalisation):  # see chip_features
        columns.append(band_statistics(apply_transform(chips[name], normalisation[name])))
    return np.concatenate(columns, axis=1)


def band_statistics(values: np.ndarray) -> np.ndarray:
    """[n, bands × 4]: each band's ``STATISTICS`` of chips ``values`` ([n, H, W, bands]).

    Columns go band by band, statistic by statistic; NaN pixels are left out (a chip
    with no valid pixel gives NaN). Computed in float64 over one contiguous plane per
    band: reducing the stored [H, W, bands] layout over two axes with the bands
    innermost is six times slower, and this runs for every batch a prediction reads.
    Only the chips that hold NaN pay for the NaN-aware functions.
    """
    import warnings

    count, height, width, bands = values.shape
    centre = values[:, height // 2, width // 2, :].astype("float64")
    planes = np.empty((count, bands, height * width), dtype="float64")
    planes[...] = values.reshape(count, height * width, bands).transpose(0, 2, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN chips give NaN, inf - inf too
        mean, largest, spread = planes.mean(axis=-1), planes.max(axis=-1), planes.std(axis=-1)
        with_nan = np.isnan(mean).any(axis=1)  # a NaN pixel makes its band's sum NaN
        if with_nan.any():
            some = planes[with_nan]
            mean[with_nan] = np.nanmean(some, axis=-1)
            largest[with_nan] = np.nanmax(some, axis=-1)
            spread[with_nan] = np.nanstd(some, axis=-1)
    return np.stack([mean, largest, spread, centre], axis=-1).reshape(count, -1)
