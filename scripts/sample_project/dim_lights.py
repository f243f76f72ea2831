"""The dim-lights case: rural night lights below 0.5 nW/cm²/sr with informative differences."""

import dataclasses
import sys
from pathlib import Path

import numpy as np

from .common import (
    CRS_PROJECTED,
    DISTRICT_NAMES,
    GENERATOR_NAME,
    GENERATOR_VERSION,
    ORIGIN_X,
    ORIGIN_Y,
)
from .tools import random_stream
from .vectors import write_vector


@dataclasses.dataclass(frozen=True)
class DimLightsSettings:
    """A small labelled grid whose only input is night lights, most of it rural and dim.

    Real night lights are heavy-tailed: most rural cells sit below 0.5
    nW/cm²/sr, a few towns reach hundreds. The small differences between dim
    cells carry the information (brighter villages are less often poor), and
    a linear mean/std normalisation squashes them next to the towns.
    """

    cells_per_side: int = 30  # 1 km cells: 900 labelled cells
    pixel_m: float = 250.0  # radiance grid (VIIRS is ~460 m; finer keeps 4 x 4 pixels per cell)
    districts: int = 3  # west to east strips of equal width
    towns: int = 5
    town_peak: tuple = (30.0, 300.0)  # nW/cm²/sr at a town centre (log-uniform)
    town_radius_m: tuple = (500.0, 1100.0)
    rural_floor: float = 0.12  # nW/cm²/sr: the dimmest village
    rural_span: float = 0.28  # the richest village is floor + span (< 0.5)
    wealth_sigma_m: float = 1500.0  # spatial smoothness of the latent wealth
    wealth_slope: float = 2.0  # logit of P(poor) per unit of latent wealth
    town_wealth: float = 2.5  # logit of P(poor) lower in a fully lit cell
    poor_intercept: float = -0.35  # about 40 % of the cells poor


DIM_LIGHTS_FILES = {"nightlights": "dim_lights_viirs.tif", "grid": "dim_lights_grid.gpkg"}


DIM_LIGHTS_LAYER = "dim_lights_grid"


def write_dim_lights_case(out_dir, seed=7, settings=DimLightsSettings()):
    """Write the dim-lights case (SYNTHETIC) into ``out_dir``; returns {name: path} and counts.

    Files: ``dim_lights_viirs.tif`` (radiance, float32 nW/cm²/sr, EPSG:32642)
    and ``dim_lights_grid.gpkg``, a labelled training grid of 1 km cells
    (``cell_id``, ``district``, ``n_obs``, ``median_score``, ``label``) with
    the truth it was drawn from: ``true_probability_poor`` (the chance that
    a cell like it is poor) and ``mean_radiance`` (the cell's mean of the
    raster). The latent wealth is a smooth field; a village's radiance rises
    with it (floor + span × sigmoid), towns add bright, heavy-tailed glows and
    make their cells less often poor; the label is drawn from
    ``true_probability_poor``. Used by ``tests/test_trust.py`` to show that
    the ensemble ranks the dim cells (the log1p input transform's case).
    """
    import rasterio
    import shapely
    from affine import Affine
    from scipy.ndimage import gaussian_filter

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from povmap_qgis.core.grid.cells import encode_cell_ids

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cell_m, side = 1000.0, settings.cells_per_side
    per_cell = int(round(cell_m / settings.pixel_m))
    size = side * per_cell
    rng = random_stream(seed, "dim-lights")
    wealth = gaussian_filter(
        rng.standard_normal((size, size)), settings.wealth_sigma_m / settings.pixel_m
    )
    wealth = (wealth - wealth.mean()) / wealth.std()
    ys, xs = (np.mgrid[0:size, 0:size] + 0.5) * settings.pixel_m
    glow = np.zeros((size, size))
    centres = rng.uniform(0.15, 0.85, (settings.towns, 2)) * side * cell_m
    peaks = np.exp(rng.uniform(*np.log(settings.town_peak), settings.towns))
    radii = rng.uniform(*settings.town_radius_m, settings.towns)
    for (x, y), peak, radius in zip(centres, peaks, radii, strict=True):
        glow += peak * np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * radius**2))
    rural = settings.rural_floor + settings.rural_span / (1 + np.exp(-1.5 * wealth))
    radiance = rural * rng.lognormal(0.0, 0.04, rural.shape) + glow
    radiance = np.maximum(radiance + rng.normal(0, 0.01, rural.shape), 0.01)
    radiance = radiance.round(3).astype(np.float32)[::-1]  # north-up rows

    def per_cell_mean(values):
        return values.reshape(side, per_cell, side, per_cell).mean(axis=(1, 3))

    cell_wealth = per_cell_mean(wealth)
    lit = np.minimum(1.0, per_cell_mean(glow) / 5.0)
    logit = (
        settings.poor_intercept - settings.wealth_slope * cell_wealth - settings.town_wealth * lit
    )
    truth = 1 / (1 + np.exp(-logit))
    label = (rng.uniform(size=truth.shape) < truth).astype(np.int32)
    median_score = np.where(
        label == 1, rng.integers(6, 19, truth.shape), rng.integers(19, 45, truth.shape)
    )
    path = out_dir / DIM_LIGHTS_FILES["nightlights"]
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 1,
        "dtype": "float32",
        "crs": CRS_PROJECTED,
        "transform": Affine(
            settings.pixel_m, 0, ORIGIN_X, 0, -settings.pixel_m, ORIGIN_Y + size * settings.pixel_m
        ),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(radiance, 1)
        dst.set_band_description(1, "night-time radiance (nW/cm2/sr)")
        dst.update_tags(
            GENERATOR=f"{GENERATOR_NAME} {GENERATOR_VERSION}",
            SYNTHETIC="yes",
            UNITS="nW/cm2/sr",
            DESCRIPTION="SYNTHETIC dim rural night lights with a few bright towns (invented place)",
        )
    rows, cols = np.mgrid[0:side, 0:side]
    rows, cols = rows.ravel(), cols.ravel()
    grid_rows = rows + int(ORIGIN_Y // cell_m)
    grid_cols = cols + int(ORIGIN_X // cell_m)
    names = np.array(DISTRICT_NAMES[: settings.districts], dtype=object)
    mean_radiance = per_cell_mean(radiance[::-1].astype(np.float64)).ravel()
    write_vector(
        out_dir / DIM_LIGHTS_FILES["grid"],
        DIM_LIGHTS_LAYER,
        shapely.box(
            grid_cols * cell_m,
            grid_rows * cell_m,
            (grid_cols + 1) * cell_m,
            (grid_rows + 1) * cell_m,
        ),
        {
            "cell_id": encode_cell_ids(grid_rows, grid_cols),
            "district": names[cols * settings.districts // side],
            "n_obs": np.full(len(rows), 12, dtype=np.int32),
            "median_score": median_score.ravel().astype(np.float64),
            "label": label.ravel(),
            "true_probability_poor": truth.ravel().round(5),
            "mean_radiance": mean_radiance.round(4),
        },
        CRS_PROJECTED,
        "Polygon",
    )
    return {
        "nightlights": str(path),
        "grid": str(out_dir / DIM_LIGHTS_FILES["grid"]),
        "layer": DIM_LIGHTS_LAYER,
        "cells": int(len(rows)),
        "poor": int(label.sum()),
        "dim_cells": int((mean_radiance < 0.5).sum()),
    }
