"""Design-based accuracy of a verification sample: the estimators against Olofsson et al. (2014)'s
worked example, against samplics on a hand case with strata that are not the map classes, and by
simulation from a finite population with a known truth (coverage of the 95 % intervals)."""

import numpy as np
import pytest

from povmap_qgis.core.verification import design
from povmap_qgis.core.verification.estimators import (
    accuracy_estimates,
    error_matrix,
    ratio_estimate,
    targeting_estimates,
)

# Olofsson, Foody, Herold, Stehman, Woodcock, Wulder (2014), Good practices for estimating area
# and assessing accuracy of land change, Remote Sensing of Environment 148: 42-57, section 5
# (the example): sample counts (rows: map class, columns: reference class; deforestation,
# forest gain, stable forest, stable non-forest) and mapped areas in 30 m pixels.
OLOFSSON_COUNTS = np.array([[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]])
OLOFSSON_PIXELS = (200_000, 150_000, 3_200_000, 6_450_000)
# Their published estimates: user's and producer's accuracy ± 1.96 SE per class, overall
# accuracy ± 1.96 SE, and the error-adjusted area in pixels ± 1.96 SE.
PUBLISHED_USERS = [(0.88, 0.07), (0.73, 0.10), (0.93, 0.04), (0.96, 0.02)]
PUBLISHED_PRODUCERS = [(0.75, 0.21), (0.85, 0.23), (0.93, 0.03), (0.96, 0.01)]
PUBLISHED_OVERALL = (0.95, 0.02)
PUBLISHED_DEFORESTATION_PIXELS = (235_086, 68_418)
PUBLISHED_AREA_HA = [(21_158, 6_158), (11_686, 3_756), (285_770, 15_510), (581_386, 16_282)]
HECTARES_PER_PIXEL = 0.09


def olofsson_sample():
    strata, reference = [], []
    for mapped in range(4):
        for observed in range(4):
            strata += [mapped] * OLOFSSON_COUNTS[mapped, observed]
            reference += [observed] * OLOFSSON_COUNTS[mapped, observed]
    sizes = dict(enumerate(OLOFSSON_PIXELS))
    return np.array(strata), np.array(reference), sizes


def test_olofsson_2014_example_is_reproduced():
    strata, reference, sizes = olofsson_sample()
    overall = ratio_estimate(strata, sizes, strata == reference)
    assert overall.estimate == pytest.approx(PUBLISHED_OVERALL[0], abs=0.005)
    assert 1.96 * overall.se == pytest.approx(PUBLISHED_OVERALL[1], abs=0.005)
    for k in range(4):
        hit = (strata == k) & (reference == k)
        users = ratio_estimate(strata, sizes, hit, strata == k)
        producers = ratio_estimate(strata, sizes, hit, reference == k)
        area = ratio_estimate(strata, sizes, reference == k)
        total = sum(OLOFSSON_PIXELS)
        assert users.estimate == pytest.approx(PUBLISHED_USERS[k][0], abs=0.005)
        assert 1.96 * users.se == pytest.approx(PUBLISHED_USERS[k][1], abs=0.005)
        assert producers.estimate == pytest.approx(PUBLISHED_PRODUCERS[k][0], abs=0.005)
        if k in (0, 2):
            assert 1.96 * producers.se == pytest.approx(PUBLISHED_PRODUCERS[k][1], abs=0.005)
        # forest gain and stable non-forest: the paper prints ± 0.23 and ± 0.01 where its own
        # equation (7) on its own counts gives 0.254 and 0.018 (other implementations agree);
        # the written-out equation is checked below instead
        hectares = area.estimate * total * HECTARES_PER_PIXEL
        assert hectares == pytest.approx(PUBLISHED_AREA_HA[k][0], abs=2)
        assert 1.96 * area.se * total * HECTARES_PER_PIXEL == pytest.approx(
            PUBLISHED_AREA_HA[k][1], rel=0.001
        )
    deforestation = ratio_estimate(strata, sizes, reference == 0)
    assert deforestation.estimate * sum(OLOFSSON_PIXELS) == pytest.approx(
        PUBLISHED_DEFORESTATION_PIXELS[0], abs=1
    )
    assert 1.96 * deforestation.se * sum(OLOFSSON_PIXELS) == pytest.approx(
        PUBLISHED_DEFORESTATION_PIXELS[1], rel=0.001
    )


