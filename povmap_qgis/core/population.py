"""People per cell from a population raster (people per pixel), weighted by the area of each pixel inside the cell.

A raster such as WorldPop or GHS-POP counts people per pixel, in any CRS and
resolution. A cell's population is the sum over the pixels it touches of
``pixel value × (area of the pixel inside the cell) / (pixel area)``, so the
people of a pixel split between two cells are split by area and the total is
kept. The area fractions are measured by rasterising the cells (transformed
into the raster's CRS) onto a grid ``k`` times finer than the raster's, with
``k`` chosen so that a cell spans at least ``SUBPIXELS_ACROSS_CELL`` of those
sub-pixels (at most ``MAX_SUPERSAMPLING``): the fraction of a boundary pixel
is then known to 1/k² of a pixel. Work goes tile by tile, so memory stays
bounded whatever the size of the raster.

Pixels that are nodata, NaN or negative count as 0 people; parts of cells
outside the raster count as 0 people and are reported. QGIS's
``native:zonalstatisticsfb`` sum counts whole pixels whose centre lies in
the cell; the two agree to within the boundary pixels' share (tested).
"""

import math

import numpy as np

from .errors import PovmapInputError

SUBPIXELS_ACROSS_CELL = 100
MAX_SUPERSAMPLING = 16
TILE_SUBPIXELS = 2048  # a tile is at most this many sub-pixels across (memory bound)


def cell_population(geometries, path, parameter="POPULATION", reporter=None):
    """(people per cell as float64, share of each cell's area inside the raster) for a GeoSeries of polygons.

    ``geometries``: a GeoSeries with a CRS. Raises PovmapInputError naming
    ``parameter`` when the raster cannot be read, has no CRS or does not
    overlap the cells.
    """
    import rasterio
    import rasterio.features
    import rasterio.windows
    import shapely

    try:
        source = rasterio.open(path)
    except Exception as error:
        raise PovmapInputError(parameter, f"cannot read the raster '{path}': {error}") from None
    with source:
        if source.crs is None:
            raise PovmapInputError(
                parameter,
                f"the raster '{path}' has no CRS; set it (e.g. EPSG:4326 for WorldPop) and save it.",
            )
        if not source.transform.is_rectilinear:
            raise PovmapInputError(
                parameter, f"the raster '{path}' is rotated; warp it to a north-up grid first."
            )
        cells = geometries.to_crs(source.crs)
        polygons = np.asarray(cells.values, dtype=object)
        bounds = shapely.bounds(polygons)
        left, bottom, right, top = source.bounds
        overlaps = (
            (bounds[:, 0] < right)
            & (bounds[:, 2] > left)
            & (bounds[:, 1] < top)
            & (bounds[:, 3] > bottom)
        )
        if not overlaps.any():
            raise PovmapInputError(
                parameter,
                f"the raster '{path}' does not overlap the cells (raster extent {_extent(source.bounds)}, cells "
                f"{_extent((bounds[:, 0].min(), bounds[:, 1].min(), bounds[:, 2].max(), bounds[:, 3].max()))} "
                f"in {source.crs.to_string()}); use a population raster of this area.",
            )
        pixel_width, pixel_height = abs(source.transform.a), abs(source.transform.e)
        cell_width = float(np.median(bounds[overlaps, 2] - bounds[overlaps, 0]))
        k = int(
            min(
                MAX_SUPERSAMPLING,
                max(1, math.ceil(SUBPIXELS_ACROSS_CELL * pixel_width / max(cell_width, 1e-12))),
            )
        )
        tile = max(1, TILE_SUBPIXELS // k)
        wanted = rasterio.windows.from_bounds(
            max(left, bounds[overlaps, 0].min()),
            max(bottom, bounds[overlaps, 1].min()),
            min(right, bounds[overlaps, 2].max()),
            min(top, bounds[overlaps, 3].max()),
            source.transform,
        ).round_offsets(op="floor")
        row0, col0 = max(0, int(wanted.row_off)), max(0, int(wanted.col_off))
        row1 = min(source.height, int(math.ceil(wanted.row_off + wanted.height)) + 1)
        col1 = min(source.width, int(math.ceil(wanted.col_off + wanted.width)) + 1)
        people = np.zeros(len(polygons), dtype="float64")
        subpixels = np.zeros(len(polygons), dtype="float64")
        parts, owners = _polygon_parts(polygons)
        part_bounds = bounds[owners]
        tiles = [(r, c) for r in range(row0, row1, tile) for c in range(col0, col1, tile)]
        for index, (r, c) in enumerate(tiles):
            if reporter is not None:
                reporter.check_canceled()
                reporter.progress(100.0 * index / max(1, len(tiles)))
            window = rasterio.windows.Window(c, r, min(tile, col1 - c), min(tile, row1 - r))
            x0, y1 = source.transform * (window.col_off, window.row_off)
            x1, y0 = source.transform * (
                window.col_off + window.width,
                window.row_off + window.height,
            )
            x0, x1, y0, y1 = min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)
            inside = np.flatnonzero(
                (part_bounds[:, 0] < x1)
                & (part_bounds[:, 2] > x0)
                & (part_bounds[:, 1] < y1)
                & (part_bounds[:, 3] > y0)
            )
            if not len(inside):
                continue
            values = source.read(1, window=window, masked=True)
            values = np.where(
                np.ma.getmaskarray(values), 0.0, np.ma.getdata(values).astype("float64")
            )
            values[~np.isfinite(values) | (values < 0)] = 0.0
            transform = rasterio.windows.transform(
                window, source.transform
            ) * rasterio.Affine.scale(1.0 / k)
            shape = (int(window.height) * k, int(window.width) * k)
            burnt = rasterio.features.rasterize(
                ((parts[i], int(owners[i]) + 1) for i in inside),
                out_shape=shape,
                transform=transform,
                fill=0,
                dtype="int32",
            )
            covered = burnt > 0
            if not covered.any():
                continue
            rows, columns = np.nonzero(covered)
            owner = burnt[rows, columns] - 1
            people += np.bincount(
                owner, weights=values[rows // k, columns // k] / (k * k), minlength=len(people)
            )
            subpixels += np.bincount(owner, minlength=len(people))
        areas = shapely.area(polygons)
        with np.errstate(divide="ignore", invalid="ignore"):
            inside_share = np.where(
                areas > 0, subpixels * pixel_width * pixel_height / (k * k) / areas, 0.0
            )
    return people, np.clip(inside_share, 0.0, 1.0)


def _polygon_parts(polygons):
    """GeoJSON-like dicts of the polygon parts and the index of the cell each belongs to.

    Building the dicts from coordinate arrays is ~30 times faster than
    shapely's ``__geo_interface__`` for a million cells.
    """
    import shapely

    parts, owners = shapely.get_parts(polygons, return_index=True)
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    coordinates, ring_of = shapely.get_coordinates(rings, return_index=True)
    ring_starts = np.searchsorted(ring_of, np.arange(len(rings) + 1))
    part_starts = np.searchsorted(ring_part, np.arange(len(parts) + 1))
    dicts = []
    for part in range(len(parts)):
        dicts.append(
            {
                "type": "Polygon",
                "coordinates": [
                    coordinates[ring_starts[ring] : ring_starts[ring + 1]].tolist()
                    for ring in range(part_starts[part], part_starts[part + 1])
                ],
            }
        )
    return dicts, owners


def _extent(bounds):
    return "(" + ", ".join(f"{value:.6g}" for value in bounds) + ")"
