"""The statistics of small area estimation: direct estimates, Fay–Herriot, MSE (pure numpy/scipy).

Direct estimate of a district (a domain of the survey): the weighted share of
poor households ``p̂_d = Σ w y / Σ w`` over its households. Its design-based
variance is the Taylor linearisation of that ratio with the primary sampling
units (clusters) as PSUs within strata, sampled with replacement (no finite
population correction): the linearised values ``z_k = w_k (y_k − p̂_d) / Ŵ_d``
(0 outside the district) are summed per PSU, and
``v(p̂_d) = Σ_h n_h / (n_h − 1) Σ_i (z_hi − z̄_h)²`` over the ``n_h`` PSUs of
each stratum — every PSU of the stratum, also those without a household of the
district (domain estimation, as R's ``survey`` package and samplics do).
Strata with a single PSU add nothing (and are reported).

Generalised variance function (GVF): a district whose variance is zero (all or
none of its households poor) or rests on fewer than two clusters has no usable
variance of its own. Its variance is predicted from its sample size and the
design effect of the others: ``deff × p̄ (1 − p̄) / n_d`` on the proportion scale
(``deff`` the median design effect ``v / (p (1 − p) / n)`` of the districts with a
usable variance, ``p̄`` the national direct estimate, ``n_d`` its households) and
``deff / (4 n_d)`` on the arcsin scale (where the variance does not depend on the
share).

Fay–Herriot (1979): ``θ̂_d = x_d'β + u_d + e_d`` with ``u_d ~ N(0, σ²_u)`` and
``e_d ~ N(0, ψ_d)``, ψ_d the (known) design variance. σ²_u by REML (Fisher
scoring, the score and information of Rao & Molina 2015 §6.2.1, without m × m
matrices), β by GLS. EBLUP ``θ̃_d = γ_d θ̂_d + (1 − γ_d) x_d'β̂`` with
``γ_d = σ²_u / (σ²_u + ψ_d)``; districts without survey get the synthetic
``x_d'β̂``. MSE (Prasad–Rao, with Datta–Lahiri's REML form):
``g1 + g2 + 2 g3`` with ``g1 = γ ψ``, ``g2 = (1 − γ)² x'(X'V⁻¹X)⁻¹x`` and
``g3 = (1 − γ)² / (σ²_u + ψ) · 2 / Σ (σ²_u + ψ_j)⁻²``; for a synthetic
estimate ``σ²_u + x'(X'V⁻¹X)⁻¹x``. Parametric bootstrap (González-Manteiga et
al. 2008): draws of the model with the estimated parameters, refitted, MSE =
mean squared difference of the estimates from the drawn true values, on the
scale the estimates are published on.

Arcsin: ``asin(√p)`` stabilises the variance of a share; the back-transformed
estimate is bias-corrected: the expected value of ``sin²(θ)`` under
``θ ~ N(θ̃, g1)`` (N(x'β̂, σ²_u) for a synthetic estimate), θ held inside
[0, π/2] (the transformation's range), as emdi does (Hadam et al. 2020).
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:
    from ..progress import Reporter


Z95 = 1.959963984540054  # two-sided 95 % normal quantile


# --- direct estimates -----------------------------------------------------------------------------


@dataclasses.dataclass
class DirectEstimates:
    estimate: np.ndarray  # weighted share per district (NaN without households)
    variance: np.ndarray  # Taylor-linearised design variance
    households: np.ndarray  # households per district
    clusters: np.ndarray  # PSUs with at least one household of the district
    weight: np.ndarray  # sum of the weights
    single_psu_strata: int  # strata with one PSU (they add no variance)


def direct_estimates(
    poor: ArrayLike,
    weights: ArrayLike,
    district: ArrayLike,
    districts: int,
    psu: ArrayLike,
    stratum: ArrayLike | None = None,
) -> DirectEstimates:
    """Weighted share of poor households and its Taylor variance, per district.

    ``poor`` 1/0 per household, ``weights`` > 0, ``district`` the household's
    district code 0..districts-1 (−1: outside every district: still part of the
    design), ``psu`` any ids of the primary sampling units, ``stratum`` any ids
    of the strata (None: one stratum). PSU ids are taken within their stratum.
    """
    poor = np.asarray(poor, dtype="float64")
    weights = np.asarray(weights, dtype="float64")
    district = np.asarray(district, dtype="int64")
    strata_codes = (
        np.zeros(len(poor), dtype="int64")
        if stratum is None
        else np.unique(np.asarray(stratum), return_inverse=True)[1].astype("int64")
    )
    psu_codes = np.unique(
        np.stack([strata_codes, np.unique(np.asarray(psu), return_inverse=True)[1]]),
        axis=1,
        return_inverse=True,
    )[1].ravel()
    n_psu = int(psu_codes.max()) + 1 if len(psu_codes) else 0
    psu_stratum = np.zeros(n_psu, dtype="int64")
    psu_stratum[psu_codes] = strata_codes
    psus_per_stratum = np.bincount(psu_stratum, minlength=int(strata_codes.max(initial=0)) + 1)

    inside = district >= 0
    d, w, y, unit = district[inside], weights[inside], poor[inside], psu_codes[inside]
    total = np.bincount(d, weights=w, minlength=districts)
    households = np.bincount(d, minlength=districts)
    with np.errstate(invalid="ignore", divide="ignore"):
        estimate = np.bincount(d, weights=w * y, minlength=districts) / total
        z = w * (y - estimate[d]) / total[d]
    # PSU totals of z per district
    key = d * n_psu + unit
    keys, where = np.unique(key, return_inverse=True)
    totals = np.bincount(where, weights=z)
    key_district, key_psu = keys // n_psu, keys % n_psu
    key_stratum = psu_stratum[key_psu]
    clusters = np.bincount(key_district, minlength=districts)
    # per (district, stratum): Σ t² and Σ t over the PSUs of the district
    n_strata = len(psus_per_stratum)
    pair = key_district * n_strata + key_stratum
    pairs, pair_where = np.unique(pair, return_inverse=True)
    squares = np.bincount(pair_where, weights=totals**2)
    sums = np.bincount(pair_where, weights=totals)
    n_h = psus_per_stratum[pairs % n_strata].astype("float64")
    usable = n_h > 1
    contribution = np.zeros(len(pairs))
    contribution[usable] = (
        n_h[usable] / (n_h[usable] - 1) * (squares[usable] - sums[usable] ** 2 / n_h[usable])
    )
    variance = np.bincount(pairs // n_strata, weights=contribution, minlength=districts)
    variance = np.where(households > 0, np.maximum(variance, 0.0), np.nan)
    return DirectEstimates(
        estimate=estimate,
        variance=variance,
        households=households,
        clusters=clusters,
        weight=total,
        single_psu_strata=int((psus_per_stratum == 1).sum()),
    )


def gvf_design_effect(
    estimate: np.ndarray,
    variance: np.ndarray,
    households: np.ndarray,
    reliable: np.ndarray,
    share: float,
) -> tuple[np.ndarray, float]:
    """Smoothed variances ``deff × p̄ (1 − p̄) / n`` for every district, and ``deff``.

    ``deff``: the median design effect of the ``reliable`` districts (1 when none);
    ``p̄``: ``share``, the survey's national share, so that a district whose households
    are all poor or none poor still gets the variance its sample size implies.
    """
    effects = design_effects(estimate, variance, households)
    usable = np.asarray(reliable, dtype=bool) & np.isfinite(effects)
    deff = float(np.median(effects[usable])) if usable.any() else 1.0
    n = np.maximum(np.asarray(households, dtype="float64"), 1.0)
    return deff * share * (1 - share) / n, deff


def design_effects(estimate: ArrayLike, variance: ArrayLike, households: ArrayLike) -> np.ndarray:
    """``v / (p (1 − p) / n)``: the design effect of each district (NaN where undefined)."""
    p = np.asarray(estimate, dtype="float64")
    n = np.asarray(households, dtype="float64")
    with np.errstate(invalid="ignore", divide="ignore"):
        srs = p * (1 - p) / n
        return np.where(srs > 0, np.asarray(variance, dtype="float64") / srs, np.nan)


# --- arcsin ----------------------------------------------------------------------------------------


def arcsin_sqrt(p: ArrayLike) -> np.ndarray:
    return np.arcsin(np.sqrt(np.clip(np.asarray(p, dtype="float64"), 0.0, 1.0)))


def sin_squared_expectation(mean: ArrayLike, variance: ArrayLike) -> np.ndarray:
    """E[sin²(clip(θ, 0, π/2))] for θ ~ N(mean, variance): the bias-corrected back-transform.

    Exact: the mass below 0 counts 0, above π/2 counts 1, and in between
    ``∫ (1 − cos 2θ)/2 φ`` has a closed form through the complex error function.
    """
    from scipy.special import erf, ndtr

    mean = np.asarray(mean, dtype="float64")
    sd = np.sqrt(np.maximum(np.asarray(variance, dtype="float64"), 0.0))
    result = np.sin(np.clip(mean, 0.0, math.pi / 2)) ** 2  # no spread: the plain back-transform
    spread = sd > 1e-12
    if not spread.any():
        return result
    m, s = mean[spread], sd[spread]
    a, b = (0.0 - m) / s, (math.pi / 2 - m) / s
    inside = ndtr(b) - ndtr(a)
    # ∫_a^b cos(2(m + s t)) φ(t) dt = Re[e^{2im − 2s²} (Φ(b − 2is) − Φ(a − 2is))]
    shift = 2j * s

    def complex_cdf(x: Any) -> Any:
        return 0.5 * (1 + erf((x - shift) / math.sqrt(2)))

    cosine = np.real(np.exp(2j * m - 2 * s**2) * (complex_cdf(b) - complex_cdf(a)))
    result = result.copy()
    result[spread] = (inside - cosine) / 2 + (1 - ndtr(b))
    return np.clip(result, 0.0, 1.0)


# --- Fay–Herriot ------------------------------------------------------------------------------------


@dataclasses.dataclass
class FayHerriotFit:
    sigma2_u: float
    beta: np.ndarray
    beta_cov: np.ndarray  # (X'V⁻¹X)⁻¹, X the design matrix, at σ²_u
    iterations: int
    converged: bool
    at_zero: bool  # σ²_u estimated at its boundary 0


def _gls(y: np.ndarray, design: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    weights = 1.0 / v
    a = design.T @ (design * weights[:, None])
    a_inverse = np.linalg.inv(a)
    beta = a_inverse @ (design.T @ (weights * y))
    return beta, a_inverse


def _reml_score_information(
    y: np.ndarray, design: np.ndarray, psi: np.ndarray, sigma2: float
) -> tuple[float, float]:
    """(REML score, Fisher information) of σ²_u; P = V⁻¹ − V⁻¹X(X'V⁻¹X)⁻¹X'V⁻¹ kept implicit."""
    v = sigma2 + psi
    d = 1.0 / v
    beta, a_inverse = _gls(y, design, v)
    py = d * (y - design @ beta)
    xd2x = design.T @ (design * (d**2)[:, None])
    xd3x = design.T @ (design * (d**3)[:, None])
    trace_p = d.sum() - np.trace(a_inverse @ xd2x)
    m2 = a_inverse @ xd2x
    trace_pp = (d**2).sum() - 2 * np.trace(a_inverse @ xd3x) + np.trace(m2 @ m2)
    return -0.5 * (trace_p - py @ py), 0.5 * trace_pp


def fit_fay_herriot(
    y: np.ndarray, design: np.ndarray, psi: np.ndarray, tol: float = 1e-12, max_iter: int = 200
) -> FayHerriotFit:
    """σ²_u by REML (Fisher scoring, held at ≥ 0) and β by GLS."""
    y = np.asarray(y, dtype="float64")
    design = np.asarray(design, dtype="float64")
    psi = np.asarray(psi, dtype="float64")
    ols, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ ols
    sigma2 = max(float(residual @ residual) / max(len(y) - design.shape[1], 1) - psi.mean(), 0.0)
    sigma2 = max(sigma2, 1e-4 * float(np.median(psi)))
    converged, at_zero, iterations = False, False, 0
    for iterations in range(1, max_iter + 1):  # noqa: B007 (the count is reported)
        score, information = _reml_score_information(y, design, psi, sigma2)
        new = sigma2 + score / information
        if new <= 0:
            zero_score, _ = _reml_score_information(y, design, psi, 0.0)
            if zero_score <= 0:
                sigma2, converged, at_zero = 0.0, True, True
                break
            new = sigma2 / 2
        change = abs(new - sigma2) / max(abs(sigma2), 1e-300)
        sigma2 = new
        if change < tol:
            converged = True
            break
    beta, beta_cov = _gls(y, design, sigma2 + psi)
    return FayHerriotFit(float(sigma2), beta, beta_cov, iterations, converged, at_zero)


@dataclasses.dataclass
class SmallAreaPredictions:
    estimate: np.ndarray  # EBLUP (sampled) or synthetic (not sampled)
    mse: np.ndarray  # analytical (Prasad–Rao / Datta–Lahiri)
    gamma: np.ndarray  # shrinkage factor (0 for synthetic)
    synthetic: np.ndarray  # x'β̂ for every district
    g1: np.ndarray  # γψ (σ²_u for synthetic): the variance of θ given the data


def predict_fay_herriot(
    fit: FayHerriotFit, y: np.ndarray, design: np.ndarray, psi: np.ndarray, sampled: np.ndarray
) -> SmallAreaPredictions:
    """EBLUP and its MSE for the ``sampled`` districts, synthetic estimate and its MSE for the others.

    ``y``/``psi`` only matter where ``sampled``; ``design`` covers every district.
    """
    design = np.asarray(design, dtype="float64")
    sampled = np.asarray(sampled, dtype=bool)
    synthetic = design @ fit.beta
    g2_term = np.einsum("ij,jk,ik->i", design, fit.beta_cov, design)
    sigma2 = fit.sigma2_u
    estimate = synthetic.copy()
    mse = sigma2 + g2_term
    gamma = np.zeros(len(design))
    g1 = np.full(len(design), sigma2)
    if sampled.any():
        psi_s = np.asarray(psi, dtype="float64")[sampled]
        v = sigma2 + psi_s
        gamma_s = sigma2 / v
        g3_scale = 2.0 / np.sum(1.0 / v**2)
        estimate[sampled] = (
            gamma_s * np.asarray(y, dtype="float64")[sampled] + (1 - gamma_s) * synthetic[sampled]
        )
        g1[sampled] = gamma_s * psi_s
        g2 = (1 - gamma_s) ** 2 * g2_term[sampled]
        g3 = (1 - gamma_s) ** 2 * g3_scale / v
        mse[sampled] = g1[sampled] + g2 + 2 * g3
        gamma[sampled] = gamma_s
    return SmallAreaPredictions(estimate, mse, gamma, synthetic, g1)


def back_transform(predictions: SmallAreaPredictions, transform: str) -> np.ndarray:
    """Estimates on the proportion scale: as they are, or the bias-corrected arcsin back-transform."""
    if transform == "arcsin":
        return sin_squared_expectation(predictions.estimate, predictions.g1)
    return predictions.estimate


def bootstrap_mse(
    fit: FayHerriotFit,
    design: np.ndarray,
    psi: np.ndarray,
    sampled: np.ndarray,
    draws: int,
    seed: int,
    transform: str = "none",
    reporter: Reporter | None = None,
) -> np.ndarray:
    """Parametric bootstrap MSE of the published estimates (proportion scale), every district."""
    rng = np.random.default_rng(seed)
    design = np.asarray(design, dtype="float64")
    sampled = np.asarray(sampled, dtype=bool)
    psi = np.where(sampled, np.asarray(psi, dtype="float64"), np.nan)
    mean = design @ fit.beta
    sd_u = math.sqrt(fit.sigma2_u)
    squared = np.zeros(len(design))
    for draw in range(draws):
        if reporter is not None and draw % 10 == 0:
            reporter.check_canceled()
            reporter.progress(100.0 * draw / draws)
        theta = mean + sd_u * rng.standard_normal(len(design))
        y = np.where(
            sampled, theta + np.sqrt(np.nan_to_num(psi)) * rng.standard_normal(len(design)), 0
        )
        refit = fit_fay_herriot(y[sampled], design[sampled], psi[sampled])
        predicted = predict_fay_herriot(refit, y, design, psi, sampled)
        if transform == "arcsin":
            truth = np.sin(np.clip(theta, 0.0, math.pi / 2)) ** 2
        else:
            truth = theta
        squared += (back_transform(predicted, transform) - truth) ** 2
    return squared / draws


# --- diagnostics and benchmarking ----------------------------------------------------------------


def random_effects(
    fit: FayHerriotFit, y: np.ndarray, design: np.ndarray, psi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """EBLUP of the random effects ``γ (θ̂ − x'β̂)`` and standardised residuals of the sampled districts."""
    y, design, psi = (np.asarray(a, dtype="float64") for a in (y, design, psi))
    residual = y - design @ fit.beta
    v = fit.sigma2_u + psi
    return fit.sigma2_u / v * residual, residual / np.sqrt(v)


def normality_test(values: np.ndarray) -> tuple[float, float] | tuple[None, None]:
    """Shapiro–Wilk (statistic, p-value) of ``values``; (None, None) with fewer than 3 or no spread."""
    from scipy.stats import shapiro

    values = np.asarray(values, dtype="float64")
    values = values[np.isfinite(values)]
    if len(values) < 3 or np.ptp(values) <= 0:
        return None, None
    result = shapiro(values)
    return float(result.statistic), float(result.pvalue)


def explained_share(sigma2_model: float, y: np.ndarray, psi: np.ndarray) -> float | None:
    """R² of the map: 1 − σ²_u(with the map) / σ²_u(intercept only), in [0, 1] (None when σ²_u(0) is 0)."""
    base = fit_fay_herriot(y, np.ones((len(y), 1)), psi).sigma2_u
    if base <= 0:
        return None
    return float(min(max(1.0 - sigma2_model / base, 0.0), 1.0))


def ratio_benchmark(estimates: np.ndarray, sizes: np.ndarray, national: float) -> float | None:
    """The factor that makes Σ size × estimate / Σ size equal ``national`` (None when undefined)."""
    estimates = np.asarray(estimates, dtype="float64")
    sizes = np.asarray(sizes, dtype="float64")
    use = np.isfinite(estimates) & np.isfinite(sizes) & (sizes > 0)
    aggregate = np.sum(sizes[use] * estimates[use]) / np.sum(sizes[use]) if use.any() else 0.0
    if not aggregate > 0 or not np.isfinite(national):
        return None
    return float(national / aggregate)
