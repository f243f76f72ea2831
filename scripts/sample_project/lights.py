"""VIIRS-like night lights and the travel-time surface."""

import numpy as np

from .common import (
    ACCESS_DEG,
    CRS_GEOGRAPHIC,
    CRS_PROJECTED,
    GENERATOR_NAME,
    GENERATOR_VERSION,
    ORIGIN_X,
    ORIGIN_Y,
    VIIRS_DEG,
)
from .daytime import ROAD_CODES
from .landscape import rasterize_lines
from .tools import random_stream


def lonlat_grid(size, step_deg):
    """An EPSG:4326 grid, its edges on multiples of ``step_deg``, covering the region."""
    from affine import Affine
    from pyproj import Transformer

    to_lonlat = Transformer.from_crs(CRS_PROJECTED, CRS_GEOGRAPHIC, always_xy=True)
    t = np.linspace(0, 1, 50)
    edge_x = (
        np.concatenate(
            [t * size.width_m, np.full(50, size.width_m), t * size.width_m, np.zeros(50)]
        )
        + ORIGIN_X
    )
    edge_y = (
        np.concatenate(
            [np.zeros(50), t * size.height_m, np.full(50, size.height_m), t * size.height_m]
        )
        + ORIGIN_Y
    )
    lon, lat = to_lonlat.transform(edge_x, edge_y)
    west, east = np.floor(lon.min() / step_deg) * step_deg, np.ceil(lon.max() / step_deg) * step_deg
    south, north = (
        np.floor(lat.min() / step_deg) * step_deg,
        np.ceil(lat.max() / step_deg) * step_deg,
    )
    width, height = int(round((east - west) / step_deg)), int(round((north - south) / step_deg))
    return Affine(step_deg, 0.0, west, 0.0, -step_deg, north), width, height


def night_light_field(landscape, work):
    """Radiance (nW/cm²/sr) on the working grid before sensor noise: lit houses, blurred."""
    from scipy.ndimage import gaussian_filter

    houses, settlements = landscape.houses, landscape.settlements
    kind = settlements.kind[houses.settlement]
    lit = settlements.electrified[houses.settlement]
    weight = np.where(kind == 0, 1.0, np.where(kind == 1, 0.35, 0.2)) * lit
    emission = np.zeros((work.nrows, work.ncols))
    rows, cols = work.rows_cols(houses.x, houses.y)
    np.add.at(emission, (rows, cols), weight)
    return (2.0 * gaussian_filter(emission, 350.0 / work.res, mode="constant")).astype(np.float32)


def write_night_lights(path, seed, landscape, work, lights):
    from rasterio.warp import Resampling, reproject

    transform, width, height = lonlat_grid(landscape.size, VIIRS_DEG)
    radiance = np.zeros((height, width), np.float32)
    reproject(
        lights,
        radiance,
        src_transform=work.utm_transform(),
        src_crs=CRS_PROJECTED,
        dst_transform=transform,
        dst_crs=CRS_GEOGRAPHIC,
        resampling=Resampling.average,
    )
    rng = random_stream(seed, "night-light-noise")
    floor = (
        0.22
        + 0.1 * np.abs(rng.standard_normal(radiance.shape))
        + 0.04 * rng.standard_normal(radiance.shape)
    )
    radiance = (
        np.maximum(radiance * rng.lognormal(0.0, 0.08, radiance.shape) + floor, 0.01)
        .round(3)
        .astype(np.float32)
    )
    _write_small_float(
        path,
        radiance,
        transform,
        {
            "SYNTHETIC": "yes",
            "UNITS": "nW/cm2/sr",
            "DESCRIPTION": "SYNTHETIC VIIRS-like night-time radiance at 15 arc-seconds (invented place)",
        },
        "night-time radiance (nW/cm2/sr)",
    )
    return radiance


def travel_time_minutes(landscape, work, irrigation_work):
    """Minutes to the nearest town centre by cost-distance over a friction surface."""
    from skimage.graph import MCP_Geometric

    river = landscape.river
    xs, ys = work.xs()[None, :], work.ys()[:, None]
    distance = np.abs(river.signed_distance(xs, ys))
    speed_kmh = np.where(irrigation_work > 0.15, 4.5, 3.0)  # walking off-road
    speed_kmh = np.where(distance < river.belt_half_width(ys), 2.5, speed_kmh)
    speed_kmh = np.where(distance < river.channel_half + 50.0, 0.3, speed_kmh)  # wading or a ferry
    canals = (
        rasterize_lines(
            [(line, 1) for line, kind in landscape.canals if kind != "distributary"], work
        )
        > 0
    )
    speed_kmh = np.where(canals, 1.0, speed_kmh)
    roads = rasterize_lines(
        [
            (line, ROAD_CODES[kind])
            for order in ("track", "link", "highway")
            for line, kind in landscape.roads.lines
            if kind == order
        ],
        work,
    )
    for code, kmh in (
        (1, 15.0),
        (2, 35.0),
        (3, 60.0),
    ):  # roads cross canals and (highways) the river on bridges
        speed_kmh = np.where(roads == code, kmh, speed_kmh)
    minutes_per_pixel = work.res / (speed_kmh * 1000.0 / 60.0)
    settlements = landscape.settlements
    rows, cols = work.rows_cols(
        settlements.x[: settlements.n_towns], settlements.y[: settlements.n_towns]
    )
    costs, _ = MCP_Geometric(minutes_per_pixel, fully_connected=True).find_costs(
        list(zip(rows, cols, strict=True))
    )
    return costs.astype(np.float32), roads


def write_accessibility(path, landscape, work, minutes):
    from rasterio.warp import Resampling, reproject

    transform, width, height = lonlat_grid(landscape.size, ACCESS_DEG)
    travel = np.zeros((height, width), np.float32)
    reproject(
        minutes,
        travel,
        src_transform=work.utm_transform(),
        src_crs=CRS_PROJECTED,
        dst_transform=transform,
        dst_crs=CRS_GEOGRAPHIC,
        resampling=Resampling.average,
    )
    travel = travel.round(2).astype(np.float32)
    _write_small_float(
        path,
        travel,
        transform,
        {
            "SYNTHETIC": "yes",
            "UNITS": "minutes",
            "DESCRIPTION": "SYNTHETIC travel time to the nearest town (minutes) at 30 arc-seconds (invented place)",
        },
        "travel time to the nearest town (minutes)",
    )
    return travel


def _write_small_float(path, array, transform, tags, description):
    import rasterio

    profile = {
        "driver": "GTiff",
        "width": array.shape[1],
        "height": array.shape[0],
        "count": 1,
        "dtype": "float32",
        "crs": CRS_GEOGRAPHIC,
        "transform": transform,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
        "predictor": 3,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array, 1)
        dst.set_band_description(1, description)
        dst.update_tags(GENERATOR=f"{GENERATOR_NAME} {GENERATOR_VERSION}", **tags)
