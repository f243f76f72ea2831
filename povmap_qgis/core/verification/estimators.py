"""Design-based estimators for a stratified random sample of cells (Olofsson et al. 2014).

A verification sample is a stratified random sample: stratum ``h`` holds ``N_h``
cells of the map, ``n_h`` of them were visited, each visited cell carries the
reference (observed) class. Every quantity reported is a ratio of two
population totals ``R = Y / X`` of per-cell values ``y`` and ``x`` (Stehman 2014,
"Estimating area and map accuracy for stratified random sampling when the
strata are different from the map classes", which reduces to Olofsson et al.
2014's formulas when the strata are the map classes):

    Ŷ = Σ_h N_h ȳ_h,   X̂ = Σ_h N_h x̄_h,   R̂ = Ŷ / X̂
    V̂(R̂) = 1 / X̂² · Σ_h N_h² (1 − n_h / N_h) s²_uh / n_h,   u = y − R̂ x

(``s²_uh`` the sample variance of ``u`` in stratum h, divisor n_h − 1; the
finite population correction 1 − n_h/N_h is kept: a district has hundreds of
cells, not millions of pixels). The 95 % interval is R̂ ± 1.96 √V̂, clipped to
[0, 1] for shares. With y and x indicators of the cell:

- overall accuracy:       y = [map = reference],          x = 1
- user's accuracy (poor): y = [map poor & reference poor], x = [map poor]   (precision)
- producer's accuracy:    y = [map poor & reference poor], x = [reference poor]   (recall)
- share of poor cells:    y = [reference poor],            x = 1
- share of poor people:   y = people × [reference poor],   x = people
- inclusion error:        y = [selected & not poor],        x = [selected]
- exclusion error:        y = [not selected & poor],        x = [reference poor]

The map's bias is its own share of poor cells (known exactly: every cell of the
map is counted) minus the estimated share; its interval is that of the
estimated share, shifted. Beside a random choice of cells: random picks are poor
as often as cells are, so the map's precision is compared through the difference
user's accuracy − poor share (``ratio_difference``, one linearised variance for
both); a random choice of as many cells as the map calls poor finds that share of
the poor cells (known exactly), so recall is compared with the map's share. Pure numpy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

Z95 = 1.959963984540054  # the standard normal's 97.5 % point: 95 % two-sided intervals


@dataclasses.dataclass
class Estimate:
    estimate: float | None
    se: float | None
    low: float | None
    high: float | None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


UNDEFINED = Estimate(None, None, None, None)


def ratio_estimate(
    strata: np.ndarray,
    sizes: Mapping[str, int],
    y: np.ndarray,
    x: np.ndarray | None = None,
    share: bool = True,
    fpc: bool = True,
) -> Estimate:
    """R̂ = Ŷ / X̂ with its standard error and 95 % interval (see the module doc).

    ``strata``: each visited cell's stratum; ``sizes``: {stratum: N_h} (every
    stratum with a visit must be there); ``y``, ``x``: per visited cell (x None: 1).
    ``share``: clip the interval to [0, 1]. Undefined (all None) when X̂ is 0.
    """
    strata = np.asarray(strata)
    y = np.asarray(y, dtype="float64")
    x = np.ones_like(y) if x is None else np.asarray(x, dtype="float64")
    groups = []
    for stratum in np.unique(strata):
        inside = strata == stratum
        groups.append((float(sizes[stratum]), y[inside], x[inside]))
    total_y = sum(size * values.mean() for size, values, _ in groups)
    total_x = sum(size * values.mean() for size, _, values in groups)
    if total_x <= 0:
        return UNDEFINED
    ratio = total_y / total_x
    variance = 0.0
    for size, ys, xs in groups:
        count = len(ys)
        if count < 2:
            continue  # one visit: no within-stratum variance (the caller requires two)
        residual = ys - ratio * xs
        correction = (1.0 - count / size) if fpc else 1.0
        variance += size**2 * max(correction, 0.0) * residual.var(ddof=1) / count
    se = float(np.sqrt(variance) / total_x)
    if share and 0.0 < ratio < 1.0:
        centre, spread = np.log(ratio / (1 - ratio)), Z95 * se / (ratio * (1 - ratio))
        low, high = 1 / (1 + np.exp(-(centre - spread))), 1 / (1 + np.exp(-(centre + spread)))
    else:
        low, high = ratio - Z95 * se, ratio + Z95 * se
        if share:
            low, high = max(low, 0.0), min(high, 1.0)
    return Estimate(float(ratio), se, float(low), float(high))


def ratio_difference(
    strata: np.ndarray,
    sizes: Mapping[str, int],
    first: tuple[np.ndarray, np.ndarray | None],
    second: tuple[np.ndarray, np.ndarray | None],
    fpc: bool = True,
) -> Estimate:
    """R̂1 − R̂2 of two ratios ``first`` = (y1, x1), ``second`` = (y2, x2) from the same sample,
    with its standard error and 95 % interval (not clipped).

    Linearised like ``ratio_estimate``: z = (y1 − R̂1 x1) / X̂1 − (y2 − R̂2 x2) / X̂2 per visited
    cell, V̂ = Σ_h N_h² (1 − n_h / N_h) s²_zh / n_h — the covariance of the two comes with it.
    """
    strata = np.asarray(strata)
    ratios, residuals = [], []
    for y, x in (first, second):
        y = np.asarray(y, dtype="float64")
        x = np.ones_like(y) if x is None else np.asarray(x, dtype="float64")
        total_x = sum(sizes[h] * x[strata == h].mean() for h in np.unique(strata))
        total_y = sum(sizes[h] * y[strata == h].mean() for h in np.unique(strata))
        if total_x <= 0:
            return UNDEFINED
        ratios.append(total_y / total_x)
        residuals.append((y - ratios[-1] * x) / total_x)
    z = residuals[0] - residuals[1]
    variance = 0.0
    for stratum in np.unique(strata):
        values = z[strata == stratum]
        if len(values) < 2:
            continue
        correction = (1.0 - len(values) / sizes[stratum]) if fpc else 1.0
        variance += sizes[stratum] ** 2 * max(correction, 0.0) * values.var(ddof=1) / len(values)
    difference, se = float(ratios[0] - ratios[1]), float(np.sqrt(variance))
    return Estimate(difference, se, difference - Z95 * se, difference + Z95 * se)


def accuracy_estimates(
    strata: np.ndarray,
    sizes: Mapping[str, int],
    mapped: np.ndarray,
    observed: np.ndarray,
    people: np.ndarray | None = None,
    map_poor_share: float | None = None,
) -> dict[str, Estimate]:
    """The map's accuracy and the poor share from a stratified sample; {name: Estimate}.

    ``mapped``, ``observed``: 1 = poor, per visited cell; ``people``: per visited
    cell (the share of poor people then too); ``map_poor_share``: the share of
    the map's cells it calls poor (all cells counted), for its bias.
    """
    mapped = np.asarray(mapped, dtype="int64")
    observed = np.asarray(observed, dtype="int64")
    both = (mapped == 1) & (observed == 1)
    result = {
        "overall_accuracy": ratio_estimate(strata, sizes, mapped == observed),
        "users_accuracy_poor": ratio_estimate(strata, sizes, both, mapped == 1),
        "producers_accuracy_poor": ratio_estimate(strata, sizes, both, observed == 1),
        "poor_share": ratio_estimate(strata, sizes, observed == 1),
    }
    # beside a random choice of cells: its cells are poor as often as cells are (the poor share)
    result["precision_minus_random"] = ratio_difference(
        strata, sizes, (both, mapped == 1), (observed == 1, None)
    )
    if people is not None:
        people = np.asarray(people, dtype="float64")
        result["poor_people_share"] = ratio_estimate(strata, sizes, people * observed, people)
    if map_poor_share is not None:
        share = result["poor_share"]
        result["map_bias"] = (
            UNDEFINED
            if share.estimate is None
            else Estimate(
                float(map_poor_share - share.estimate),
                share.se,
                float(map_poor_share - share.high),  # type: ignore[operator]  # set with estimate
                float(map_poor_share - share.low),  # type: ignore[operator]
            )
        )
    return result


def targeting_estimates(
    strata: np.ndarray, sizes: Mapping[str, int], selected: np.ndarray, observed: np.ndarray
) -> dict[str, Estimate]:
    """Inclusion error (enrolled, not poor) and exclusion error (poor, left out); {name: Estimate}."""
    selected = np.asarray(selected, dtype="int64") == 1
    poor = np.asarray(observed, dtype="int64") == 1
    return {
        "inclusion_error": ratio_estimate(strata, sizes, selected & ~poor, selected),
        "exclusion_error": ratio_estimate(strata, sizes, ~selected & poor, poor),
    }


def error_matrix(
    strata: np.ndarray,
    sizes: Mapping[str, int],
    mapped: np.ndarray,
    observed: np.ndarray,
    classes: Sequence[int] = (1, 0),
) -> list[list[float]]:
    """Estimated share of the map's cells in each (map class, reference class): [[p_ij]].

    p_ij = Σ_h (N_h / N) · (visited cells of h with map i and reference j) / n_h.
    """
    strata = np.asarray(strata)
    mapped, observed = np.asarray(mapped), np.asarray(observed)
    total = float(sum(sizes[stratum] for stratum in np.unique(strata)))
    matrix = np.zeros((len(classes), len(classes)))
    for stratum in np.unique(strata):
        inside = strata == stratum
        weight = sizes[stratum] / total / inside.sum()
        for i, map_class in enumerate(classes):
            for j, reference in enumerate(classes):
                matrix[i, j] += weight * np.sum(
                    (mapped[inside] == map_class) & (observed[inside] == reference)
                )
    return matrix.tolist()
