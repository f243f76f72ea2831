"""Per-cell and district intervals of the calibrated probability (one home for the rule).

``prob_low`` / ``prob_high`` bound the calibrated probability ``prob_mean`` of a
cell — "the share of such cells that are poor" — in a district the model may
never have seen. The rule (``METHOD``) is fitted on the validation cells with
their districts (``fit_interval``), stored as plain numbers in the model
package (``interval``, hashed with the manifest), and applied by one function
(``cell_interval``) in train, predict (chip store, rasters, Spark) and in each
cross-validation fold. It works on the combined raw probability ``prob_raw``,
whatever produced it.

Why not the members' spread: members trained on the same cells agree with one
another far more than with the truth. What a programme's reading of a cell
can be wrong by is (1) the calibration's own estimation error and (2) how
districts differ in how the signal relates to poverty — a shift the members
cannot see, which makes a new district's calibration differ from the average.

The rule (a random-intercept view of Platt scaling, estimated by district):
with ``l = logit(prob_raw)`` and the fitted Platt scaling ``η = a·l + b``,

- leave-one-district-out (LODO): for each validation district ``d``, Platt
  scaling refitted on the other districts' validation cells gives (a₋d, b₋d);
  the cluster jackknife covariance of (a, b) is
  ``Σ = (D − 1)/D · Σ_d (θ₋d − θ̄)(θ₋d − θ̄)ᵀ`` (calibration uncertainty, cells of a
  district correlated);
- the district's own offset ``δ_d`` solves Σ_{i∈d} σ(η₋d,i + δ) = k_d (its poor
  validation cells, kept within [½, n_d − ½]) with sampling variance
  ``v_d = 1 / Σ p(1 − p)``; the between-district variance ``τ²`` is its
  posterior mean in the normal–normal random-effects model ``δ_d ~ N(μ, v_d + τ²)``
  (μ flat, τ half-normal with scale ``TAU_PRIOR_SCALE`` on the logit scale — the
  weakly informative prior of Röver et al. 2021 for few studies; a 1-D grid
  integral, as the bayesmeta R package does). The DerSimonian–Laird estimate
  ``max(0, (Q − (D − 1)) / (Σw − Σw²/Σw))`` (``w = 1/v_d``, ``Q = Σ w_d (δ_d − δ̄_w)²``)
  is recorded beside it: with a handful of districts of a few dozen validation
  cells it is 0 in most draws even when districts differ by τ = 0.5 (prediction
  intervals built on it under-cover, Partlett & Riley 2017), while the posterior
  keeps the shift the data cannot rule out and follows the data when they are
  many (package version 1 used DerSimonian–Laird);
- districts differ in slope too (version 4): each district's relative slope shift ``ε_d``
  in ``logit p = η + δ + ε·(η − η̄)`` (η̄ the validation cells' mean calibrated logit; both
  by Newton–Raphson with an N(0, 1) ridge, which keeps a district without a poor cell
  finite) with its variance from the penalised information gives ``σ²_slope``, the
  posterior mean as for τ² (half-normal prior, scale ``SLOPE_PRIOR_SCALE``): a new
  district's share poor moves most at the ends of the scale, where an offset on the
  logit scale moves a probability least;
- a cell's interval on the logit scale is
  ``η ± sqrt(t² · [l 1] Σ [l 1]ᵀ + z² · (τ² + σ²_slope · (η − η̄)²))``,
  ``t`` the Student quantile of ``(1 + nominal)/2`` with D − 1 degrees of freedom
  for the jackknife's part (few districts: wider), ``z`` the normal quantile for the
  new district's shift — τ² is already averaged over its posterior, and the
  predictive distribution of a shift (a scale mixture of normals) has its
  central quantiles within ``z`` of its standard deviation — mapped through the
  logistic function (version 1 used ``t`` on both parts), and (version 4) at least the
  interval of its reliability bin's middle probability: the per-bin check asks a cell's
  interval to hold its bin's share poor, which a cell at the bin's edge shares with the rest;
- it is widened where needed to hold the observed share poor of cells with a
  similar probability, as the per-bin check asks (Mondrian split-conformal by
  reliability bin): per bin (``calibration.BINS``) of the validation cells'
  LODO-calibrated probability, ``q_b`` is the conformal quantile
  (the ⌈(n + 1)·nominal⌉-th smallest) of |s̃_b − cell's probability|, where
  ``s̃_b = p̄_b + sign(g)·sqrt(max(0, g² − s_b(1 − s_b)/n_b))`` is the bin's mean
  probability plus its miscalibration ``g = s_b − p̄_b`` (observed share minus
  mean probability) net of the sampling noise of a share of ``n_b`` validation
  cells — it holds the Platt curve's misfit and the bin's width; bins with
  fewer than ``MIN_BIN_CELLS`` validation cells use all cells' quantile.
  The interval is the union of the two: at least ``p ± q_b``.

Without districts (fewer than ``MIN_DISTRICTS`` with ``MIN_DISTRICT_CELLS``
validation cells each) the jackknife is over ``PSEUDO_GROUPS`` random groups of
cells, and τ² is still the posterior mean: from the offsets of the one or two
districts there are (against the calibration fitted on all the cells) and the
prior, or from the prior alone (E[τ²] = ``FEW_DISTRICTS_TAU_PRIOR_SCALE``², 1.0)
without any, σ²_slope likewise — the interval claims a district the model may never
have seen, and with no evidence on how districts differ it keeps the prior's (version 2
set τ² = 0 there: on the dim-lights case, three districts of which two validate each
fold, the lowest reliability bin was then held by 75 % of its cells for a nominal
90 %); since version 5 with the conservative scales (``FEW_DISTRICTS_...``). The note
says which. Without a usable calibration there is no interval rule
and the members' spread is kept (``spread_interval``), as in packages from
before this rule, which the log says.

District level (``district_intervals``, ``total_interval``): the cells of one
district share its calibration error, so their bounds are averaged or summed
(fully correlated, not shrinking with the number of cells); the labels of its
cells are independent given the probabilities, which adds the sampling error
of a share of n cells, ``z² Σ p(1 − p) / n²``, in quadrature to each side. The
interval holds the district's share poor (or its expected poor people, with
weights). Targeting sums the bounds over all the cells it counts (every cell
taken as correlated: conservative) and bounds a ratio such as its expected
coverage with the selected and the other cells moving in opposite directions
(``ratio_interval``).

How well the rule's intervals hold what they claim is measured apart, in
``core/validation/interval_coverage.py``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from . import calibration
from .training_settings import DEFAULT_NOMINAL, INTERVAL_METHOD, NOMINAL_RANGE

METHOD = INTERVAL_METHOD
# 5: fewer than MIN_DISTRICTS validation districts: the conservative priors (FEW_DISTRICTS_...);
# 4: districts' slopes differ too (σ²_slope), and a cell's interval holds its reliability bin's;
# 3: τ² also with fewer than MIN_DISTRICTS districts (the prior and the districts there are);
# 2: τ² the posterior mean under a half-normal prior (0 with fewer districts); 1: DerSimonian–Laird
METHOD_VERSION = 5
TAU_PRIOR_SCALE = (
    0.5  # half-normal prior scale of τ, logit scale (Röver et al. 2021: weakly informative)
)
# half-normal prior scale of σ_slope, the relative shift of a district's calibration slope: a
# district's slope within about ±50 % (two scales) of the average unless its cells say more
SLOPE_PRIOR_SCALE = 0.25
# Fewer than MIN_DISTRICTS validation districts cannot show how districts differ: the priors
# alone set the allowance, at the conservative scale (1.0 beside the weakly informative 0.5;
# Friede et al. 2017), the slope's doubled too. Three simulated districts differing by τ = 0.6:
# cells per bin 75 % -> 91 % of 90 %; not differing: 94 % -> 98 % (tests/test_intervals.py).
FEW_DISTRICTS_TAU_PRIOR_SCALE = 1.0
FEW_DISTRICTS_SLOPE_PRIOR_SCALE = 0.5
_SHIFT_RIDGE = 1.0  # N(0, 1) on a district's (offset, slope shift): finite with no poor cell
_TAU_GRID_POINTS = 4001
SPREAD_METHOD = "members-spread"  # the rule of packages from before METHOD
MIN_DISTRICTS = 3  # fewer validation districts: the jackknife over pseudo-groups of cells
MIN_DISTRICT_CELLS = 5  # a validation district with fewer cells is not used on its own
PSEUDO_GROUPS = 10
MIN_BIN_CELLS = 10
_NEWTON_STEPS = 50


def _nominal(nominal: float) -> float:
    low, high = NOMINAL_RANGE
    if not low <= float(nominal) <= high:
        raise ValueError(f"nominal coverage {nominal!r} outside {NOMINAL_RANGE}")
    return float(nominal)


def _platt_newton(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(slope, intercept) of a logistic regression of ``labels`` on one feature (Newton–Raphson)."""
    return _logistic_newton(np.column_stack([features, np.ones(len(features))]), labels)


