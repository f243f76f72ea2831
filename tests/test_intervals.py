"""prob_low/prob_high (core/model/intervals.py): nominal coverage out of fold, by simulation with a
known truth over many seeds, against independent computations, and in the package."""

import math

import numpy as np
import pytest

from povmap_qgis.core.model import calibration, intervals
from povmap_qgis.core.validation import interval_coverage

NOMINAL = 0.9
FOLDS = 6
SEEDS = 20


def world(seed, districts=24, shift=0.6, slope_spread=0.3, noise=0.5):
    """Cells in districts that differ in how the signal relates to poverty (intercept ``shift`` and
    relative slope ``slope_spread`` on the logit scale, drawn per district): three members see
    the signal with noise on a balanced (overstated) scale and never the district."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(80, 300, size=districts)
    district = np.repeat(np.arange(districts), sizes)
    signal = rng.normal(size=len(district))
    offset = rng.normal(0, shift, districts)
    slope = 1 + rng.normal(0, slope_spread, districts)
    truth = 1 / (1 + np.exp(-(slope[district] * signal - 0.4 + offset[district])))
    labels = (rng.random(len(district)) < truth).astype(int)
    seen = signal + rng.normal(0, noise, len(district))
    members = np.array(
        [
            1 / (1 + np.exp(-(1.3 * seen + 0.4 + rng.normal(0, 0.15, len(district)))))
            for _ in range(3)
        ]
    )
    return np.array([f"d{k:02d}" for k in district]), labels, members


def out_of_fold(seed, validation_share=0.1, **world_settings):
    """Leave-districts-out folds as crossvalidate makes them: calibration and interval rule fitted
    on a random validation share of the other folds' cells, applied to the fold's cells."""
    districts, labels, members = world(seed, **world_settings)
    rng = np.random.default_rng(seed + 1)
    names = np.unique(districts)
    fold_of = dict(zip(names, rng.permutation(len(names)) % FOLDS, strict=True))
    folds = np.array([fold_of[name] for name in districts])
    raw, spread = members.mean(axis=0), members.std(axis=0)
    keys = ("p", "low", "high", "old_low", "old_high", "v3_low", "v3_high", "flat_low", "flat_high")
    found = {key: np.full(len(labels), np.nan) for key in keys}
    found["fold"] = folds
    for fold in range(FOLDS):
        test = folds == fold
        others = np.flatnonzero(~test)
        validation = rng.choice(others, int(len(others) * validation_share), replace=False)
        fitted = calibration.fit_platt(raw[validation], labels[validation])
        rule = intervals.fit_interval(
            raw[validation], labels[validation], districts[validation], fitted, NOMINAL
        )
        found["p"][test] = calibration.calibrate(raw[test], fitted)
        found["low"][test], found["high"][test] = intervals.cell_interval(
            raw[test], fitted, rule, spread[test]
        )
        found["old_low"][test], found["old_high"][test] = calibration.interval(
            raw[test], spread[test], fitted
        )
        version_3 = {key: value for key, value in rule.items() if key != "slope_var"}
        found["v3_low"][test], found["v3_high"][test] = intervals.cell_interval(
            raw[test], fitted, version_3
        )
        no_shift = dict(rule, tau2=0.0, slope_var=0.0)  # no allowance for a new district
        found["flat_low"][test], found["flat_high"][test] = intervals.cell_interval(
            raw[test], fitted, no_shift
        )
    return districts, labels, found


def coverages(seeds=SEEDS, **settings):
    """Per seed: per-bin coverage (bins within each fold, as crossvalidate checks; "bins": each
    fold's bins holding >= 30 cells, as (cells, covered) per bin; "pooled": every fold's cells in
    one set of bins), district coverage, widths, of the rule ("new"), the members' spread ("old")
    and rule version 3 ("v3": no slope shift), and the rule without any district shift ("flat")."""
    result = {"new": [], "old": [], "v3": [], "flat": []}
    for seed in range(seeds):
        districts, labels, found = out_of_fold(seed, **settings)
        for tag in result:
            low, high = (
                found["low" if tag == "new" else f"{tag}_low"],
                found["high" if tag == "new" else f"{tag}_high"],
            )
            checked = interval_coverage.coverage(
                labels, found["p"], low, high, districts, NOMINAL, folds=found["fold"]
            )
            bins = {}
            for fold in range(FOLDS):
                inside = found["fold"] == fold
                rows = calibration.interval_coverage(
                    labels[inside], found["p"][inside], low[inside], high[inside]
                )["bins"]
                for row in rows:
                    if row["n"] >= 30:
                        bins.setdefault(row["low"], []).append((row["n"], row["covered"]))
            result[tag].append(
                {
                    "cells": checked["coverage"],
                    "pooled": checked["pooled_coverage"],
                    "bins": bins,
                    "districts": checked["districts"]["coverage"],
                    "width": checked["mean_width"],
                }
            )
    return result


def summary(runs):
    """Means over the seeds; per bin the cells-weighted coverage of the folds' bins of 30+ cells,
    for bins with 20 or more such fold-bins over the seeds (fewer say little: a fold-bin's cells
    share one observed share, so they are covered or missed nearly together)."""
    bins = {}
    for run in runs:
        for low, rows in run["bins"].items():
            bins.setdefault(low, []).extend(rows)
    return {
        "cells": np.mean([run["cells"] for run in runs]),
        "pooled": np.mean([run["pooled"] for run in runs]),
        "bins": {
            low: sum(n * covered for n, covered in rows) / sum(n for n, _ in rows)
            for low, rows in bins.items()
            if len(rows) >= 20
        },
        "districts": np.mean([run["districts"] for run in runs]),
        "width": np.mean([run["width"] for run in runs]),
    }


@pytest.fixture(scope="module")
def shifted():
    return coverages()


def test_intervals_reach_their_nominal_coverage_out_of_fold_when_districts_differ(shifted):
    found = summary(shifted["new"])
    # measured over 20 seeds, bins within each fold: cells 0.952 (each bin of the folds' bins of
    # 30+ cells 0.94-1.00), districts 0.883, mean width 0.42 (rule version 3: 0.924, 0.91-0.95,
    # 0.860, width 0.39); every fold's cells in one set of bins: 0.999
    assert found["districts"] >= NOMINAL - 0.05
    assert found["districts"] <= NOMINAL + 0.05  # not wider than the districts need
    assert NOMINAL - 0.05 <= found["cells"] <= NOMINAL + 0.06
    for low, covered in found["bins"].items():
        assert covered >= NOMINAL - 0.05, (low, covered)
    assert len(found["bins"]) >= 6


def test_every_folds_cells_in_one_set_of_bins_cannot_see_how_a_new_district_differs(shifted):
    """The rule without any allowance for a new district (τ² = σ²_slope = 0): pooled over the
    folds its intervals hold nearly every bin's share — each fold was calibrated on the other
    folds' districts, so the districts' differences from their calibration cancel in a bin fed by
    all folds — while each fold's own bins, and the districts, show it far short. Hence the per-bin
    check bins within each fold."""
    flat = summary(shifted["flat"])
    # measured: pooled 0.989, per fold 0.647, districts 0.567
    assert flat["pooled"] >= NOMINAL
    assert flat["cells"] < NOMINAL - 0.15
    assert flat["districts"] < NOMINAL - 0.2
    assert summary(shifted["new"])["pooled"] > NOMINAL + 0.05  # wider than pooled bins need


def test_the_members_spread_falls_far_short_on_the_shifted_case(shifted):
    """Today's rule (calibrated mean ∓ 1.96 × members' spread) fails both checks here."""
    found = summary(shifted["old"])
    # measured: cells 0.18 (bins 0.15-0.22; pooled over the folds 0.44), districts 0.33, mean
    # width 0.05
    assert found["cells"] < NOMINAL - 0.3
    assert found["districts"] < NOMINAL - 0.3
    assert found["width"] < summary(shifted["new"])["width"] / 4


def test_without_a_shift_coverage_holds_and_the_intervals_are_narrower(shifted):
    found = summary(coverages(seeds=15, shift=0.0, slope_spread=0.0)["new"])
    # measured: districts 0.99, cells 0.967 (every bin 0.96-0.99), mean width 0.25 (0.42 with
    # the shift; version 3: 0.21) — over nominal: validation districts of about 20 cells cannot
    # show that districts do not differ, and the priors keep the shift they cannot rule out
    assert found["districts"] >= NOMINAL - 0.05
    assert found["cells"] >= NOMINAL - 0.05
    for low, covered in found["bins"].items():
        assert covered >= NOMINAL - 0.05, (low, covered)
    assert found["width"] < 0.6 * summary(shifted["new"])["width"]


def test_when_districts_differ_in_slope_the_extreme_bins_hold_where_version_3_fell_short():
    """Districts whose calibration slopes differ by ±70 % (offsets by 0.2): a new district's
    share poor at the ends of the scale moves most. Version 3 (offsets only) — measured over
    10 seeds, bins within each fold: lowest bin 0.73, highest 0.73 of the cells, width 0.25;
    version 4 (the districts' slope shifts, and each cell at least its bin's middle interval):
    0.89 / 0.87 (cells 0.934), width 0.29; districts 0.98 / 0.99."""
    runs = coverages(seeds=10, slope_spread=0.7, shift=0.2)
    version_3, found = summary(runs["v3"]), summary(runs["new"])
    assert min(version_3["bins"].values()) < NOMINAL - 0.1
    for low, covered in found["bins"].items():
        assert covered >= NOMINAL - 0.05, (low, covered)
    assert found["districts"] >= NOMINAL - 0.05
    assert found["width"] < 1.3 * version_3["width"]


def test_few_districts_widen_the_interval_and_keep_the_coverage():
    """Seven districts (six folds: five to learn from), as in the sample project."""
    found = summary(coverages(seeds=20, districts=7)["new"])
    # measured: districts 0.94, cells 0.885 (every bin >= 0.86), mean width 0.52 (version 3:
    # 0.91, 0.85, 0.49)
    assert found["districts"] >= NOMINAL - 0.05
    assert found["cells"] >= NOMINAL - 0.05


def three_districts(seeds=20, **world_settings):
    """Three districts, one per fold: mean over seeds of the cells covered per bin (bins within
    each fold, here within each district), of the districts covered, and the mean width."""
    runs = []
    for seed in range(seeds):
        districts, labels, found = out_of_fold(
            seed, validation_share=0.3, districts=3, **world_settings
        )
        checked = interval_coverage.coverage(
            labels, found["p"], found["low"], found["high"], districts, NOMINAL, folds=found["fold"]
        )
        runs.append((checked["coverage"], checked["districts"]["coverage"], checked["mean_width"]))
    return np.mean(runs, axis=0)


def test_with_two_validation_districts_the_conservative_priors_keep_the_shift_they_cannot_see():
    """Three districts, one per fold: each fold's rule sees two validation districts, too few
    for the leave-one-district-out jackknife (random groups of cells instead) and too few to
    show how districts differ. Rule version 2 then set τ² = 0 — measured over 40 seeds:
    districts 0.57, cells per bin 0.75, width 0.25 (with every fold's cells in one set of
    bins); version 3 took τ² from the two districts' offsets and the weakly informative prior
    (scale 0.5); version 4 added their slope shifts (scale 0.25) and the bins' middle
    intervals. With bins within each fold, version 4 covered 0.77 of the cells and 0.87 of
    the districts, width 0.44 (20 seeds; 0.75, 0.85 and 0.44 over 40): short, as the true τ,
    0.6, exceeds the prior's 0.5. Version 5 takes the conservative scales there (1.0 and 0.5):
    0.92 of the cells, 0.97 of the districts, width 0.61 (40 seeds: 0.91, 0.97, 0.62); where
    districts do not differ at all it errs wide: 0.98 of the cells, width 0.57 (version 4:
    0.94, 0.41) — two validation districts cannot tell the two cases apart."""
    cells, covered_districts, width = three_districts()
    assert cells >= NOMINAL - 0.05  # version 4: 0.77
    assert covered_districts >= NOMINAL
    assert width < 0.7
    cells, covered_districts, width = three_districts(shift=0.0, slope_spread=0.0)
    assert cells >= NOMINAL and covered_districts == 1.0
    assert width < 0.65  # wider than needed: the cost of not knowing


def test_venn_abers_intervals_alone_do_not_hold_the_shift():
    """What exists: Venn–Abers (venn-abers package) p0–p1 intervals on the same validation cells
    are valid for exchangeable cells, not for new districts; they are far too narrow here."""
    from venn_abers import VennAbers

    shares = []
    for seed in range(5):
        districts, labels, members = world(seed)
        raw = members.mean(axis=0)
        rng = np.random.default_rng(seed)
        names = np.unique(districts)
        learn = np.isin(districts, rng.permutation(names)[:18])
        validation = rng.choice(np.flatnonzero(learn), 400, replace=False)
        fitted = calibration.fit_platt(raw[validation], labels[validation])
        test = ~learn
        venn = VennAbers().fit(
            np.column_stack([1 - raw[validation], raw[validation]]), labels[validation]
        )
        _, bounds = venn.predict_proba(np.column_stack([1 - raw[test], raw[test]]))
        checked = interval_coverage.coverage(
            labels[test],
            calibration.calibrate(raw[test], fitted),
            bounds.min(axis=1),
            bounds.max(axis=1),
            districts[test],
            NOMINAL,
        )
        shares.append(checked["districts"]["coverage"])
    assert np.mean(shares) < NOMINAL - 0.3


def posterior_mean_tau2_by_quadrature(offsets, variances, prior_scale):
    """E[τ² | y] of the normal–normal random-effects model, y_d ~ N(μ, v_d + τ²), μ flat, τ
    half-normal(prior_scale), written out from Röver (2020, J. Stat. Softw. 93(6), bayesmeta) and integrated
    with scipy's adaptive quadrature: p(τ | y) ∝ p(τ) Π (v_d + τ²)^(-1/2) (Σ w_d)^(-1/2)
    exp(-½ Σ w_d (y_d − μ̂)²), w_d = 1 / (v_d + τ²), μ̂ = Σ w_d y_d / Σ w_d."""
    from scipy.integrate import quad

    def log_density(tau):
        weights = 1 / (variances + tau * tau)
        mean = np.sum(weights * offsets) / np.sum(weights)
        return (
            0.5 * np.sum(np.log(weights))
            - 0.5 * math.log(np.sum(weights))
            - 0.5 * np.sum(weights * (offsets - mean) ** 2)
            - tau * tau / (2 * prior_scale**2)
        )

    peak = max(log_density(tau) for tau in np.linspace(0, 10 * prior_scale, 201))
    density = lambda tau: math.exp(log_density(tau) - peak)  # noqa: E731
    normaliser = quad(density, 0, math.inf, limit=200)[0]
    return quad(lambda tau: tau * tau * density(tau), 0, math.inf, limit=200)[0] / normaliser


def test_the_posterior_tau2_keeps_the_shift_few_districts_cannot_rule_out():
    """Few small districts: DerSimonian–Laird says τ² = 0 in most draws although τ = 0.5; the
    posterior mean never does, and with many large districts it follows the data (near 0)."""
    rng = np.random.default_rng(0)
    few, many = [], []
    for _ in range(100):
        variances = np.full(6, 1 / (25 * 0.22))  # six districts of 25 validation cells
        offsets = rng.normal(0, np.sqrt(variances + 0.25))
        few.append(
            (
                intervals.dersimonian_laird(offsets, variances),
                intervals.posterior_tau2(offsets, variances),
            )
        )
        variances = np.full(50, 1 / (100 * 0.22))
        offsets = rng.normal(0, np.sqrt(variances))
        many.append(intervals.posterior_tau2(offsets, variances))
    few = np.array(few)
    assert np.mean(few[:, 0] == 0) > 0.05 and np.all(few[:, 1] > 0.04)
    assert np.mean(many) < 0.02
    case = (np.array([0.3, -0.2, 0.1, 0.5, -0.4]), np.array([0.2, 0.15, 0.3, 0.25, 0.2]))
    assert intervals.posterior_tau2(*case) == pytest.approx(
        posterior_mean_tau2_by_quadrature(*case, 0.5), rel=1e-4
    )


def test_the_rule_matches_a_recomputation_with_scikit_learn_statsmodels_and_scipy():
    """Every number of fit_interval and cell_interval written out again with other libraries:
    leave-one-district-out Platt fits (scikit-learn), the district offsets (scipy's root finder),
    τ² (statsmodels' DerSimonian–Laird; the posterior mean by quadrature), the jackknife and
    the Student quantile (scipy)."""
    from scipy.optimize import brentq
    from scipy.stats import norm
    from scipy.stats import t as student
    from sklearn.linear_model import LogisticRegression
    from statsmodels.stats.meta_analysis import combine_effects

    districts, labels, members = world(3, districts=8)
    rng = np.random.default_rng(0)
    rows = rng.choice(len(labels), 600, replace=False)
    raw, labels, districts = members.mean(axis=0)[rows], labels[rows], districts[rows]
    fitted = calibration.fit_platt(raw, labels)
    rule = intervals.fit_interval(raw, labels, districts, fitted, NOMINAL)
    assert rule["method"] == "district-calibration" and rule["groups"] == 8

    feature = np.log(raw / (1 - raw))
    thetas, offsets, variances, slopes = [], [], [], []
    held_out = np.empty(len(raw))
    centre = float(np.mean(fitted["slope"] * np.log(raw / (1 - raw)) + fitted["intercept"]))
    for name in np.unique(districts):
        inside = districts == name
        model = LogisticRegression(C=1e12, tol=1e-12, max_iter=10000).fit(
            feature[~inside].reshape(-1, 1), labels[~inside]
        )
        theta = np.array([model.coef_[0][0], model.intercept_[0]])
        thetas.append(theta)
        eta = theta[0] * feature[inside] + theta[1]
        held_out[inside] = 1 / (1 + np.exp(-eta))
        poor = min(max(labels[inside].sum(), 0.5), inside.sum() - 0.5)
        delta = brentq(
            lambda d, eta=eta, poor=poor: np.sum(1 / (1 + np.exp(-(eta + d)))) - poor, -20, 20
        )
        p = 1 / (1 + np.exp(-(eta + delta)))
        offsets.append(delta)
        variances.append(1 / np.sum(p * (1 - p)))
        slopes.append(penalised_slope_shift(eta, labels[inside], centre))
    thetas = np.array(thetas)
    jackknife = (len(thetas) - 1) / len(thetas) * np.cov(thetas.T, bias=True) * len(thetas)
    assert np.asarray(rule["covariance"]) == pytest.approx(jackknife, rel=1e-5, abs=1e-9)
    offsets, variances = np.array(offsets), np.array(variances)
    tau2_dl = combine_effects(offsets, variances, method_re="dl").tau2
    assert rule["tau2_dersimonian_laird"] == pytest.approx(tau2_dl, rel=1e-6, abs=1e-12)
    tau2 = posterior_mean_tau2_by_quadrature(offsets, variances, intervals.TAU_PRIOR_SCALE)
    assert rule["tau2"] == pytest.approx(tau2, rel=1e-4)
    slope_var = posterior_mean_tau2_by_quadrature(
        np.array([value for value, _ in slopes]),
        np.array([variance for _, variance in slopes]),
        intervals.SLOPE_PRIOR_SCALE,
    )
    assert rule["slope_centre"] == pytest.approx(centre)
    assert rule["slope_var"] == pytest.approx(slope_var, rel=1e-4)
    quantile = student.ppf((1 + NOMINAL) / 2, 7)
    assert rule["quantile"] == pytest.approx(quantile)

    # the bins' conformal half-widths, written out with pandas
    import pandas

    frame = pandas.DataFrame({"p": held_out, "y": labels})
    frame["bin"] = np.clip(np.floor(frame["p"] * 10), 0, 9).astype(int)
    grouped = frame.groupby("bin")
    share, mean = grouped["y"].transform("mean"), grouped["p"].transform("mean")
    gap = share - mean
    noise = share * (1 - share) / grouped["y"].transform("size")
    bias = np.sign(gap) * np.sqrt(np.maximum(gap**2 - noise, 0))
    frame["score"] = (mean + bias - frame["p"]).abs()

    def conformal(scores):
        ordered = np.sort(scores)
        return ordered[min(math.ceil((len(ordered) + 1) * NOMINAL), len(ordered)) - 1]

    overall = conformal(frame["score"].to_numpy())
    for number, width in enumerate(rule["bin_half_widths"]):
        scores = frame.loc[frame["bin"] == number, "score"].to_numpy()
        wanted = conformal(scores) if len(scores) >= 10 else overall
        assert width == pytest.approx(wanted, abs=1e-9), number

    # a cell's interval: logit-scale half-width (calibration, offset and slope shift), at
    # least its bin's middle probability's interval, then at least p ± its bin's half-width
    def bounds(eta):
        x = (eta - fitted["intercept"]) / fitted["slope"]
        half = math.sqrt(
            quantile**2 * (jackknife[0, 0] * x * x + 2 * jackknife[0, 1] * x + jackknife[1, 1])
            + norm.ppf((1 + NOMINAL) / 2) ** 2 * (tau2 + slope_var * (eta - centre) ** 2)
        )
        return 1 / (1 + math.exp(-(eta - half))), 1 / (1 + math.exp(-(eta + half)))

    for value in (0.02, 0.05, 0.3, 0.5, 0.8, 0.97):
        x = math.log(value / (1 - value))
        eta = fitted["slope"] * x + fitted["intercept"]
        p = 1 / (1 + math.exp(-eta))
        number = min(int(p * 10), 9)
        middle = math.log((number + 0.5) / (9.5 - number))
        (cell_low, cell_high), (bin_low, bin_high) = bounds(eta), bounds(middle)
        width = rule["bin_half_widths"][number]
        low = max(0.0, min(cell_low, bin_low, p - width))
        high = min(1.0, max(cell_high, bin_high, p + width))
        found = intervals.cell_interval([value], fitted, rule)
        assert (found[0][0], found[1][0]) == pytest.approx((low, high), abs=1e-6), value


def penalised_slope_shift(eta, labels, centre):
    """(ε, its variance): logit p = η + δ + ε(η − centre) maximising the log-likelihood less
    (δ² + ε²)/2 (scipy's minimiser on the written-out objective); the variance from the inverse
    of the penalised information X'WX + I at the optimum."""
    from scipy.optimize import minimize

    x = np.column_stack([np.ones(len(eta)), eta - centre])

    def objective(theta):
        linear = eta + x @ theta
        return np.sum(np.logaddexp(0, linear) - labels * linear) + theta @ theta / 2

    theta = minimize(objective, np.zeros(2), method="BFGS", options={"gtol": 1e-10}).x
    p = 1 / (1 + np.exp(-(eta + x @ theta)))
    information = (x * (p * (1 - p))[:, None]).T @ x + np.eye(2)
    return theta[1], np.linalg.inv(information)[1, 1]


def test_without_districts_how_districts_differ_comes_from_the_prior_and_the_districts_there_are():
    """No districts: τ² is the prior's mean (fewer than three districts: the conservative
    half-normal scale 1.0, E[τ²] = 1). One district: the restricted likelihood of one offset is
    flat in τ, so the same. Two districts: the posterior mean written out with scipy's
    quadrature over the two offsets."""
    from scipy.integrate import quad
    from scipy.optimize import brentq

    districts, labels, members = world(1)
    raw = members.mean(axis=0)[:500]
    fitted = calibration.fit_platt(raw, labels[:500])
    rule = intervals.fit_interval(raw, labels[:500], None, fitted, NOMINAL)
    assert rule["grouped_by"] == "random cells" and rule["tau_districts"] == 0
    assert intervals.FEW_DISTRICTS_TAU_PRIOR_SCALE == 1.0
    assert rule["tau2"] == pytest.approx(1.0, rel=1e-3)
    assert rule["tau_prior"]["scale"] == 1.0 and rule["slope_prior"]["scale"] == 0.5
    assert "prior alone" in rule["note"] and "conservative" in rule["note"]
    one = np.where(np.arange(500) < 300, "A", None)
    rule_one = intervals.fit_interval(raw, labels[:500], one, fitted, NOMINAL)
    assert rule_one["tau_districts"] == 1
    assert rule_one["tau2"] == pytest.approx(1.0, rel=1e-3)
    two = np.where(np.arange(500) < 250, "A", "B")
    rule_two = intervals.fit_interval(raw, labels[:500], two, fitted, NOMINAL)
    assert rule_two["grouped_by"] == "random cells" and rule_two["tau_districts"] == 2
    eta = fitted["slope"] * calibration.logit(raw) + fitted["intercept"]
    estimates, variances = [], []
    for name in ("A", "B"):
        inside = two == name
        found = labels[:500][inside].sum()
        delta = brentq(
            lambda d, eta=eta[inside], found=found: (1 / (1 + np.exp(-(eta + d)))).sum() - found,
            -20,
            20,
        )
        p = 1 / (1 + np.exp(-(eta[inside] + delta)))
        estimates.append(delta)
        variances.append(1 / (p * (1 - p)).sum())
    estimates, variances = np.array(estimates), np.array(variances)

    def density(tau):  # restricted likelihood of the two offsets times the half-normal prior
        total = variances + tau**2
        weights = 1 / total
        mean = (weights * estimates).sum() / weights.sum()
        return np.exp(
            -0.5 * np.log(total).sum()
            - 0.5 * np.log(weights.sum())
            - 0.5 * (weights * (estimates - mean) ** 2).sum()
            - tau**2 / (2 * 1.0**2)  # the conservative half-normal prior, scale 1.0
        )

    expected = quad(lambda t: t * t * density(t), 0, 10)[0] / quad(density, 0, 10)[0]
    assert rule_two["tau2"] == pytest.approx(expected, rel=1e-3)
    assert "2 district offsets and the prior" in rule_two["note"]
    unusable = intervals.fit_interval(raw, labels[:500], None, {"method": "none"}, NOMINAL)
    assert unusable["method"] == intervals.SPREAD_METHOD
    spread = np.full(3, 0.05)
    assert np.allclose(
        intervals.cell_interval(raw[:3], {"method": "none"}, unusable, spread),
        calibration.interval(raw[:3], spread, {"method": "none"}),
    )


def test_a_districts_interval_averages_its_cells_bounds_and_adds_the_sampling_error():
    """Hand case: bounds averaged (fully correlated), z² Σ p(1 − p)/n² added in quadrature."""
    from scipy.stats import norm

    probability = np.array([0.2, 0.4, 0.6, 0.5])
    low = np.array([0.1, 0.3, 0.5, 0.2])
    high = np.array([0.3, 0.6, 0.7, 0.9])
    groups = np.array(["a", "a", "a", "b"])
    found = intervals.district_intervals(probability, low, high, groups, nominal=0.9)
    z = norm.ppf(0.95)
    share, lower, upper = 0.4, 0.3, 1.6 / 3
    sampling = z * z * (0.16 + 0.24 + 0.24) / 9
    assert found["a"]["share"] == pytest.approx(share)
    wanted = share - math.sqrt((share - lower) ** 2 + sampling)  # -0.05: clipped at 0
    assert wanted < 0 and found["a"]["low"] == 0.0
    assert found["a"]["high"] == pytest.approx(share + math.sqrt((upper - share) ** 2 + sampling))
    assert found["b"]["high"] == 1.0  # 0.5 + sqrt(0.4² + z²·0.25) > 1, clipped
    wide = intervals.district_intervals(probability[:3], low[:3], high[:3], groups[:3], None, 0.5)
    z = norm.ppf(0.75)
    assert wide["a"]["low"] == pytest.approx(share - math.sqrt(0.01 + z * z * 0.64 / 9))
    weighted = intervals.district_intervals(probability, low, high, groups, [1, 1, 2, 1], 0.9)
    assert weighted["a"]["share"] == pytest.approx((0.2 + 0.4 + 1.2) / 4)
    checked = interval_coverage.district_coverage([0, 1, 0, 1], probability, low, high, groups, 0.9)
    # a: observed 1/3 inside; b: observed 1 inside [0, 1]
    assert checked["coverage"] == 1.0 and checked["districts"] == 2
    assert [row["observed"] for row in checked["table"]] == pytest.approx([1 / 3, 1.0])


def test_coverage_warns_when_a_check_is_more_than_five_points_short():
    probability = np.array([0.25] * 10)
    labels = np.array([1] * 5 + [0] * 5)  # bin share 0.5
    low, high = probability - 0.01, probability + 0.01
    found = interval_coverage.coverage(labels, probability, low, high, np.array(["a"] * 10), 0.9)
    assert found["coverage"] == 0.0 and found["nominal"] == 0.9
    assert len(found["warnings"]) == 2 and "more than 5 points short" in found["warnings"][0]


def test_predict_applies_the_packages_rule_and_an_older_package_keeps_the_spread_saying_so():
    """prediction.trust_fields: the one place predict (chips, rasters, Spark) makes the fields."""
    import json

    from povmap_qgis.core.model.prediction import trust_fields
    from povmap_qgis.core.progress import RecordingReporter

    districts, labels, members = world(2)
    raw, spread = members.mean(axis=0), members.std(axis=0)
    fitted = calibration.fit_platt(raw[:800], labels[:800])
    rule = intervals.fit_interval(raw[:800], labels[:800], districts[:800], fitted, NOMINAL)
    manifest = {"calibration": fitted, "interval": rule, "manifest_sha256": "-", "baseline": None}
    ensemble = {"prob_mean": raw[800:900], "disagreement": spread[800:900]}
    reporter = RecordingReporter()
    fields, metadata = trust_fields(manifest, None, ensemble, reporter)
    low, high = intervals.cell_interval(raw[800:900], fitted, rule)
    assert np.allclose(fields["prob_low"], low, atol=1e-5)
    assert np.allclose(fields["prob_high"], high, atol=1e-5)
    assert json.loads(metadata["povmap_interval"]) == rule
    assert any("district-calibration" in message for message in reporter.infos)

    older = {key: value for key, value in manifest.items() if key != "interval"}
    reporter = RecordingReporter()
    fields, metadata = trust_fields(older, None, ensemble, reporter)
    low, high = calibration.interval(raw[800:900], spread[800:900], fitted)
    assert np.allclose(fields["prob_low"], low, atol=1e-5)
    assert np.allclose(fields["prob_high"], high, atol=1e-5)
    assert json.loads(metadata["povmap_interval"]) == {"method": "members-spread"}
    assert any("has no interval rule" in message for message in reporter.infos)


@pytest.mark.parametrize("nominal", [0.3, 1.0, True, "0.9"])
def test_a_nominal_coverage_outside_its_range_is_refused_before_any_work(nominal, tmp_path):
    from povmap_qgis.core.errors import PovmapInputError
    from povmap_qgis.core.model.training import TrainOptions, train
    from povmap_qgis.core.validation.crossvalidation import CrossValidateOptions, crossvalidate

    paths = {"chips_path": str(tmp_path / "none.chips"), "grid_path": str(tmp_path / "g.gpkg")}
    with pytest.raises(PovmapInputError) as caught:
        crossvalidate(
            CrossValidateOptions(
                **paths,
                metrics_path=str(tmp_path / "cv.json"),
                output_grid_path=str(tmp_path / "cv.gpkg"),
                nominal=nominal,
            )
        )
    assert caught.value.parameter == "NOMINAL" and "between 0.5 and 0.99" in str(caught.value)
    with pytest.raises(PovmapInputError) as caught:
        train(TrainOptions(**paths, output_path=str(tmp_path / "m.povmodel"), nominal=nominal))
    assert caught.value.parameter == "NOMINAL"
    assert list(tmp_path.iterdir()) == []
