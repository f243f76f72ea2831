"""What small area estimation needs (``--sae``): sub-districts with their true poverty, a clustered survey.

- Sub-districts: each district split into about ``SUBDISTRICTS_PER_DISTRICT``
  compact parts (Lloyd-relaxed Voronoi cells clipped to the district).
- Every house is one household, scored once with the survey's wealth model and
  household noise; a sub-district's true poverty rate is the share of its
  households whose score is under the cutoff (the quantity a survey's direct
  estimate estimates), also weighted by people.
- A two-stage clustered survey, stratified by district: enumeration areas
  (EAs: the houses of one ``EA_M`` square) drawn with probability proportional
  to their houses (systematic PPS), then ``HOUSEHOLDS_PER_EA`` households by
  simple random sampling in each; the weight is the inverse of the inclusion
  probability. Sampled households carry the scores the truth was computed from.

Nothing here draws from the other components' random streams: the default
sample (without ``--sae``) is byte-for-byte unchanged.
"""

import numpy as np

from .common import CRS_GEOGRAPHIC, CRS_PROJECTED, POVERTY_CUTOFF
from .population import people_per_house
from .surveys import district_of, latent_terms
from .tools import random_stream
from .vectors import survey_lonlat, to_utm, write_vector

SAE_FILES = {
    "subdistricts": "synthetic_subdistricts.gpkg",
    "clustered_survey": "synthetic_clustered_survey.gpkg",
}
SUBDISTRICTS_PER_DISTRICT = 6
EA_M = 700.0
EAS_PER_DISTRICT = {"tiny": 6, "demo": 20}
HOUSEHOLDS_PER_EA = 12


def split_district(rng, polygon, count):
    import shapely
    from scipy.spatial import cKDTree

    xmin, ymin, xmax, ymax = polygon.bounds
    step = 250.0
    gx, gy = np.meshgrid(
        np.arange(xmin + step / 2, xmax, step), np.arange(ymin + step / 2, ymax, step)
    )
    inside = shapely.contains_xy(polygon, gx.ravel(), gy.ravel())
    samples = np.column_stack([gx.ravel()[inside], gy.ravel()[inside]])
    seeds = samples[rng.choice(len(samples), size=count, replace=False)]
    for _ in range(20):
        owner = cKDTree(seeds).query(samples)[1]
        seeds = np.array(
            [
                samples[owner == k].mean(axis=0) if np.any(owner == k) else seeds[k]
                for k in range(count)
            ]
        )
    cells = shapely.voronoi_polygons(shapely.MultiPoint(seeds), extend_to=polygon)
    parts = []
    for seed in seeds:
        cell = next(g for g in cells.geoms if g.contains(shapely.Point(seed)))
        part = shapely.intersection(cell, polygon)
        if not part.is_empty:
            parts.append(part)
    order = np.lexsort(([p.centroid.x for p in parts], [-p.centroid.y for p in parts]))
    return [parts[k] for k in order]


def make_subdistricts(seed, landscape):
    rng = random_stream(seed, "subdistricts")
    polygons, names, parents = [], [], []
    for name, polygon in zip(landscape.districts.names, landscape.districts.polygons, strict=True):
        for number, part in enumerate(split_district(rng, polygon, SUBDISTRICTS_PER_DISTRICT), 1):
            polygons.append(part)
            names.append(f"{name} {number}")
            parents.append(name)
    return polygons, names, parents


def household_scores(seed, landscape, covariates, model, size):
    """Every house scored once as a surveyed household (wealth model + household noise)."""
    houses = landscape.houses
    latent = model.latent(
        latent_terms(covariates, landscape, houses.x, houses.y, houses.settlement)
    )
    rng = random_stream(seed, "sae-household-scores")
    noisy = latent + rng.normal(0.0, size.household_noise_sd, len(latent))
    return np.clip(np.rint(model.offset + model.settings.score_scale * noisy), 1, 100).astype(
        np.int32
    )


def subdistrict_of(polygons, x, y):
    import shapely

    owner = np.full(len(x), -1, np.int64)
    for k, polygon in enumerate(polygons):
        owner[(owner < 0) & shapely.contains_xy(polygon, x, y)] = k
    return owner


def true_rates(polygons, names, parents, landscape, scores):
    owner = subdistrict_of(polygons, landscape.houses.x, landscape.houses.y)
    people = people_per_house(landscape)
    poor = scores < POVERTY_CUTOFF
    rows = []
    for k, name in enumerate(names):
        mine = owner == k
        households = int(mine.sum())
        rows.append(
            {
                "subdistrict": name,
                "district": parents[k],
                "households": households,
                "people": round(float(people[mine].sum()), 1),
                "poor_share": round(float(poor[mine].mean()), 4) if households else None,
                "poor_people_share": round(float(people[mine & poor].sum() / people[mine].sum()), 4)
                if households
                else None,
            }
        )
    return rows