def _logistic_newton(
    x: np.ndarray,
    labels: np.ndarray,
    offset: np.ndarray | float = 0.0,
    penalty: np.ndarray | None = None,
) -> np.ndarray:
    """Coefficients of ``logit p = offset + x·θ`` by Newton–Raphson, maximising the
    log-likelihood less ``θᵀ·penalty·θ / 2`` (None: none)."""
    penalty = np.zeros((x.shape[1], x.shape[1])) if penalty is None else penalty
    theta = np.zeros(x.shape[1])
    for _ in range(_NEWTON_STEPS):
        p = 1 / (1 + np.exp(-(offset + x @ theta)))
        gradient = x.T @ (labels - p) - penalty @ theta
        hessian = (x * (p * (1 - p))[:, None]).T @ x + penalty + 1e-9 * np.eye(len(theta))
        step = np.linalg.solve(hessian, gradient)
        theta = theta + step
        if np.max(np.abs(step)) < 1e-10:
            break
    return theta


def _offset(eta: np.ndarray, poor: float) -> tuple[float, float]:
    """δ with Σ σ(η + δ) = ``poor`` (one-dimensional Newton) and its variance 1 / Σ p(1 − p)."""
    delta = 0.0
    for _ in range(_NEWTON_STEPS):
        p = 1 / (1 + np.exp(-(eta + delta)))
        information = float(np.sum(p * (1 - p)))
        step = (poor - float(np.sum(p))) / max(information, 1e-12)
        delta += step
        if abs(step) < 1e-10:
            break
    p = 1 / (1 + np.exp(-(eta + delta)))
    return delta, 1 / max(float(np.sum(p * (1 - p))), 1e-12)


