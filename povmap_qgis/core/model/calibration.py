"""Calibrated probabilities and how to measure calibration (one definition of the bins).

A member learns from balanced classes (undersampling or class weights), so its
probability overstates how often a cell is poor. After training, the
ensemble's mean probability (and the baseline's) is recalibrated on the
validation cells — cells the members did not learn from, with the survey's
own share of poor cells — by Platt scaling: a logistic regression on
logit(p), ``p' = 1 / (1 + exp(-(slope · logit(p) + intercept)))``. With a
positive slope it is strictly increasing, so rankings and AUC do not change;
a fit whose slope is not positive (validation cells that carry no signal)
is refused and the probability left as it is, with a note.

Calibration is measured with the Brier score (mean squared difference
between probability and label) and the expected calibration error (ECE): the
cells are put into ``BINS`` equal-width bins of predicted probability, and
the ECE is the cell-weighted mean of |observed share poor − mean predicted|
over the bins. The reliability diagram plots the same bins.

Members'-spread interval (``interval``; the rule of packages from before
``core/model/intervals.py``, which now makes ``prob_low`` / ``prob_high``): the
calibrated values of the members' raw mean ∓ ``INTERVAL_Z`` × the members'
standard deviation (``disagreement``), clipped to [0, 1] before calibrating:
a range from the members' spread only — it ignores the calibration's own
uncertainty and what every member gets wrong alike. Its nominal level is
``NOMINAL_LEVEL`` (0.95 for z = 1.96, were the spread a normal error).

The class on the calibrated scale (``decision_threshold``): a cell is called
poor when its calibrated probability reaches the training cells' share of
poor cells (their prevalence, before undersampling) — it is more likely poor
than a cell picked at random from the survey. Not 0.5: in a population that
is 40 % poor, calibrated probabilities rarely pass 0.5, and a 0.5 threshold
finds few of the poor (it maximises accuracy, while programmes need recall).
With ``TARGET_RECALL``: the highest threshold reaching that recall on the
validation cells' calibrated probabilities. Without a usable calibration the
probability stays on the members' balanced scale, where 0.5 is the prevalence.

Checking it (``interval_coverage``): a single cell has a label, not a share
poor, so the cells are put in the reliability bins of their calibrated
probability and a cell's interval *covers* when it holds its bin's observed
share of poor cells. The coverage is the share of cells whose interval
covers (per bin and overall), to be read against the nominal level. With
``groups`` (cross-validation: each cell's fold) the bins are made within each
group: each fold's model is judged against the shares of its own held-out cells'
bins, as an evaluation of one model is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

BINS = 10  # equal-width bins of predicted probability: [0, 0.1), … [0.9, 1.0]
INTERVAL_Z = 1.96  # prob_low / prob_high: raw mean -/+ 1.96 x the members' standard deviation
NOMINAL_LEVEL = 0.95  # the interval's nominal level: erf(INTERVAL_Z / sqrt(2)), rounded
_EPSILON = 1e-6


def logit(probabilities: ArrayLike) -> np.ndarray:
    p = np.clip(np.asarray(probabilities, dtype="float64"), _EPSILON, 1 - _EPSILON)
    return np.log(p / (1 - p))


def fit_platt(
    probabilities: ArrayLike, labels: ArrayLike, weights: ArrayLike | None = None
) -> dict[str, Any]:
    """Platt scaling fitted on (validation) cells: {"method": "platt", "slope", "intercept", "cells"}.

    ``weights``: one per cell (a verification sample's design weights), else all equal.

    ``{"method": "none", "note"}`` where it cannot be fitted (one class) or
    would reverse the ranking (slope ≤ 0).
    """
    from sklearn.linear_model import LogisticRegression

    labels = np.asarray(labels, dtype="int64")
    if len(np.unique(labels)) < 2:
        return {"method": "none", "note": "the calibration cells hold one class only"}
    model = LogisticRegression(C=1e6, max_iter=1000).fit(
        logit(probabilities).reshape(-1, 1), labels, sample_weight=weights
    )
    slope, intercept = float(model.coef_[0][0]), float(model.intercept_[0])
    if slope <= 0:
        return {
            "method": "none",
            "note": f"Platt scaling gave slope {slope:.3g} <= 0 (no signal in the calibration cells)",
        }
    return {"method": "platt", "slope": slope, "intercept": intercept, "cells": int(len(labels))}


def calibrate(probabilities: ArrayLike, calibration: Mapping[str, Any] | None) -> np.ndarray:
    """Calibrated probabilities; unchanged without a (usable) calibration."""
    probabilities = np.asarray(probabilities, dtype="float64")
    if not calibration or calibration.get("method") != "platt":
        return probabilities
    return 1.0 / (
        1.0 + np.exp(-(calibration["slope"] * logit(probabilities) + calibration["intercept"]))
    )


def brier_score(labels: ArrayLike, probabilities: ArrayLike) -> float | None:
    labels = np.asarray(labels, dtype="float64")
    if not len(labels):
        return None
    return float(np.mean((np.asarray(probabilities, dtype="float64") - labels) ** 2))


def reliability_bins(
    labels: ArrayLike, probabilities: ArrayLike, bins: int = BINS
) -> list[dict[str, Any]]:
    """[{"low", "high", "n", "predicted" (mean), "observed" (share poor)}] of the non-empty bins."""
    labels = np.asarray(labels, dtype="float64")
    probabilities = np.asarray(probabilities, dtype="float64")
    index = np.clip((probabilities * bins).astype("int64"), 0, bins - 1)
    result = []
    for number in range(bins):
        inside = index == number
        if inside.any():
            result.append(
                {
                    "low": number / bins,
                    "high": (number + 1) / bins,
                    "n": int(inside.sum()),
                    "predicted": float(probabilities[inside].mean()),
                    "observed": float(labels[inside].mean()),
                }
            )
    return result


def expected_calibration_error(
    labels: ArrayLike, probabilities: ArrayLike, bins: int = BINS
) -> float | None:
    table = reliability_bins(labels, probabilities, bins)
    total = sum(row["n"] for row in table)
    if not total:
        return None
    return float(sum(row["n"] * abs(row["observed"] - row["predicted"]) for row in table) / total)


def scores(labels: ArrayLike, probabilities: ArrayLike) -> dict[str, Any]:
    """{"brier", "ece", "reliability"} of probabilities against labels."""
    return {
        "brier": brier_score(labels, probabilities),
        "ece": expected_calibration_error(labels, probabilities),
        "reliability": reliability_bins(labels, probabilities),
    }


def interval(
    raw: ArrayLike, disagreement: ArrayLike, calibration: Mapping[str, Any] | None
) -> tuple[np.ndarray, np.ndarray]:
    """(prob_low, prob_high): calibrated raw mean ∓ ``INTERVAL_Z`` × the members' standard deviation."""
    raw = np.asarray(raw, dtype="float64")
    spread = INTERVAL_Z * np.asarray(disagreement, dtype="float64")
    return (
        calibrate(np.clip(raw - spread, 0, 1), calibration),
        calibrate(np.clip(raw + spread, 0, 1), calibration),
    )


def interval_coverage(
    labels: ArrayLike,
    probabilities: ArrayLike,
    low: ArrayLike,
    high: ArrayLike,
    bins: int = BINS,
    groups: ArrayLike | None = None,
) -> dict[str, Any]:
    """How often the cells' intervals hold their reliability bin's observed share of poor cells.

    {"nominal", "coverage" (share of all cells), "cells", "mean_width", "bins": [{"low", "high",
    "n", "observed", "mean_low", "mean_high", "covered" (share of the bin's cells)}]};
    ``coverage`` None without cells. ``groups``: each cell's group (e.g. its cross-validation
    fold) — a cell's bin share is then its group's cells' in that bin; a row's ``observed``
    stays the share of all its cells (the cells-weighted mean of its groups').
    """
    labels = np.asarray(labels, dtype="float64")
    probabilities = np.asarray(probabilities, dtype="float64")
    low, high = np.asarray(low, dtype="float64"), np.asarray(high, dtype="float64")
    index = np.clip((probabilities * bins).astype("int64"), 0, bins - 1)
    groups = np.zeros(len(labels)) if groups is None else np.asarray(groups)
    covered = np.zeros(len(labels), dtype=bool)
    table = []
    for number in range(bins):
        inside = index == number
        if not inside.any():
            continue
        for group in np.unique(groups[inside]):
            cells = inside & (groups == group)
            share = float(labels[cells].mean())
            covered[cells] = (low[cells] <= share) & (share <= high[cells])
        table.append(
            {
                "low": number / bins,
                "high": (number + 1) / bins,
                "n": int(inside.sum()),
                "observed": float(labels[inside].mean()),
                "mean_low": float(low[inside].mean()),
                "mean_high": float(high[inside].mean()),
                "covered": float(covered[inside].mean()),
            }
        )
    return {
        "nominal": NOMINAL_LEVEL,
        "coverage": float(covered.mean()) if len(labels) else None,
        "cells": int(len(labels)),
        "mean_width": float(np.mean(high - low)) if len(labels) else None,
        "bins": table,
    }


def decision_threshold(
    target_recall: float | None,
    labels: ArrayLike,
    calibrated: ArrayLike,
    prevalence: float,
    fitted: Mapping[str, Any] | None,
    name: str = "prob_mean",
) -> tuple[float, str]:
    """(threshold, rule) of the class on the calibrated scale (see the module doc).

    ``labels`` and ``calibrated``: the validation cells' labels and calibrated
    probabilities (for ``target_recall``); ``prevalence``: the training cells'
    share of poor cells; ``fitted``: the calibration (``fit_platt``).
    """
    from ..validation.metrics import threshold_for_recall

    if target_recall is not None:
        threshold = float(threshold_for_recall(labels, calibrated, target_recall))
        return threshold, f"calibrated {name}: target recall {target_recall} on validation"
    if not fitted or fitted.get("method") != "platt":
        return 0.5, f"{name} >= 0.5 (not calibrated: the members' balanced scale)"
    threshold = float(prevalence)
    return threshold, (
        f"calibrated {name} >= {threshold:.3f}, the training cells' share of poor cells"
    )
