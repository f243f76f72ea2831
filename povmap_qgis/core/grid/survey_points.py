"""Where the survey's household points lie (pipeline step 1, core): their longitude and
latitude, points far from the others, the district polygon holding each point, and the
check that refuses or warns about swapped coordinates (latitude read as x)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import numpy as np

from .. import vectors
from ..errors import PovmapInputError
from . import cells

if TYPE_CHECKING:
    import geopandas

    from ..progress import Reporter
    from .training_grid import TrainingGridOptions


SWAP_SUSPECT_SHARE = 0.5  # at most this share of points in the expected area, and swapped at least
SHARE_SAMPLE = 100_000  # points that estimate those shares first (every k-th point)


def lonlat(x: np.ndarray, y: np.ndarray, crs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Longitude and latitude (degrees) of points in ``crs``."""
    from pyproj import CRS, Transformer

    x, y = np.asarray(x, dtype="float64"), np.asarray(y, dtype="float64")
    if not len(x):
        return x, y
    lon, lat = Transformer.from_crs(
        CRS.from_user_input(crs), "EPSG:4326", always_xy=True
    ).transform(x, y)
    return np.asarray(lon, dtype="float64"), np.asarray(lat, dtype="float64")


def warn_far_points(
    rows: np.ndarray,
    lon: np.ndarray,
    lat: np.ndarray,
    centre: tuple[float, float],
    reporter: Reporter,
) -> None:
    """Name the points far from the others (feature number, position to 0.1°: no household is
    located by it) so a data-entry error can be found."""
    listed = ", ".join(
        f"#{int(row) + 1} ({a:.1f}°, {b:.1f}°)"
        for row, a, b in zip(rows[:10], lon[:10], lat[:10], strict=True)
    )
    more = f" and {len(rows) - 10} more" if len(rows) > 10 else ""
    reporter.warning(
        f"INPUT: {len(rows)} household point(s) lie far from the others (more than "
        f"{cells.FAR_DEGREES:g}° from their median at {centre[0]:.1f}°, {centre[1]:.1f}°): "
        f"feature {listed}{more} (longitude, latitude). A point at (0, 0), or with exchanged or "
        "mistyped coordinates, is a data-entry error: correct or remove it. The grid CRS is "
        "chosen from the points' median, so these points do not move it; they are kept, in "
        "cells of their own."
    )


def transform_points(
    x: np.ndarray, y: np.ndarray, source_crs: Any, target_crs: Any
) -> tuple[np.ndarray, np.ndarray]:
    from pyproj import CRS, Transformer

    source = CRS.from_user_input(source_crs)
    if source == target_crs:
        return x, y
    return Transformer.from_crs(source, target_crs, always_xy=True).transform(x, y)


def points_in_polygons(
    x: np.ndarray,
    y: np.ndarray,
    path: str | None,
    layer: str | None,
    parameter: str,
    grid_crs: Any,
    field: str | None,
    reporter: Reporter,
) -> tuple[np.ndarray, geopandas.GeoDataFrame] | tuple[None, None]:
    """Index of the polygon holding each point (-1 outside all) and the polygons."""
    import shapely

    if not path:
        return None, None
    polygons = vectors.read_polygons(path, layer, parameter, field=field, reporter=reporter).to_crs(
        grid_crs
    )
    tree = shapely.STRtree(polygons.geometry.values)
    point_index, polygon_index = tree.query(shapely.points(x, y), predicate="intersects")
    holder = np.full(len(x), -1, dtype="int64")
    # A point on a shared boundary belongs to the first polygon (reverse order so it wins).
    holder[point_index[::-1]] = polygon_index[::-1]
    return holder, polygons