def _slope_shift(eta: np.ndarray, labels: np.ndarray, centre: float) -> tuple[float, float]:
    """A district's relative slope shift ε and its variance: logit p = η + δ + ε·(η − centre),
    (δ, ε) by Newton–Raphson with an N(0, 1) ridge on both (a district without a poor or a
    non-poor cell stays finite, its variance large); the variance from the penalised information."""
    x = np.column_stack([np.ones(len(eta)), eta - centre])
    ridge = np.eye(2) / _SHIFT_RIDGE**2
    theta = _logistic_newton(x, labels, eta, ridge)
    p = 1 / (1 + np.exp(-(eta + x @ theta)))
    information = (x * (p * (1 - p))[:, None]).T @ x + ridge
    return float(theta[1]), float(np.linalg.inv(information)[1, 1])


def dersimonian_laird(estimates: ArrayLike, variances: ArrayLike) -> float:
    """Between-group variance τ² of ``estimates`` with sampling ``variances`` (DerSimonian–Laird)."""
    estimates, variances = np.asarray(estimates, float), np.asarray(variances, float)
    if len(estimates) < 2:
        return 0.0
    weights = 1 / variances
    mean = np.sum(weights * estimates) / np.sum(weights)
    q = float(np.sum(weights * (estimates - mean) ** 2))
    denominator = float(np.sum(weights) - np.sum(weights**2) / np.sum(weights))
    return max(0.0, (q - (len(estimates) - 1)) / denominator) if denominator > 0 else 0.0


def _tau_log_posterior(
    taus: np.ndarray, estimates: np.ndarray, variances: np.ndarray, prior_scale: float
) -> np.ndarray:
    """log p(τ | offsets) up to a constant: the normal–normal model with μ integrated out under a
    flat prior (restricted likelihood) times a half-normal(prior_scale) prior on τ."""
    total = variances[None, :] + taus[:, None] ** 2
    weights = 1 / total
    mean = (weights * estimates).sum(axis=1) / weights.sum(axis=1)
    return (
        -0.5 * np.log(total).sum(axis=1)
        - 0.5 * np.log(weights.sum(axis=1))
        - 0.5 * (weights * (estimates[None, :] - mean[:, None]) ** 2).sum(axis=1)
        - taus**2 / (2 * prior_scale**2)
    )


