"""The transparent baseline: logistic regression on per-chip summary statistics.

What a programme can already do with night lights (or any input) and a
spreadsheet: for each input band of a cell's chip, after the input's value
transform (``input_transforms``, e.g. log1p for radiance), four numbers —
``mean``, ``max``, ``std`` and ``centre`` (the pixel at the chip's centre) —
standardised with the training cells' means and standard deviations, then a
scikit-learn ``LogisticRegression``. Nodata pixels are ignored; a statistic
with no valid pixel takes the training mean.

Fitted by ``train`` (and by the cross-validation in each fold) on the
training cells, with balanced class weights so that its raw probability is on
the members' scale (they learn from balanced classes). Stored in the model
manifest as plain numbers (feature definition, means, scales, coefficients,
intercept) — no pickle — and applied by ``probabilities`` with numpy.

The same per-chip statistics give the training range of ``out_of_range``: the
1st and 99th percentiles of each statistic over the training cells; and the
reference of the drift check (``core.history.drift``): their deciles and the training
cells' share between them — one reference of the training distribution, in
``baseline.training_range``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..chips.chip_features import chip_features, feature_definition

if TYPE_CHECKING:
    from ..chips.chip_store import ChipStore


C = 1.0  # scikit-learn's default regularisation
RANGE_PERCENTILES = (1.0, 99.0)


def fit(
    features: np.ndarray, labels: np.ndarray, normalisation: dict[str, Any], balanced: bool = True
) -> dict[str, Any]:
    """Fit the baseline; its definition and numbers as a JSON-ready dict (no NaN)."""
    import warnings

    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a statistic without any valid value
        mean = np.nan_to_num(np.nanmean(features, axis=0))
        scale = np.nan_to_num(np.nanstd(features, axis=0))
        low, high = np.nanpercentile(features, RANGE_PERCENTILES, axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    model = LogisticRegression(
        C=C, max_iter=1000, class_weight="balanced" if balanced else None
    ).fit(_standardised(features, mean, scale), np.asarray(labels, dtype="int64"))
    return {
        "kind": "logistic_regression",
        "features": feature_definition(normalisation),
        "mean": [float(value) for value in mean],
        "scale": [float(value) for value in scale],
        "coefficients": [float(value) for value in model.coef_[0]],
        "intercept": float(model.intercept_[0]),
        "C": C,
        "class_weight": "balanced" if balanced else "none",
        "training_cells": int(len(labels)),
        "training_range": {
            "percentiles": list(RANGE_PERCENTILES),
            "low": [None if np.isnan(value) else float(value) for value in low],
            "high": [None if np.isnan(value) else float(value) for value in high],
            **distribution_reference(features),
        },
    }


def distribution_reference(features: np.ndarray) -> dict[str, Any]:
    """Deciles of each statistic over the training cells and the share of cells between them.

    The drift check's reference (``core.history.drift``): ``quantiles`` (0, 0.1, … 1),
    ``values`` [per feature: the statistic at each quantile] and ``shares`` [per
    feature: the training cells' share in each bin between those values, as
    ``drift.bin_shares`` counts them — ties make some bins empty]. None for a
    statistic without any valid value.
    """
    import warnings

    from ..history.drift import QUANTILES, bin_shares

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        edges = np.nanquantile(np.asarray(features, dtype="float64"), QUANTILES, axis=0).T
    values: list[list[float] | None] = []
    shares: list[list[float] | None] = []
    for column, feature_edges in zip(np.asarray(features, dtype="float64").T, edges, strict=True):
        if np.isnan(feature_edges).any():
            values.append(None)
            shares.append(None)
            continue
        values.append([float(value) for value in feature_edges])
        shares.append([float(value) for value in bin_shares(column, feature_edges)])
    return {"quantiles": list(QUANTILES), "values": values, "shares": shares}


def probabilities(baseline: dict[str, Any], features: np.ndarray) -> np.ndarray:
    """The baseline's probability of each row of ``features`` (plain numpy, as stored)."""
    standardised = _standardised(
        features, np.asarray(baseline["mean"]), np.asarray(baseline["scale"])
    )
    logits = standardised @ np.asarray(baseline["coefficients"]) + float(baseline["intercept"])
    return 1.0 / (1.0 + np.exp(-logits))


def out_of_range(baseline: dict[str, Any], features: np.ndarray) -> np.ndarray:
    """1 where any statistic lies outside the training cells' 1st–99th percentiles (NaN: not counted)."""
    reference = baseline["training_range"]
    low, high = (np.asarray(reference[key], dtype="float64") for key in ("low", "high"))
    with np.errstate(invalid="ignore"):
        outside = (features < low) | (features > high)
    return outside.any(axis=1).astype("int32")


def _standardised(features: np.ndarray, mean: Any, scale: Any) -> np.ndarray:
    values = (np.asarray(features, dtype="float64") - mean) / scale
    return np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)


def fit_calibrated(
    store: ChipStore,
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    normalisation: dict[str, Any],
    target_recall: float | None = None,
) -> dict[str, Any]:
    """The baseline fitted on the training cells and calibrated on the validation cells.

    ``train`` and ``validation``: (store rows, labels). Its decision threshold
    (``threshold``, with its ``threshold_rule``) follows the ensemble's rule
    (``calibration.decision_threshold``: the training cells' share of poor
    cells, or ``target_recall`` on the validation cells) on the calibrated
    scale, where ``prob_baseline`` is written.
    """
    from . import calibration

    model = fit(chip_features(store, train[0], normalisation), train[1], normalisation)
    raw = probabilities(model, chip_features(store, validation[0], normalisation))
    model["calibration"] = dict(
        calibration.fit_platt(raw, validation[1]), fitted_on="validation cells"
    )
    threshold, rule = calibration.decision_threshold(
        target_recall,
        validation[1],
        calibration.calibrate(raw, model["calibration"]),
        float(np.mean(train[1])),
        model["calibration"],
        name="prob_baseline",
    )
    model["threshold"], model["threshold_rule"] = threshold, rule
    return model


def calibrated_probabilities(model: dict[str, Any], features: np.ndarray) -> np.ndarray:
    """``prob_baseline``: the stored baseline's calibrated probability of each row of ``features``."""
    from .calibration import calibrate

    return calibrate(probabilities(model, features), model.get("calibration"))