def test_producers_accuracy_matches_olofsson_equation_7_written_out():
    """Their equations (2) and (7) (no finite population correction) on the example's counts."""
    strata, reference, sizes = olofsson_sample()
    n = OLOFSSON_COUNTS.astype(float)
    size = np.array(OLOFSSON_PIXELS, dtype=float)
    row = n.sum(axis=1)
    for j in range(4):
        estimated = (size[:, None] * n / row[:, None]).sum(axis=0)  # N̂_.j, eq. (2) in pixels
        producers = size[j] * n[j, j] / row[j] / estimated[j]
        users = n[j, j] / row[j]
        others = sum(
            size[i] ** 2 * n[i, j] / row[i] * (1 - n[i, j] / row[i]) / (row[i] - 1)
            for i in range(4)
            if i != j
        )
        variance = (
            size[j] ** 2 * (1 - producers) ** 2 * users * (1 - users) / (row[j] - 1)
            + producers**2 * others
        ) / estimated[j] ** 2
        ours = ratio_estimate(
            strata, sizes, (strata == j) & (reference == j), reference == j, fpc=False
        )
        assert ours.estimate == pytest.approx(producers, rel=1e-12)
        assert ours.se == pytest.approx(np.sqrt(variance), rel=1e-12)


def hand_case():
    """Six strata (class × uncertainty tercile), a few visits each, unequal sizes."""
    strata = np.array(
        ["poor_narrow"] * 5
        + ["poor_middle"] * 4
        + ["poor_wide"] * 6
        + ["not_poor_narrow"] * 4
        + ["not_poor_middle"] * 5
        + ["not_poor_wide"] * 3
    )
    mapped = np.array([1] * 15 + [0] * 12)
    observed = np.array(
        [1, 1, 1, 0, 1]
        + [1, 0, 1, 1]
        + [0, 1, 0, 1, 1, 0]
        + [0, 0, 0, 0]
        + [0, 1, 0, 0, 1]
        + [1, 0, 1]
    )
    people = np.arange(27) * 13.0 + 50
    sizes = {
        "poor_narrow": 40,
        "poor_middle": 31,
        "poor_wide": 52,
        "not_poor_narrow": 60,
        "not_poor_middle": 45,
        "not_poor_wide": 20,
    }
    return strata, sizes, mapped, observed, people


def test_hand_case_matches_samplics_stratified_ratio_estimator():
    from samplics.estimation import TaylorEstimator
    from samplics.utils.types import PopParam

    strata, sizes, mapped, observed, people = hand_case()
    counts = {name: int(np.sum(strata == name)) for name in sizes}
    weights = np.array([sizes[name] / counts[name] for name in strata])
    fpc = {name: 1 - counts[name] / sizes[name] for name in sorted(sizes)}  # samplics: sorted
    ours = accuracy_estimates(strata, sizes, mapped, observed, people=people, map_poor_share=0.5)
    cases = {
        "overall_accuracy": ((mapped == observed), np.ones(27)),
        "users_accuracy_poor": ((mapped & observed), mapped),
        "producers_accuracy_poor": ((mapped & observed), observed),
        "poor_share": (observed, np.ones(27)),
        "poor_people_share": (people * observed, people),
    }
    for name, (y, x) in cases.items():
        reference = TaylorEstimator(PopParam.ratio)
        reference.estimate(
            y=y.astype(float), x=x.astype(float), samp_weight=weights, stratum=strata, fpc=fpc
        )
        assert ours[name].estimate == pytest.approx(float(reference.point_est), rel=1e-12), name
        assert ours[name].se == pytest.approx(float(reference.stderror), rel=1e-10), name
        assert ours[name].low < ours[name].estimate < ours[name].high
    bias = ours["map_bias"]
    assert bias.estimate == pytest.approx(0.5 - ours["poor_share"].estimate)
    assert (bias.low, bias.high) == pytest.approx(
        (0.5 - ours["poor_share"].high, 0.5 - ours["poor_share"].low)
    )
    matrix = np.array(error_matrix(strata, sizes, mapped, observed))
    assert matrix.sum() == pytest.approx(1.0)
    assert matrix[0, 0] + matrix[1, 1] == pytest.approx(ours["overall_accuracy"].estimate)
    assert matrix[:, 0].sum() == pytest.approx(ours["poor_share"].estimate)


def test_difference_of_ratios_sharing_a_denominator_is_the_ratio_of_the_difference():
    """With x1 = x2 the linearised difference R1 − R2 is exactly the ratio (y1 − y2) / x, whose
    estimate and SE samplics confirmed above: an identity, not our own numbers twice."""
    from povmap_qgis.core.verification.estimators import ratio_difference

    strata, sizes, mapped, observed, people = hand_case()
    first, second = people * observed, people * mapped
    difference = ratio_difference(strata, sizes, (first, people), (second, people))
    direct = ratio_estimate(strata, sizes, first - second, people, share=False)
    assert difference.estimate == pytest.approx(direct.estimate, rel=1e-12)
    assert difference.se == pytest.approx(direct.se, rel=1e-12)