def posterior_tau2(
    estimates: ArrayLike, variances: ArrayLike, prior_scale: float = TAU_PRIOR_SCALE
) -> float:
    """E[τ² | offsets]: the between-district variance averaged over its posterior (see module doc).

    With few districts, or districts of few cells, DerSimonian–Laird often says τ² = 0 although
    the data cannot rule out a sizeable shift; the posterior mean keeps what they cannot rule out.
    """
    estimates, variances = np.asarray(estimates, float), np.asarray(variances, float)
    if not len(estimates):
        return float(prior_scale**2)
    upper = 8 * prior_scale + 4 * float(np.std(estimates))
    taus = np.linspace(0.0, upper, _TAU_GRID_POINTS)
    log_density = _tau_log_posterior(taus, estimates, variances, prior_scale)
    density = np.exp(log_density - log_density.max())
    from scipy.integrate import trapezoid

    return float(trapezoid(density * taus**2, taus) / trapezoid(density, taus))


def _groups(
    districts: Sequence[Any] | np.ndarray | None, count: int, seed: int
) -> tuple[np.ndarray, bool]:
    """Each cell's group: its district where enough districts have enough cells, else pseudo-groups."""
    if districts is not None:
        names = _district_names(districts)
        usable, counts = np.unique(names[names != ""], return_counts=True)
        if int((counts >= MIN_DISTRICT_CELLS).sum()) >= MIN_DISTRICTS:
            return names, True
    rng = np.random.default_rng(seed)
    return rng.permutation(np.arange(count) % PSEUDO_GROUPS).astype(str), False


def fit_interval(
    raw: ArrayLike,
    labels: ArrayLike,
    districts: Sequence[Any] | np.ndarray | None,
    fitted: Mapping[str, Any] | None,
    nominal: float = DEFAULT_NOMINAL,
    seed: int = 0,
) -> dict[str, Any]:
    """The interval rule of the validation cells (plain numbers; see the module doc).

    ``raw``: the validation cells' combined raw probability; ``labels``; ``districts``
    (None or each cell's district); ``fitted``: the Platt scaling fitted on them
    (``calibration.fit_platt``). Without a usable calibration:
    ``{"method": SPREAD_METHOD, "note"}`` (the members' spread stays).
    """
    from scipy.stats import t as student

    nominal = _nominal(nominal)
    if not fitted or fitted.get("method") != "platt":
        return {
            "method": SPREAD_METHOD,
            "nominal": nominal,
            "note": "no usable calibration: the interval is the members' spread",
        }
    labels = np.asarray(labels, dtype="float64")
    features = calibration.logit(raw)
    groups, by_district = _groups(districts, len(labels), seed)
    names = [name for name in np.unique(groups) if name != ""]
    eta = fitted["slope"] * features + fitted["intercept"]
    thetas, offsets, variances = [], [], []
    slopes: list[tuple[float, float]] = []  # each district's slope shift and its variance
    centre = float(np.mean(eta))  # where a slope shift moves nothing
    held_out = eta.copy()  # each cell's LODO-calibrated logit
    for name in names:
        inside = groups == name
        rest = ~inside
        if (
            inside.sum() < (MIN_DISTRICT_CELLS if by_district else 1)
            or len(np.unique(labels[rest])) < 2
        ):
            continue
        theta = _platt_newton(features[rest], labels[rest])
        thetas.append(theta)
        held_out[inside] = theta[0] * features[inside] + theta[1]
        delta, variance = _district_offset(held_out[inside], labels[inside])
        offsets.append(delta)
        variances.append(variance)
        slopes.append(_slope_shift(held_out[inside], labels[inside], centre))
    count = len(thetas)
    jackknife = np.asarray(thetas).reshape(-1, 2)
    centred = jackknife - jackknife.mean(axis=0) if count else jackknife
    covariance = (count - 1) / count * centred.T @ centred if count > 1 else np.zeros((2, 2))
    if (
        not by_district
    ):  # how districts differ: the prior, and the offsets of the districts there are
        offsets, variances, slopes = _district_offsets(eta, labels, districts, centre)
    tau_scale, slope_scale = (
        (TAU_PRIOR_SCALE, SLOPE_PRIOR_SCALE)
        if by_district
        else (FEW_DISTRICTS_TAU_PRIOR_SCALE, FEW_DISTRICTS_SLOPE_PRIOR_SCALE)
    )
    tau2_dl = dersimonian_laird(offsets, variances) if len(offsets) > 1 else 0.0
    tau2 = posterior_tau2(offsets, variances, tau_scale)
    slope_var = posterior_tau2(
        [slope for slope, _ in slopes], [variance for _, variance in slopes], slope_scale
    )
    quantile = float(student.ppf((1 + nominal) / 2, max(count - 1, 1)))
    tau_quantile = _z(nominal)
    bins = _bin_half_widths(labels, 1 / (1 + np.exp(-held_out)), nominal)
    rule = {
        "method": METHOD,
        "version": METHOD_VERSION,
        "nominal": nominal,
        "quantile": quantile,
        "tau_quantile": tau_quantile,
        "covariance": [[float(value) for value in row] for row in covariance],
        "tau2": float(tau2),
        "tau2_dersimonian_laird": float(tau2_dl),
        "tau_prior": {"distribution": "half-normal", "scale": tau_scale},
        "slope_var": float(slope_var),
        "slope_centre": centre,
        "slope_prior": {"distribution": "half-normal", "scale": slope_scale},
        "bin_half_widths": bins,
        "groups": count,
        "grouped_by": "district" if by_district else "random cells",
        "tau_districts": len(offsets),  # the district offsets τ²'s posterior rests on
        "cells": int(len(labels)),
        "fitted_on": "validation cells",
    }
    if not by_district:
        evidence = (
            f"{len(offsets)} district offset{'s' if len(offsets) > 1 else ''} and the prior"
            if offsets
            else "the prior alone: no evidence either way"
        )
        rule["note"] = (
            f"fewer than {MIN_DISTRICTS} districts with {MIN_DISTRICT_CELLS}+ validation cells: "
            "the calibration's uncertainty from random groups of cells, and how districts "
            f"differ (τ² = {tau2:.3f}, σ²_slope = {slope_var:.3f}) from {evidence} "
            f"(conservative half-normal priors: τ scale {tau_scale}, σ_slope scale {slope_scale})"
        )
    return rule


