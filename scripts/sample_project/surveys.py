"""Household surveys: covariates, the wealth model, sampled homes."""

import dataclasses

import numpy as np

from .common import PAD_M, POVERTY_CUTOFF, WORK_M
from .tools import Grid, random_stream, smooth_noise


@dataclasses.dataclass
class Covariates:
    """Fields on the working grid that the latent wealth reads at each home."""

    work: Grid
    greenery: np.ndarray  # mean NDVI within ~1 km (what the daytime image shows)
    lights: np.ndarray  # noise-free radiance
    travel: np.ndarray  # minutes to the nearest town
    unobserved: np.ndarray  # smooth, unit standard deviation, in no raster


@dataclasses.dataclass
class Survey:
    """A survey in memory: recorded points (local metres) plus what only the generator knows."""

    x: np.ndarray
    y: np.ndarray
    score: np.ndarray
    accuracy: np.ndarray
    date: np.ndarray
    latent: np.ndarray
    error: np.ndarray  # '', 'zero', 'diffuse', 'congregation', 'early'
    hh_id: np.ndarray


def make_covariates(seed, work, ndvi_region, lights, travel, survey_settings):
    from scipy.ndimage import uniform_filter

    greenery = np.zeros((work.nrows, work.ncols), np.float32)
    pad = int(round(PAD_M / WORK_M))
    greenery[:] = float(np.median(ndvi_region))
    greenery[pad : pad + ndvi_region.shape[0], pad : pad + ndvi_region.shape[1]] = ndvi_region
    greenery = uniform_filter(greenery, size=11, mode="nearest")
    unobserved = smooth_noise(
        random_stream(seed, "unobserved-wealth"),
        (work.nrows, work.ncols),
        survey_settings.unobserved_sigma_m / work.res,
    )
    return Covariates(
        work=work, greenery=greenery, lights=lights, travel=travel, unobserved=unobserved
    )


def latent_terms(covariates, landscape, home_x, home_y, settlement):
    work = covariates.work
    return {
        "greenery": work.sample(covariates.greenery, home_x, home_y),
        "settlement_size": np.log10(landscape.settlements.population[settlement]),
        "night_lights": np.log1p(work.sample(covariates.lights, home_x, home_y)),
        "travel_time": np.log1p(work.sample(covariates.travel, home_x, home_y)),
        "unobserved": work.sample(covariates.unobserved, home_x, home_y),
    }


class WealthModel:
    """Noise-free latent wealth: a weighted sum of standardised covariates.

    Standardisation uses the main survey's households, so the ground-truth
    survey is scored on the same scale."""

    def __init__(self, settings, terms):
        self.settings = settings
        self.centre = {k: float(np.mean(v)) for k, v in terms.items() if k != "unobserved"}
        self.scale = {k: float(np.std(v)) + 1e-9 for k, v in terms.items() if k != "unobserved"}
        raw = self._raw(terms)
        self.raw_mean, self.raw_sd = float(raw.mean()), float(raw.std())
        self.offset = None

    def calibrate(self, noisy_wealth, home_x, home_y):
        """Choose the score offset so that about ``target_poor_share`` of the 1 km cells with 3 or more
        households have a median score under the cutoff."""
        import pandas

        s = self.settings
        cells = pandas.DataFrame(
            {
                "row": np.floor(home_y / 1000.0),
                "col": np.floor(home_x / 1000.0),
                "wealth": noisy_wealth,
            }
        )
        grouped = cells.groupby(["row", "col"])["wealth"]
        medians = grouped.median()[grouped.size() >= 3].to_numpy()
        self.offset = POVERTY_CUTOFF - s.score_scale * float(
            np.quantile(medians, s.target_poor_share)
        )

    def _raw(self, terms):
        s = self.settings
        weights = {
            "greenery": s.weight_greenery,
            "settlement_size": s.weight_settlement_size,
            "night_lights": s.weight_night_lights,
            "travel_time": s.weight_travel_time,
        }
        total = s.weight_unobserved * terms["unobserved"]
        for name, weight in weights.items():
            total = total + weight * (terms[name] - self.centre[name]) / self.scale[name]
        return total

    def latent(self, terms):
        return (self._raw(terms) - self.raw_mean) / self.raw_sd


def sample_homes(rng, landscape, settlement_ids, count, town_weight):
    """Households drawn in proportion to population (towns down-weighted); each lives in a house."""
    settlements, houses = landscape.settlements, landscape.houses
    weight = settlements.population[settlement_ids] * np.where(
        settlements.kind[settlement_ids] == 0, town_weight, 1.0
    )
    chosen = rng.choice(settlement_ids, size=count, p=weight / weight.sum())
    house = houses.first[chosen] + np.floor(rng.random(count) * houses.count[chosen]).astype(
        np.int64
    )
    return (
        houses.x[house] + rng.normal(0, 4.0, count),
        houses.y[house] + rng.normal(0, 4.0, count),
        chosen,
    )


