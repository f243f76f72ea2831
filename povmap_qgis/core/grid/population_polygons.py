"""People of any polygons from a population raster: the polygons rasterised onto a finer grid.

The way ``population.cell_population`` takes for polygons that are not whole
squares on one lattice (hexagons, clipped cells) and for mirrored rasters. The
polygons, transformed into the raster's CRS, are rasterised onto a grid ``k``
times finer than the raster's, with ``k`` chosen so that a polygon spans at least
``SUBPIXELS_ACROSS_CELL`` of those sub-pixels (at most ``MAX_SUPERSAMPLING``):
the share of a boundary pixel is then known to 1/k² of a pixel. Work goes tile
by tile, so memory stays bounded whatever the size of the raster.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import geopandas

    from ..progress import Reporter


SUBPIXELS_ACROSS_CELL = 100
MAX_SUPERSAMPLING = 16
TILE_SUBPIXELS = 2048  # a tile is at most this many sub-pixels across (memory bound)


class PolygonWork:
    """People of any polygons: rasterised onto a grid ``k`` times finer than the raster's."""

    def __init__(
        self,
        source: Any,
        geometries: geopandas.GeoSeries,
        cells: np.ndarray,
        cell_width: float | None = None,
    ) -> None:
        """``cell_width``: the polygons' typical width in the raster's CRS, which chooses ``k``
        (default: the median of these polygons'; polygons read window by window give all
        windows' so that each window is rasterised as finely as the whole)."""
        import shapely

        self.source, self.cells, self.cell_width = source, cells, cell_width
        self.polygons = np.asarray(geometries.to_crs(source.crs).values, dtype=object)
        self.bounds = shapely.bounds(self.polygons)
        left, bottom, right, top = source.bounds
        self.overlapping = (
            (self.bounds[:, 0] < right)
            & (self.bounds[:, 2] > left)
            & (self.bounds[:, 1] < top)
            & (self.bounds[:, 3] > bottom)
        )
        self.overlaps = bool(self.overlapping.any())
        self.extent = (
            float(np.nanmin(self.bounds[:, 0])),
            float(np.nanmin(self.bounds[:, 1])),
            float(np.nanmax(self.bounds[:, 2])),
            float(np.nanmax(self.bounds[:, 3])),
        )

    def overlapping_widths(self) -> np.ndarray:
        """The widths, in the raster's CRS, of the polygons that overlap the raster (their
        median is the default ``cell_width``)."""
        return (self.bounds[:, 2] - self.bounds[:, 0])[self.overlapping]

    def run(
        self, reporter: Reporter | None, progress: Callable[[float], float]
    ) -> tuple[np.ndarray, np.ndarray]:
        import rasterio
        import rasterio.features
        import rasterio.windows
        import shapely

        source, polygons, bounds, overlaps = (
            self.source,
            self.polygons,
            self.bounds,
            self.overlapping,
        )
        people = np.zeros(len(polygons), dtype="float64")
        subpixels = np.zeros(len(polygons), dtype="float64")
        if not self.overlaps:
            return people, subpixels
        left, bottom, right, top = source.bounds
        pixel_width, pixel_height = abs(source.transform.a), abs(source.transform.e)
        cell_width = (
            self.cell_width
            if self.cell_width is not None
            else float(np.median(self.overlapping_widths()))
        )
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
        parts = _PolygonParts(polygons)
        part_bounds = bounds[parts.owners]
        tiles = [(r, c) for r in range(row0, row1, tile) for c in range(col0, col1, tile)]
        for index, (r, c) in enumerate(tiles):
            if reporter is not None:
                reporter.check_canceled()
                reporter.progress(progress(index / max(1, len(tiles))))
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
            values = clean_people(source.read(1, window=window, masked=True))
            transform = rasterio.windows.transform(
                window, source.transform
            ) * rasterio.Affine.scale(1.0 / k)
            height, width = int(window.height), int(window.width)
            burnt = rasterio.features.rasterize(
                parts.geojson(inside),
                out_shape=(height * k, width * k),
                transform=transform,
                fill=0,
                dtype="int32",
            )
            _add_tile(burnt, values.ravel(), k, people, subpixels)
        areas = shapely.area(polygons)
        with np.errstate(divide="ignore", invalid="ignore"):
            inside_share = np.where(
                areas > 0, subpixels * pixel_width * pixel_height / (k * k) / areas, 0.0
            )
        return people, inside_share


