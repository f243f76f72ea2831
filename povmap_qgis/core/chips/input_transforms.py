"""Monotone value transforms of chip inputs, chosen from the training chips (one rule, one place).

Night-light radiance is heavy-tailed: most rural cells sit below 0.5 nW/cm²/sr
while towns reach hundreds, and a linear mean/std normalisation squashes the dim
end that separates poor from less poor villages. An input whose values span
orders of magnitude is therefore log-scaled before it is normalised.

The rule (``choose_transforms``), decided per input from the training cells'
chips (a sample of up to ``SAMPLE_ROWS`` cells, every ``PIXEL_STRIDE``-th pixel
in each direction): an input is *radiance-like* when, in every band, all valid
values are ≥ 0 and the 99th percentile exceeds ``RADIANCE_RATIO`` × the median
(or the median is 0 and the 99th percentile is not). A radiance-like band gets
``log1p(value / scale)`` with ``scale`` = the band's median (its median of
positive values when the median is 0), so the median cell maps to log 2 and
the dim end is spread out. Any other input is left as it is (``none``).

The choice is stored with the normalisation of each input
(``{"transform": "log1p", "scale": [...], "mean", "std"}``) in the model
package and applied by ``apply_transform`` wherever chips are read: training,
prediction, cross-validation and the per-chip statistics of the baseline.
Packages from before this rule have no ``transform`` and are read unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .chip_store import ChipStore


NONE, LOG1P = "none", "log1p"
RADIANCE_RATIO = 10.0
SAMPLE_ROWS = 2000
PIXEL_STRIDE = 5


def choose_transforms(store: ChipStore, rows: np.ndarray) -> dict[str, dict[str, Any]]:
    """{input: {"transform": "log1p", "scale": [per band], "rule": text} or {"transform": "none"}}."""
    rows = np.sort(np.asarray(rows, dtype="int64"))
    if len(rows) > SAMPLE_ROWS:
        rows = rows[np.linspace(0, len(rows) - 1, SAMPLE_ROWS).round().astype("int64")]
    chosen = {}
    for name in store.input_names:
        values = np.asarray(store.batch_of(name, rows), dtype="float64")
        values = values[:, ::PIXEL_STRIDE, ::PIXEL_STRIDE, :].reshape(-1, values.shape[-1])
        chosen[name] = _choice(values)
    return chosen


def _choice(values: np.ndarray) -> dict[str, Any]:
    scales, reasons = [], []
    for band in range(values.shape[-1]):
        valid = values[:, band][np.isfinite(values[:, band])]
        if not len(valid) or valid.min() < 0:
            return {"transform": NONE}
        median, high = float(np.median(valid)), float(np.percentile(valid, 99))
        if high <= 0 or (median > 0 and high <= RADIANCE_RATIO * median):
            return {"transform": NONE}
        scale = median if median > 0 else float(np.median(valid[valid > 0]))
        scales.append(scale)
        reasons.append(f"band {band + 1}: median {median:.4g}, 99th percentile {high:.4g}")
    return {
        "transform": LOG1P,
        "scale": scales,
        "rule": f"values >= 0 and 99th percentile > {RADIANCE_RATIO:g} x median ("
        + "; ".join(reasons)
        + ")",
    }


def apply_transform(values: np.ndarray, spec: Mapping[str, Any] | None) -> np.ndarray:
    """``values`` ([..., bands]) transformed as ``spec`` says (float32; NaN stays NaN).

    ``spec`` is an input's normalisation entry or a ``choose_transforms`` value;
    None or no ``transform`` key (an older package) leaves the values unchanged.
    """
    kind = (spec or {}).get("transform", NONE)
    if kind == NONE:
        return values
    if kind != LOG1P:
        raise ValueError(f"unknown input transform '{kind}' (known: {NONE}, {LOG1P})")
    scale = np.asarray(spec["scale"], dtype="float32")  # type: ignore[index]  # a log1p spec
    return np.log1p(np.maximum(np.asarray(values, dtype="float32"), 0) / scale)
