"""Stacking: the ensemble's probability is the combination the out-of-fold evidence supports.

The *candidates* are every member's raw probability (``prob_<member>``: the CNNs,
``stats_gbm``) and the transparent baseline's raw probability (``baseline.probabilities``,
before its calibration): all on the members' balanced scale. The *combiner* is a
logistic regression on the candidates' logits with **non-negative weights** and an
L2 penalty (scikit-learn's convention, ``C`` = 1, as the baseline), which minimises

    Σ_i [log(1 + exp(z_i)) − y_i z_i] + Σ_j w_j² / (2 C),   z_i = b + Σ_j w_j logit(p_ij),
    subject to w_j ≥ 0 (the intercept b is free and not penalised),

with logits of probabilities clipped to [1e-6, 1 − 1e-6]. A candidate that adds
nothing the others do not already carry gets (about) zero weight; none can enter
with a negative weight (ranking cells against a member's own evidence). Solved by
L-BFGS-B with the exact gradient, then Newton steps on the candidates with positive
weight (the constrained optimum is the unconstrained fit on those candidates), so
the fit is exact to ~1e-10 and reproducible.

It must be fitted on probabilities of cells the members and the baseline did **not**
learn from — otherwise a member that memorises its training cells would win all the
weight: ``train`` fits it on the validation cells; ``crossvalidate`` (STACKING=nested)
on the inner out-of-fold predictions of each outer fold's training districts.

The stacked probability (``prob_raw``) is then calibrated as the members' mean was (Platt
scaling on the validation cells: ``prob_mean``); where the stacking was fitted on the same
cells this mostly undoes the penalty's shrinkage of its scale, never its ranking, and the
interval rule (``core.model.intervals``) works on it as on any ``prob_raw``. Stored as plain numbers in
the model manifest (``stacking``: method, candidates, weights, intercept, C, where
and on how many cells it was fitted) and covered by ``manifest_sha256``; applied by
:func:`combine` wherever a package predicts (``predict`` on every engine and source)
and in the cross-validation. A package without ``stacking`` keeps the members' mean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard

import numpy as np

METHOD = "nonnegative_logistic_regression"
C = 1.0  # scikit-learn's default regularisation (as the baseline's)
BASELINE = "baseline"  # the transparent baseline's candidate name
MODES = ("nested", "validation", "off")  # crossvalidate's STACKING; train: validation or off
_EPSILON = 1e-6
MEAN_SENTENCE = "the members' mean"


def logits(probabilities: Any) -> np.ndarray:
    p = np.clip(np.asarray(probabilities, dtype="float64"), _EPSILON, 1 - _EPSILON)
    return np.log(p / (1 - p))


def _matrix(candidates: Mapping[str, Any], names: Sequence[str]) -> np.ndarray:
    return np.column_stack([logits(candidates[name]) for name in names])


def _objective(
    parameters: np.ndarray, matrix: np.ndarray, labels: np.ndarray, penalty: np.ndarray
) -> tuple[float, np.ndarray]:
    """(penalised negative log likelihood, gradient); parameters = [intercept, weights...]."""
    z = parameters[0] + matrix @ parameters[1:]
    loss = float(np.sum(np.logaddexp(0.0, z) - labels * z) + 0.5 * penalty @ parameters**2)
    residual = 1.0 / (1.0 + np.exp(-z)) - labels
    gradient = np.concatenate([[residual.sum()], matrix.T @ residual]) + penalty * parameters
    return loss, gradient


def _newton(
    parameters: np.ndarray,
    free: np.ndarray,
    matrix: np.ndarray,
    labels: np.ndarray,
    penalty: np.ndarray,
    steps: int = 50,
) -> np.ndarray:
    """Newton's method on the ``free`` parameters (the others fixed), from ``parameters``."""
    design = np.column_stack([np.ones(len(matrix)), matrix])[:, free]
    for _ in range(steps):
        z = np.column_stack([np.ones(len(matrix)), matrix]) @ parameters
        p = 1.0 / (1.0 + np.exp(-z))
        gradient = design.T @ (p - labels) + penalty[free] * parameters[free]
        hessian = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty[free])
        step = np.linalg.solve(hessian, gradient)
        parameters = parameters.copy()
        parameters[free] -= step
        if np.max(np.abs(step)) < 1e-12:
            break
    return parameters