def _district_offsets(
    eta: np.ndarray,
    labels: np.ndarray,
    districts: Sequence[Any] | np.ndarray | None,
    centre: float,
) -> tuple[list[float], list[float], list[tuple[float, float]]]:
    """Each district's calibration offset and its sampling variance, and its slope shift with
    its variance (districts of ``MIN_DISTRICT_CELLS``+ cells), against the calibration fitted
    on all the cells."""
    offsets: list[float] = []
    variances: list[float] = []
    slopes: list[tuple[float, float]] = []
    if districts is None:
        return offsets, variances, slopes
    names = _district_names(districts)
    for name in np.unique(names[names != ""]):
        inside = names == name
        if inside.sum() < MIN_DISTRICT_CELLS:
            continue
        delta, variance = _district_offset(eta[inside], labels[inside])
        offsets.append(delta)
        variances.append(variance)
        slopes.append(_slope_shift(eta[inside], labels[inside], centre))
    return offsets, variances, slopes


def _district_names(districts: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Each cell's district as text ("" where it has none)."""
    return np.asarray(
        [("" if value is None or value != value else str(value)) for value in districts]
    )


def _district_offset(eta: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """A district's offset and its variance, its poor cells kept within [½, n − ½]."""
    n = len(labels)
    return _offset(eta, min(max(float(labels.sum()), 0.5), n - 0.5))


def _bin_half_widths(
    labels: np.ndarray, probabilities: np.ndarray, nominal: float, bins: int = calibration.BINS
) -> list[float]:
    """Per reliability bin, the conformal quantile of |bin's share poor − probability|, the
    share being the bin's mean probability plus its miscalibration net of sampling noise."""
    index = np.clip((probabilities * bins).astype("int64"), 0, bins - 1)
    scores = np.zeros(len(labels))
    for number in range(bins):
        inside = index == number
        if inside.any():
            share, mean = labels[inside].mean(), probabilities[inside].mean()
            gap = share - mean  # miscalibration + the sampling noise of share (n cells)
            bias = math.copysign(
                math.sqrt(max(0.0, gap * gap - share * (1 - share) / inside.sum())), gap
            )
            scores[inside] = np.abs(mean + bias - probabilities[inside])
    overall = _conformal_quantile(scores, nominal)
    widths = []
    for number in range(bins):
        inside = index == number
        widths.append(
            float(_conformal_quantile(scores[inside], nominal))
            if inside.sum() >= MIN_BIN_CELLS
            else overall
        )
    return widths


def _conformal_quantile(scores: ArrayLike, nominal: float) -> float:
    """The ⌈(n + 1)·nominal⌉-th smallest score (split-conformal); the largest when n is small."""
    scores = np.sort(np.asarray(scores, dtype="float64"))
    if not len(scores):
        return 0.0
    rank = min(math.ceil((len(scores) + 1) * nominal), len(scores))
    return float(scores[rank - 1])


def spread_interval(
    raw: ArrayLike, disagreement: ArrayLike, fitted: Mapping[str, Any] | None
) -> tuple[np.ndarray, np.ndarray]:
    """The members'-spread rule of packages from before ``METHOD`` (``calibration.interval``)."""
    return calibration.interval(raw, disagreement, fitted)


def cell_interval(
    raw: ArrayLike,
    fitted: Mapping[str, Any] | None,
    rule: Mapping[str, Any] | None,
    disagreement: ArrayLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(prob_low, prob_high) of cells from their combined raw probability (see the module doc).

    ``fitted``: the Platt scaling; ``rule``: ``fit_interval``'s dict (None or
    ``SPREAD_METHOD``: the members' spread, ``disagreement``, as before).
    """
    raw = np.asarray(raw, dtype="float64")
    if not rule or rule.get("method") != METHOD or not fitted or fitted.get("method") != "platt":
        spread = np.zeros(len(raw)) if disagreement is None else disagreement
        return spread_interval(raw, spread, fitted)
    features = calibration.logit(raw)
    eta = fitted["slope"] * features + fitted["intercept"]
    half = _logit_half_width(eta, features, rule)
    low, high = 1 / (1 + np.exp(-(eta - half))), 1 / (1 + np.exp(-(eta + half)))
    probability = 1 / (1 + np.exp(-eta))
    bins = len(rule["bin_half_widths"])
    index = np.clip((probability * bins).astype("int64"), 0, bins - 1)
    if "slope_var" in rule:  # version 4: at least the interval of the bin's middle probability
        middle = calibration.logit((np.arange(bins) + 0.5) / bins)
        slope = fitted["slope"] or 1.0  # a flat calibration: any raw logit gives its value
        middle_half = _logit_half_width(middle, (middle - fitted["intercept"]) / slope, rule)
        low = np.minimum(low, (1 / (1 + np.exp(-(middle - middle_half))))[index])
        high = np.maximum(high, (1 / (1 + np.exp(-(middle + middle_half))))[index])
    width = np.asarray(rule["bin_half_widths"], dtype="float64")[index]
    low = np.clip(np.minimum(low, probability - width), 0, 1)
    high = np.clip(np.maximum(high, probability + width), 0, 1)
    return low, high


def _logit_half_width(eta: np.ndarray, features: np.ndarray, rule: Mapping[str, Any]) -> np.ndarray:
    """Half the interval of calibrated logits ``eta`` (of raw logits ``features``): the
    calibration's own part (Student's t), a new district's offset and, from version 4, its
    slope shift (normal quantile)."""
    covariance = np.asarray(rule["covariance"], dtype="float64")
    calibration_variance = (
        covariance[0, 0] * features**2 + 2 * covariance[0, 1] * features + covariance[1, 1]
    )
    shift_variance = (
        rule["tau2"] + rule.get("slope_var", 0.0) * (eta - rule.get("slope_centre", 0.0)) ** 2
    )
    tau_quantile = rule.get("tau_quantile", rule["quantile"])  # version 1: t on both parts
    return np.sqrt(
        np.maximum(
            rule["quantile"] ** 2 * calibration_variance + tau_quantile**2 * shift_variance, 0
        )
    )


def describe(rule: Mapping[str, Any] | None) -> str:
    """One sentence on how a package's intervals are made (for logs and reports)."""
    if not rule or rule.get("method") != METHOD:
        return (
            "prob_low–prob_high: the members' spread (calibrated prob_raw ∓ 1.96 × disagreement), "
            "which leaves out the calibration's uncertainty and how districts differ; its "
            "coverage is often far below 95 %"
        )
    return (
        f"prob_low–prob_high: {100 * rule['nominal']:.0f} % intervals of the calibrated probability "
        f"({METHOD}: Platt scaling's uncertainty and the variation between {rule['groups']} "
        f"{'districts' if rule['grouped_by'] == 'district' else 'groups of cells'} of the "
        f"validation cells, τ = {math.sqrt(rule['tau2']):.2f} on the logit scale"
        + (
            f", slope σ = {math.sqrt(rule['slope_var']):.2f} relative"
            if "slope_var" in rule
            else ""
        )
        + ")"
    )


def _z(nominal: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf((1 + nominal) / 2))


def total_interval(
    probability: ArrayLike,
    low: ArrayLike,
    high: ArrayLike,
    weights: ArrayLike | None = None,
    nominal: float = DEFAULT_NOMINAL,
) -> tuple[float, float, float]:
    """(expected, low, high) of Σ weights × label over some cells (e.g. expected poor people).

    The cells' bounds are summed — their calibration error taken as fully
    correlated, never shrinking with the number of cells — and the labels'
    sampling error given the probabilities, ``z² Σ w² p(1 − p)``, is added in
    quadrature to each side (z the normal quantile of the nominal level).
    """
    probability = np.asarray(probability, dtype="float64")
    weights = np.ones(len(probability)) if weights is None else np.asarray(weights, float)
    keep = np.isfinite(probability) & np.isfinite(weights) & (weights > 0)
    w, p = weights[keep], probability[keep]
    expected = float(np.sum(w * p))
    lower = float(np.sum(w * np.asarray(low, dtype="float64")[keep]))
    upper = float(np.sum(w * np.asarray(high, dtype="float64")[keep]))
    sampling = _z(nominal) ** 2 * float(np.sum(w**2 * p * (1 - p)))
    return (
        expected,
        max(0.0, expected - math.sqrt(max(expected - lower, 0.0) ** 2 + sampling)),
        min(float(np.sum(w)), expected + math.sqrt(max(upper - expected, 0.0) ** 2 + sampling)),
    )


def ratio_interval(
    part: tuple[float, float, float], rest: tuple[float, float, float]
) -> tuple[float | None, float | None]:
    """(low, high) of part / (part + rest) from the (expected, low, high) of each: the two taken
    as moving in opposite directions (e.g. the selected cells overstated, the others understated)."""
    _, part_low, part_high = part
    _, rest_low, rest_high = rest
    low = part_low / (part_low + rest_high) if part_low + rest_high > 0 else None
    high = part_high / (part_high + rest_low) if part_high + rest_low > 0 else None
    return low, high


def district_intervals(
    probability: ArrayLike,
    low: ArrayLike,
    high: ArrayLike,
    groups: ArrayLike,
    weights: ArrayLike | None = None,
    nominal: float = DEFAULT_NOMINAL,
) -> dict[str, dict[str, Any]]:
    """{group: {"cells", "share", "low", "high"}}: each group's expected share poor and its interval.

    ``total_interval`` of each group divided by its weight: bounds averaged (the
    calibration error is shared within a district, fully correlated) and widened
    by the sampling error of the share of its cells (independent labels), in
    quadrature on each side. ``weights``: people per cell (None: cells count alike).
    """
    probability = np.asarray(probability, dtype="float64")
    low, high = np.asarray(low, dtype="float64"), np.asarray(high, dtype="float64")
    weights = np.ones(len(probability)) if weights is None else np.asarray(weights, float)
    groups = np.asarray(groups).astype(str)
    result = {}
    for name in np.unique(groups):
        inside = (groups == name) & np.isfinite(probability) & (weights > 0)
        if not inside.any():
            continue
        total = float(weights[inside].sum())
        expected, lower, upper = total_interval(
            probability[inside], low[inside], high[inside], weights[inside], nominal
        )
        result[str(name)] = {
            "cells": int(inside.sum()),
            "share": expected / total,
            "low": lower / total,
            "high": upper / total,
        }
    return result
