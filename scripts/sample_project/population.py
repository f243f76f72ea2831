"""WorldPop-like population and the true poverty of a district."""

import numpy as np

from .common import (
    CRS_GEOGRAPHIC,
    CRS_PROJECTED,
    ORIGIN_X,
    ORIGIN_Y,
    POPULATION_DEG,
    POVERTY_CUTOFF,
)
from .lights import _write_small_float, lonlat_grid
from .surveys import district_of, latent_terms
from .tools import random_stream


def people_per_house(landscape):
    """People living in each house: its settlement's population shared among its houses."""
    houses, settlements = landscape.houses, landscape.settlements
    return settlements.population[houses.settlement] / houses.count[houses.settlement]


def write_population(path, landscape):
    """People per 3 arc-second pixel in EPSG:4326 (WorldPop-like): every house's people where it stands."""
    from pyproj import Transformer

    houses = landscape.houses
    transform, width, height = lonlat_grid(landscape.size, POPULATION_DEG)
    lon, lat = Transformer.from_crs(CRS_PROJECTED, CRS_GEOGRAPHIC, always_xy=True).transform(
        houses.x + ORIGIN_X, houses.y + ORIGIN_Y
    )
    column = np.floor((lon - transform.c) / POPULATION_DEG).astype(np.int64)
    row = np.floor((transform.f - lat) / POPULATION_DEG).astype(np.int64)
    inside = (column >= 0) & (column < width) & (row >= 0) & (row < height)
    people = np.bincount(
        row[inside] * width + column[inside],
        weights=people_per_house(landscape)[inside],
        minlength=width * height,
    ).reshape(height, width)
    _write_small_float(
        path,
        people.astype(np.float32),
        transform,
        {
            "SYNTHETIC": "yes",
            "UNITS": "people per pixel",
            "DESCRIPTION": "SYNTHETIC population (people per 3 arc-second pixel, WorldPop-like) from the "
            "generated houses of towns, villages and hamlets (invented place)",
        },
        "people per pixel",
    )
    return float(people.sum())


def true_poverty_of_district(seed, landscape, covariates, model, size, district_index):
    """Everyone of a district scored as the surveys score households: how many people are poor.

    Each house is one household (its people: ``people_per_house``), scored
    with the survey's wealth model and household noise. Returns the
    district's people, poor people (score under the cutoff) and people in
    poor 1 km cells (median household score under the cutoff, the label of
    the grids, cells aligned to multiples of 1 km in EPSG:32642).
    """
    import pandas

    houses = landscape.houses
    mine = np.flatnonzero(district_of(landscape, houses.x, houses.y) == district_index)
    x, y, settlement = houses.x[mine], houses.y[mine], houses.settlement[mine]
    latent = model.latent(latent_terms(covariates, landscape, x, y, settlement))
    rng = random_stream(seed, "true-poverty")
    noisy = latent + rng.normal(0.0, size.household_noise_sd, len(mine))
    score = np.clip(np.rint(model.offset + model.settings.score_scale * noisy), 1, 100)
    people = people_per_house(landscape)[mine]
    poor = score < POVERTY_CUTOFF
    cells = pandas.DataFrame(
        {
            "row": np.floor((y + ORIGIN_Y) / 1000.0),
            "col": np.floor((x + ORIGIN_X) / 1000.0),
            "score": score,
            "people": people,
        }
    )
    grouped = cells.groupby(["row", "col"])
    cell_poor = grouped["score"].median() < POVERTY_CUTOFF
    cell_people = grouped["people"].sum()
    return {
        "name": landscape.districts.names[district_index],
        "people": round(float(people.sum()), 1),
        "households": int(len(mine)),
        "poor_people": round(float(people[poor].sum()), 1),
        "poor_share": round(float(people[poor].sum() / people.sum()), 4),
        "people_in_poor_cells": round(float(cell_people[cell_poor].sum()), 1),
        "poor_cells": int(cell_poor.sum()),
        "inhabited_cells": int(len(cell_poor)),
        "note": "every house of the district scored as a surveyed household (same wealth model and "
        "noise); poor = score under the cutoff; people in poor cells = people of the 1 km cells "
        "(EPSG:32642, aligned to multiples of 1 km) whose median household score is under the cutoff, "
        "the label the grids use",
    }