def fit(
    candidates: Mapping[str, Any],
    labels: Any,
    fitted_on: str,
    names: Sequence[str] | None = None,
    c: float = C,
) -> dict[str, Any]:
    """The combiner fitted on out-of-fold ``candidates`` ({name: probability}) and ``labels``.

    ``names``: the candidates' order (default: ``candidates``' order). Returns the
    manifest's ``stacking`` record (plain numbers); ``{"method": "none", "note"}``
    where it cannot be fitted (one class), which :func:`combine` reads as the members'
    mean.
    """
    from scipy.optimize import minimize

    names = list(names or candidates)
    labels = np.asarray(labels, dtype="float64")
    if len(np.unique(labels)) < 2:
        return {"method": "none", "note": f"the {fitted_on} hold one class only"}
    matrix = _matrix(candidates, names)
    penalty = np.concatenate([[0.0], np.full(len(names), 1.0 / c)])
    start = np.zeros(len(names) + 1)
    bounds = [(None, None)] + [(0.0, None)] * len(names)
    found = minimize(
        _objective,
        start,
        args=(matrix, labels, penalty),
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": 10000, "ftol": 1e-15, "gtol": 1e-10},
    )
    parameters = np.where(np.arange(len(start)) > 0, np.maximum(found.x, 0.0), found.x)
    free = np.concatenate([[True], parameters[1:] > 1e-8])
    parameters[1:][~free[1:]] = 0.0
    parameters = _newton(parameters, free, matrix, labels, penalty)
    return {
        "method": METHOD,
        "candidates": names,
        "weights": [float(value) for value in parameters[1:]],
        "intercept": float(parameters[0]),
        "C": float(c),
        "scale": "logit of each candidate's raw probability, clipped to [1e-6, 1 - 1e-6]",
        "fitted_on": fitted_on,
        "cells": int(len(labels)),
        "poor": int(labels.sum()),
        "contributions": contributions(names, parameters[1:], matrix),
    }


def contributions(
    names: Sequence[str], weights: np.ndarray, matrix: np.ndarray
) -> dict[str, float]:
    """{candidate: share of the stack's signal}: weight × standard deviation of its logits
    over the fitting cells, as a share of the sum (what carries the signal; 0 without)."""
    spread = np.asarray(weights, dtype="float64") * np.std(matrix, axis=0)
    total = float(spread.sum())
    return {
        name: (float(value / total) if total > 0 else 0.0)
        for name, value in zip(names, spread, strict=True)
    }


def is_stacked(stacking: Mapping[str, Any] | None) -> TypeGuard[Mapping[str, Any]]:
    return bool(stacking) and stacking.get("method") == METHOD  # type: ignore[union-attr]


def combine(stacking: Mapping[str, Any] | None, candidates: Mapping[str, Any]) -> np.ndarray:
    """The ensemble's raw probability (``prob_raw``) of each cell: the one rule, used by predict
    (every engine and source) and the cross-validation.

    ``candidates``: {name: raw probability} holding every member and ``BASELINE``. With a
    fitted ``stacking`` record: the combiner's probability; without one (an older package,
    STACKING=off, or a fit that failed): the members' mean (every candidate but the baseline).
    """
    if not is_stacked(stacking):
        members = [values for name, values in candidates.items() if name != BASELINE]
        return np.mean(np.vstack(members).astype("float64"), axis=0)
    missing = [name for name in stacking["candidates"] if name not in candidates]
    if missing:
        raise ValueError(f"the stacking needs candidates {missing}, which were not computed")
    z = float(stacking["intercept"]) + _matrix(candidates, stacking["candidates"]) @ np.asarray(
        stacking["weights"], dtype="float64"
    )
    return 1.0 / (1.0 + np.exp(-z))


def candidates_of(
    member_names: Sequence[str], member_probabilities: Sequence[Any], baseline_raw: Any
) -> dict[str, Any]:
    """{name: raw probability}: each member's and the baseline's (``combine``'s input)."""
    found = {
        name: np.asarray(values, dtype="float64")
        for name, values in zip(member_names, member_probabilities, strict=True)
    }
    if baseline_raw is not None:
        found[BASELINE] = np.asarray(baseline_raw, dtype="float64")
    return found


def describe(stacking: Mapping[str, Any] | None) -> str:
    """One line for the log: how ``prob_raw`` is made."""
    if not is_stacked(stacking):
        note = (stacking or {}).get("note")
        return f"prob_raw: {MEAN_SENTENCE}" + (f" ({note})" if note else "")
    weights = ", ".join(
        f"{name} {weight:.3f}"
        for name, weight in zip(stacking["candidates"], stacking["weights"], strict=True)
    )
    return (
        f"prob_raw: stacked — non-negative logistic regression on the candidates' logits "
        f"(weights {weights}; intercept {stacking['intercept']:.3f}), fitted on "
        f"{stacking['cells']} {stacking['fitted_on']}"
    )


def imagery_share(
    stacking: Mapping[str, Any] | None, statistics_names: Sequence[str] = ("stats_gbm",)
) -> float | None:
    """The share of the stack's signal carried by the image members (every candidate but the
    baseline and the statistics members); None without a stacking."""
    if not is_stacked(stacking):
        return None
    shares = stacking.get("contributions") or {}
    return float(
        sum(
            value
            for name, value in shares.items()
            if name != BASELINE and name not in statistics_names
        )
    )