def clustered_survey(seed, landscape, scores, size_name):
    """Two-stage sample: (house index, weight, EA id, district name) of each sampled household."""
    rng = random_stream(seed, "clustered-survey")
    houses = landscape.houses
    district = district_of(landscape, houses.x, houses.y)
    ea_key = np.floor(houses.x / EA_M).astype(np.int64) * 100_000 + np.floor(
        houses.y / EA_M
    ).astype(np.int64)
    chosen, weights, eas, strata = [], [], [], []
    per_district = EAS_PER_DISTRICT[size_name]
    for k, name in enumerate(landscape.districts.names):
        mine = np.flatnonzero(district == k)
        keys, where, sizes = np.unique(ea_key[mine], return_inverse=True, return_counts=True)
        usable = sizes >= HOUSEHOLDS_PER_EA
        if not usable.any():
            continue
        frame = np.flatnonzero(usable)
        measure = sizes[frame].astype(float)
        total = measure.sum()
        n = min(per_district, len(frame))
        # systematic PPS: a random start, every total / n houses along the cumulated sizes
        points = rng.uniform(0, total / n) + np.arange(n) * total / n
        picked = np.unique(frame[np.searchsorted(np.cumsum(measure), points, side="right")])
        for ea in picked:
            members = mine[where == ea]
            probability_ea = min(1.0, n * sizes[ea] / total)
            take = rng.choice(members, size=HOUSEHOLDS_PER_EA, replace=False)
            chosen.append(take)
            # 1 / (P(EA drawn) × P(household drawn within the EA))
            weights.append(np.full(len(take), sizes[ea] / (probability_ea * HOUSEHOLDS_PER_EA)))
            eas.append(np.full(len(take), f"EA{k + 1}-{keys[ea]}", dtype=object))
            strata.append(np.full(len(take), name, dtype=object))
    return (
        np.concatenate(chosen),
        np.concatenate(weights),
        np.concatenate(eas),
        np.concatenate(strata),
    )


def write_small_area_files(out_dir, seed, landscape, covariates, model, size, size_name):
    """Write the sub-districts and the clustered survey; return the metadata record."""
    import shapely

    polygons, names, parents = make_subdistricts(seed, landscape)
    write_vector(
        out_dir / SAE_FILES["subdistricts"],
        "synthetic_subdistricts",
        to_utm(polygons),
        {"subdistrict": np.array(names, dtype=object), "district": np.array(parents, dtype=object)},
        CRS_PROJECTED,
        "Polygon",
    )
    scores = household_scores(seed, landscape, covariates, model, size)
    house, weight, ea, stratum = clustered_survey(seed, landscape, scores, size_name)
    rng = random_stream(seed, "clustered-survey-gps")

    class Points:  # survey_lonlat reads x, y in local metres
        x = landscape.houses.x[house] + rng.normal(0, 4.0, len(house))
        y = landscape.houses.y[house] + rng.normal(0, 4.0, len(house))

    lon, lat = survey_lonlat(Points)
    write_vector(
        out_dir / SAE_FILES["clustered_survey"],
        "synthetic_clustered_survey",
        shapely.points(lon, lat),
        {
            "hh_id": np.arange(2_000_001, 2_000_001 + len(house), dtype=np.int64),
            "score": scores[house].astype(np.int32),
            "weight": np.round(weight, 3).astype(np.float64),
            "ea": ea,
            "district": stratum,
        },
        CRS_GEOGRAPHIC,
        "Point",
    )
    rates = true_rates(polygons, names, parents, landscape, scores)
    return {
        "subdistricts": rates,
        "clustered_survey": {
            "households": int(len(house)),
            "enumeration_areas": int(len(np.unique(ea))),
            "design": f"stratified by district; {EAS_PER_DISTRICT[size_name]} enumeration areas "
            f"(houses of one {EA_M:g} m square, at least {HOUSEHOLDS_PER_EA} houses) per district by "
            f"systematic PPS, then {HOUSEHOLDS_PER_EA} households by simple random sampling; weight = "
            "1 / inclusion probability",
            "national_poor_share": round(float((scores < POVERTY_CUTOFF).mean()), 4),
        },
        "note": "every house is one household scored once (survey wealth model + household noise); "
        "poor_share = share of a sub-district's households scored under the cutoff (what a direct "
        "estimate estimates); poor_people_share weights them by people",
    }