def districts_of_points(
    x: np.ndarray, y: np.ndarray, options: TrainingGridOptions, grid_crs: Any, reporter: Reporter
) -> tuple[np.ndarray, geopandas.GeoDataFrame] | tuple[None, None]:
    """Each point's district name (None outside every polygon) and the polygons; (None, None)."""
    if not options.districts_path:
        return None, None
    holder, polygons = cast(
        "tuple[np.ndarray, geopandas.GeoDataFrame]",  # DISTRICTS is given here
        points_in_polygons(
            x,
            y,
            options.districts_path,
            options.districts_layer,
            "DISTRICTS",
            grid_crs,
            options.district_field,
            reporter,
        ),
    )
    names = polygons[options.district_field].to_numpy(dtype=object)
    if any(name is None for name in names):
        reporter.warning(
            f"DISTRICTS: some polygons have no value in '{options.district_field}'; their cells get the district 'unnamed'."
        )
        names = np.array(["unnamed" if name is None else str(name) for name in names], dtype=object)
    districts = np.full(len(x), None, dtype=object)
    inside = holder >= 0
    districts[inside] = names[holder[inside]].astype(str)
    return districts, polygons


def check_axis_order(
    x: np.ndarray,
    y: np.ndarray,
    points_crs: Any,
    district_polygons: geopandas.GeoDataFrame | None,
    options: TrainingGridOptions,
    reporter: Reporter,
) -> None:
    """Refuse (none inside) or warn (few inside) when the points look like swapped coordinates.

    A table read with latitude as x and longitude as y puts the survey somewhere
    else entirely (Sindh's 25° N, 68° E becomes 68° N, 25° E): the points fall
    outside the area they should cover - the extent of DISTRICTS, or without
    districts the area of use of the CRS given - while swapping the two
    coordinates would put most of them inside.
    """
    from pyproj import CRS

    if district_polygons is not None and len(district_polygons):
        area = tuple(district_polygons.to_crs("EPSG:4326").total_bounds)
        where, parameter = "the extent of DISTRICTS", "DISTRICTS"
    elif options.crs:
        used = CRS.from_user_input(options.crs).area_of_use
        if used is None:
            return
        area = (used.west, used.south, used.east, used.north)
        if used.west > used.east:  # across the antimeridian: not worth a guess
            return
        where = (
            f"the area of use of the CRS given, {options.crs} (longitude {used.west:g}° to "
            f"{used.east:g}°, latitude {used.south:g}° to {used.north:g}°)"
        )
        parameter = "CRS"
    else:
        return
    # A spread sample of the points decides when nothing is suspect (the usual case, and a
    # share is known to within a percent); a suspect survey is measured on every point.
    step = max(1, len(x) // SHARE_SAMPLE)
    for every in [step, 1] if step > 1 else [1]:
        as_read = share_inside(x[::every], y[::every], points_crs, area)
        swapped = share_inside(y[::every], x[::every], points_crs, area)
        if as_read > SWAP_SUSPECT_SHARE or swapped < SWAP_SUSPECT_SHARE or swapped < 2 * as_read:
            return
    message = (
        f"only {as_read:.0%} of the household points fall in {where}, but {swapped:.0%} would "
        "with their two coordinates swapped: the layer looks like it holds latitude as x and "
        "longitude as y (or northing as x). Swap the coordinate fields when you load the table "
        f"(X field = longitude/easting, Y field = latitude/northing), or check {parameter}."
    )
    if as_read == 0:
        raise PovmapInputError("INPUT", message)
    dropped = " The points outside are dropped." if parameter == "DISTRICTS" else ""
    reporter.warning(f"INPUT: {message}{dropped}")


def share_inside(
    x: np.ndarray, y: np.ndarray, crs: Any, area: tuple[float, float, float, float]
) -> float:
    """Share of points (x, y in ``crs``) whose longitude/latitude fall in ``area`` (w, s, e, n)."""
    from pyproj import CRS, Transformer

    if not len(x):
        return 0.0
    with np.errstate(invalid="ignore"):
        source = CRS.from_user_input(crs)
        if source == CRS.from_epsg(4326):  # already longitude, latitude (x, y: always_xy)
            lon, lat = np.asarray(x, dtype="float64"), np.asarray(y, dtype="float64")
        else:
            lon, lat = Transformer.from_crs(source, "EPSG:4326", always_xy=True).transform(
                np.asarray(x, dtype="float64"), np.asarray(y, dtype="float64")
            )
            lon, lat = np.asarray(lon), np.asarray(lat)
        west, south, east, north = area
        inside = (lon >= west) & (lon <= east) & (lat >= south) & (lat <= north)
    return float(inside.mean())