def district_of(landscape, x, y):
    import shapely

    district = np.full(len(x), -1, np.int64)
    for k, polygon in enumerate(landscape.districts.polygons):
        district[shapely.contains_xy(polygon, x, y)] = k
    return district


def random_points_in(rng, polygon, count):
    import shapely

    xmin, ymin, xmax, ymax = polygon.bounds
    x, y = np.empty(0), np.empty(0)
    while len(x) < count:
        cx = rng.uniform(xmin, xmax, 2 * count + 10)
        cy = rng.uniform(ymin, ymax, 2 * count + 10)
        inside = shapely.contains_xy(polygon, cx, cy)
        x, y = np.concatenate([x, cx[inside]]), np.concatenate([y, cy[inside]])
    return x[:count], y[:count]


def make_survey(
    rng,
    landscape,
    covariates,
    settings,
    district_ids,
    count,
    noise_sd,
    dates,
    model=None,
    first_id=1,
    early=True,
):
    """Households with scores and the survey errors the paper cleans away.

    Returns the survey and the wealth model (fitted on this survey when none is given)."""
    import shapely

    settlements = landscape.settlements
    area = shapely.union_all([landscape.districts.polygons[k] for k in district_ids])
    shapely.prepare(area)
    home_district = district_of(landscape, settlements.x, settlements.y)
    candidates = np.flatnonzero(np.isin(home_district, district_ids))
    draw = int(count * 1.08) + 50
    home_x, home_y, settlement = sample_homes(
        rng, landscape, candidates, draw, settings.town_sampling_weight
    )
    keep = shapely.contains_xy(area, home_x, home_y)
    home_x, home_y, settlement = (
        home_x[keep][:count],
        home_y[keep][:count],
        settlement[keep][:count],
    )
    n = len(home_x)

    terms = latent_terms(covariates, landscape, home_x, home_y, settlement)
    model = model or WealthModel(settings, terms)
    latent = model.latent(terms)
    noisy = latent + rng.normal(0.0, noise_sd, n)
    if model.offset is None:
        model.calibrate(noisy, home_x, home_y)
    score = np.clip(np.rint(model.offset + settings.score_scale * noisy), 1, 100).astype(np.int32)

    accuracy = np.clip(np.exp(rng.normal(np.log(6.5), 0.4, n)), 2.0, 19.9)
    poor_fix = rng.random(n) < settings.poor_accuracy_share
    accuracy[poor_fix] = rng.uniform(20.5, 60.0, poor_fix.sum())
    x = home_x + rng.normal(0, 1, n) * accuracy / 2.0
    y = home_y + rng.normal(0, 1, n) * accuracy / 2.0

    error = np.full(n, "", dtype=object)
    kind = rng.random(n)
    diffuse = kind < settings.diffuse_share
    congregation = (kind >= settings.diffuse_share) & (
        kind < settings.diffuse_share + settings.congregation_share
    )
    dx, dy = random_points_in(rng, area, int(diffuse.sum()))
    x[diffuse], y[diffuse] = dx, dy
    accuracy[diffuse] = np.where(
        rng.random(diffuse.sum()) < 0.7,
        rng.uniform(20.5, 90.0, diffuse.sum()),
        rng.uniform(8.0, 20.0, diffuse.sum()),
    )
    error[diffuse] = "diffuse"
    town_ids = np.arange(settlements.n_towns)
    town_ids = town_ids[np.isin(home_district[town_ids], district_ids)]
    if len(town_ids) and congregation.any():
        nearest = town_ids[
            np.argmin(
                np.hypot(
                    home_x[congregation, None] - settlements.x[town_ids][None, :],
                    home_y[congregation, None] - settlements.y[town_ids][None, :],
                ),
                axis=1,
            )
        ]
        x[congregation] = settlements.x[nearest] + rng.normal(0, 4.0, congregation.sum())
        y[congregation] = settlements.y[nearest] + rng.normal(0, 4.0, congregation.sum())
        error[congregation] = "congregation"
    zero = rng.random(n) < settings.zero_score_share
    score[zero] = 0
    error[zero & (error == "")] = "zero"

    start, days = dates
    date = np.datetime64(start) + rng.integers(0, days, n).astype("timedelta64[D]")
    if early:
        is_early = rng.random(n) < settings.early_share
        date[is_early] = np.datetime64("2015-06-01") + rng.integers(0, 210, is_early.sum()).astype(
            "timedelta64[D]"
        )
        error[is_early & (error == "")] = "early"
    accuracy = accuracy.round(1)
    order = rng.permutation(n)
    survey = Survey(
        x=x[order],
        y=y[order],
        score=score[order],
        accuracy=accuracy[order],
        date=date[order],
        latent=latent[order],
        error=error[order],
        hh_id=np.arange(first_id, first_id + n, dtype=np.int64),
    )
    return survey, model