def clean_people(values: np.ma.MaskedArray) -> np.ndarray:
    """People per pixel as float64, 0 where the raster has nodata, NaN, ±inf or a negative value."""
    cleaned = np.where(np.ma.getmaskarray(values), 0.0, np.ma.getdata(values).astype("float64"))
    cleaned[~np.isfinite(cleaned) | (cleaned < 0)] = 0.0
    return cleaned


def _add_tile(
    burnt: np.ndarray, values: np.ndarray, k: int, people: np.ndarray, subpixels: np.ndarray
) -> None:
    """Add a tile's people to the cells: ``burnt`` holds cell index + 1 per sub-pixel (0: none).

    A pixel whose k × k sub-pixels all belong to one cell gives it all its
    people at once; a pixel on a boundary shares them by sub-pixel counts.
    """
    import numpy as np

    height, width = burnt.shape[0] // k, burnt.shape[1] // k
    blocks = burnt.reshape(height, k, width, k).transpose(0, 2, 1, 3).reshape(height * width, k * k)
    first = blocks[:, 0]
    whole = (blocks == first[:, None]).all(axis=1)
    taken = whole & (first > 0)
    if taken.any():
        owner = first[taken] - 1
        people += np.bincount(owner, weights=values[taken], minlength=len(people))
        subpixels += np.bincount(owner, minlength=len(people)) * (k * k)
    shared = np.flatnonzero(~whole)
    if len(shared):
        labels = blocks[shared].ravel()
        weights = np.repeat(values[shared] / (k * k), k * k)
        kept = labels > 0
        people += np.bincount(labels[kept] - 1, weights=weights[kept], minlength=len(people))
        subpixels += np.bincount(labels[kept] - 1, minlength=len(people))


class _PolygonParts:
    """The polygon parts of the cells, handed to rasterio as GeoJSON-like dicts a tile at a time.

    Building the dicts from coordinate arrays is ~30 times faster than
    shapely's ``__geo_interface__``, and only a tile's parts exist at once.
    """

    def __init__(self, polygons: Any) -> None:
        import numpy as np
        import shapely

        parts, self.owners = shapely.get_parts(polygons, return_index=True)
        rings, ring_part = shapely.get_rings(parts, return_index=True)
        self.coordinates, ring_of = shapely.get_coordinates(rings, return_index=True)
        self.ring_starts = np.searchsorted(ring_of, np.arange(len(rings) + 1))
        self.part_starts = np.searchsorted(ring_part, np.arange(len(parts) + 1))
        self.ring_list = self.ring_starts.tolist()

    def geojson(self, selected: np.ndarray) -> Iterator[tuple[dict[str, Any], int]]:
        """(dict, cell index + 1) of the parts ``selected`` (indexes), for ``rasterize``."""
        import numpy as np

        first_ring, end_ring = self.part_starts[selected], self.part_starts[selected + 1]
        start, end = self.ring_starts[first_ring], self.ring_starts[end_ring]
        lengths = end - start
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        gathered = np.repeat(start - offsets[:-1], lengths) + np.arange(offsets[-1])
        coordinates = self.coordinates[gathered].tolist()
        ring_starts = self.ring_list
        shifts = (offsets[:-1] - start).tolist()
        owners = (self.owners[selected] + 1).tolist()
        for first, end, shift, owner in zip(
            first_ring.tolist(), end_ring.tolist(), shifts, owners, strict=True
        ):
            yield (
                {
                    "type": "Polygon",
                    "coordinates": [
                        coordinates[ring_starts[ring] + shift : ring_starts[ring + 1] + shift]
                        for ring in range(first, end)
                    ],
                },
                owner,
            )