def test_targeting_errors_match_samplics():
    from samplics.estimation import TaylorEstimator
    from samplics.utils.types import PopParam

    strata, sizes, mapped, observed, _ = hand_case()
    selected = np.array([1] * 9 + [0] * 18)  # the narrow and middle poor cells enrolled
    ours = targeting_estimates(strata, sizes, selected, observed)
    counts = {name: int(np.sum(strata == name)) for name in sizes}
    weights = np.array([sizes[name] / counts[name] for name in strata])
    fpc = {name: 1 - counts[name] / sizes[name] for name in sorted(sizes)}  # samplics: sorted
    for name, (y, x) in {
        "inclusion_error": (selected * (1 - observed), selected),
        "exclusion_error": ((1 - selected) * observed, observed),
    }.items():
        reference = TaylorEstimator(PopParam.ratio)
        reference.estimate(
            y=y.astype(float), x=x.astype(float), samp_weight=weights, stratum=strata, fpc=fpc
        )
        assert ours[name].estimate == pytest.approx(float(reference.point_est), rel=1e-12)
        assert ours[name].se == pytest.approx(float(reference.stderror), rel=1e-10)


def test_allocation_is_proportional_with_a_minimum_per_stratum():
    sizes = {"a": 1000, "b": 30, "c": 3, "d": 500}
    allocation = design.allocate(sizes, 100)
    assert sum(allocation.values()) == 100
    assert allocation["c"] == 3  # all of a stratum smaller than the minimum
    assert allocation["b"] == design.MIN_PER_STRATUM  # proportional would give 2
    # the rest goes to the stratum furthest below its share n·N_h/N: a and d end equally short
    short = {name: 100 * sizes[name] / 1533 - allocation[name] for name in ("a", "d")}
    assert abs(short["a"] - short["d"]) < 1
    assert design.allocate(sizes, 4) == {"a": 5, "b": 5, "c": 3, "d": 5}  # minimums win


def test_sample_size_from_half_width_is_the_textbook_formula():
    # n0 = 1.96² × 0.7 × 0.3 / 0.05² = 322.7; with N = 2000: 322.7 / (1 + 321.7 / 2000) = 278.0
    assert design.sample_size_for_half_width(0.05, 0.7, 2000) == 278
    assert design.sample_size_for_half_width(0.05, 0.7, 10**9) == 323


def test_min_distance_keeps_drawn_cells_apart():
    rng = np.random.default_rng(3)
    centres = rng.uniform(0, 20_000, size=(800, 2))
    strata = np.where(rng.random(800) < 0.4, "poor", "not_poor")
    chosen, drawn = design.draw(strata, {"poor": 15, "not_poor": 20}, 7, centres, 1500.0)
    assert drawn == {"poor": 15, "not_poor": 20}
    gaps = np.hypot(*(centres[chosen][:, None, :] - centres[chosen][None, :, :]).transpose(2, 0, 1))
    assert gaps[~np.eye(len(chosen), dtype=bool)].min() >= 1500.0
    again, _ = design.draw(strata, {"poor": 15, "not_poor": 20}, 7, centres, 1500.0)
    assert again.tolist() == chosen.tolist()  # the seed makes it repeatable


def test_simulated_coverage_of_the_95_percent_intervals():
    """A finite population of 3,000 cells with a known truth, 600 seeded stratified samples
    (class × uncertainty tercile, 150 visits): how often each interval holds the truth."""
    rng = np.random.default_rng(2014)
    cells = 3000
    latent = rng.normal(size=cells)
    truth = (latent + rng.normal(scale=0.9, size=cells) > 0.3).astype(int)
    mapped = (1 / (1 + np.exp(-latent)) > 0.45).astype(int)
    width = np.abs(latent) * -0.1 + rng.uniform(0.2, 0.5, size=cells)  # wider near the threshold
    people = rng.gamma(2.0, 300.0, size=cells)
    strata = design.strata_labels(mapped, width)
    sizes = {name: int(np.sum(strata == name)) for name in np.unique(strata)}
    allocation = design.allocate(sizes, 150)
    true = {
        "users_accuracy_poor": truth[mapped == 1].mean(),
        "producers_accuracy_poor": truth[mapped == 1].sum() / truth.sum(),
        "poor_share": truth.mean(),
        "poor_people_share": (people * truth).sum() / people.sum(),
        "overall_accuracy": (mapped == truth).mean(),
        "precision_minus_random": truth[mapped == 1].mean() - truth.mean(),
    }
    repetitions = 600
    covered = dict.fromkeys(true, 0)
    for seed in range(repetitions):
        chosen, _ = design.draw(strata, allocation, seed)
        estimates = accuracy_estimates(
            strata[chosen], sizes, mapped[chosen], truth[chosen], people=people[chosen]
        )
        for name, value in true.items():
            covered[name] += estimates[name].low <= value <= estimates[name].high
    coverage = {name: count / repetitions for name, count in covered.items()}
    print("coverage", coverage)
    for name in ("users_accuracy_poor", "producers_accuracy_poor", "poor_share"):
        assert 0.93 <= coverage[name] <= 0.97, (name, coverage)
    for name in ("poor_people_share", "overall_accuracy", "precision_minus_random"):
        assert 0.92 <= coverage[name] <= 0.975, (name, coverage)
