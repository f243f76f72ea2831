"""People per cell from a population raster (people per pixel), weighted by the area of each pixel inside the cell.

A raster such as WorldPop or GHS-POP counts people per pixel, in any CRS and
resolution. A cell's population is the sum over the pixels it touches of
``pixel value × (area of the pixel inside the cell) / (pixel area)``, so the
people of a pixel split between two cells are split by area and the total is
kept.

Two ways, one answer:

- **Grid cells** (squares of one size on one lattice in their CRS, as the grids
  povmap builds), from a north-up raster of any resolution: the raster is read
  once, in strips of rows (memory bounded). Along each raster row the lattice's
  column edges cross at positions known from the exact coordinate transformation
  (every ``FRAME_STEP``-th pixel edge, linear between); the people between two
  crossings — whole pixels from the row's running sum, a crossed pixel split at the
  crossing — belong to one column of cells, and each such segment is shared between
  the rows of cells the raster row overlaps at the segment's centre, by how much of
  the raster row lies in each. Against shapely's exact pixel × cell intersections
  a cell's people are off by 0.02 % (median) near the lattice's central meridian and
  0.25 % three degrees from it, 1.3 % at most (boundary rows tilted by the grid's
  meridian convergence are split at their centre), and it costs about twice reading
  the raster (``scripts/bench_targeting.py``).
- **Other polygons** (hexagons, clipped cells) and mirrored rasters:
  ``population_polygons.PolygonWork`` rasterises the polygons onto a grid finer
  than the raster's (a boundary pixel's share known to 1/k² of a pixel).

Pixels that are nodata, NaN, infinite or negative count as 0 people; parts of
cells outside the raster count as 0 people and are reported (the share of each
cell's area inside the raster). QGIS's ``native:zonalstatisticsfb`` sum counts
whole pixels whose centre lies in the cell; the two agree to within the
boundary pixels' share (tested).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import PovmapInputError
from .population_polygons import PolygonWork, clean_people

if TYPE_CHECKING:
    import geopandas

    from ..progress import Reporter


LATTICE_TOLERANCE = 1e-6  # of a cell: how far a square's size and corners may be off the lattice
STRIP_PIXELS = 1_000_000  # raster pixels handled at once (their running sums: 8 MB)
GDAL_CACHE_MB = 64  # GDAL's block cache while summing (strips are read once)
FRAME_STEP = 32  # pixels between exact coordinate transformations (linear between)
DENSIFY_POINTS = 21  # points added along each edge of a box transformed between CRSs


def cell_population(
    geometries: geopandas.GeoSeries,
    path: str,
    parameter: str = "POPULATION",
    reporter: Reporter | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(people per cell as float64, share of each cell's area inside the raster) for a GeoSeries of polygons.

    ``geometries``: a GeoSeries with a CRS. Raises PovmapInputError naming
    ``parameter`` when the raster cannot be read, has no CRS or does not
    overlap the cells.
    """
    return windowed_cell_population(
        lambda: [geometries], len(geometries), path, parameter, reporter
    )


def windowed_cell_population(
    windows: Callable[[], Iterable[geopandas.GeoSeries]],
    count: int,
    path: str,
    parameter: str = "POPULATION",
    reporter: Reporter | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``cell_population`` of ``count`` cells given as consecutive GeoSeries (``windows()``
    reads them again each time it is called, e.g. a layer read window by window with
    ``vectors.read_windows``): memory holds one window's polygons and a few numbers per
    cell. The same numbers as all the polygons at once: the lattice is found from each
    cell's bounds and shape (``square_lattice``) and its cells summed in one pass; other
    polygons are rasterised window by window."""
    import rasterio

    try:
        source = rasterio.open(path)
    except Exception as error:
        raise PovmapInputError(parameter, f"cannot read the raster '{path}': {error}") from None
    # each strip of the raster is read once: GDAL's block cache (5 % of the memory by default)
    # would otherwise fill with a country's raster
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 1024 * 1024), source:
        if source.crs is None:
            raise PovmapInputError(
                parameter,
                f"the raster '{path}' has no CRS; set it (e.g. EPSG:4326 for WorldPop) and save it.",
            )
        if not source.transform.is_rectilinear:
            raise PovmapInputError(
                parameter, f"the raster '{path}' is rotated; warp it to a north-up grid first."
            )
        people = np.zeros(count, dtype="float64")
        inside = np.zeros(count, dtype="float64")
        if not count:
            return people, inside
        lattice = _lattice_of(_ShapeFacts.of_windows(windows()))
        lattice_work = _LatticeWork(source, lattice) if lattice is not None else None
        if lattice_work is not None and not lattice_work.usable:
            lattice_work = None  # a mirrored raster: rasterised like any polygon
        on_lattice = lattice_work.cells if lattice_work is not None else np.zeros(0, dtype="int64")
        others = np.setdiff1d(np.arange(count), on_lattice)
        extents, overlaps, done = [], False, 0.0
        if lattice_work is not None:
            extents.append(lattice_work.extent)
            overlaps = lattice_work.overlaps
            if overlaps:
                share_of_work = len(lattice_work.cells) / count
                part_people, part_inside = lattice_work.run(
                    reporter, functools.partial(_overall_percent, done, share_of_work)
                )
                people[lattice_work.cells], inside[lattice_work.cells] = part_people, part_inside
                done += share_of_work
        widths = [  # (no pass over the windows when every cell is on the lattice)
            PolygonWork(source, geometries, here).overlapping_widths()
            for here, geometries in (_others_by_window(windows(), others) if len(others) else [])
        ]
        overlapping = np.concatenate(widths) if widths else np.zeros(0)
        # one k for every window, as for all the polygons at once (PolygonWork)
        cell_width = float(np.median(overlapping)) if len(overlapping) else None
        for here, geometries in _others_by_window(windows(), others) if len(others) else []:
            part = PolygonWork(source, geometries, here, cell_width)
            extents.append(part.extent)
            overlaps |= part.overlaps
            share_of_work = len(here) / count
            part_people, part_inside = part.run(
                reporter, functools.partial(_overall_percent, done, share_of_work)
            )
            people[here], inside[here] = part_people, part_inside
            done += share_of_work
        if not overlaps:
            left, bottom, right, top = zip(*extents, strict=True)
            raise PovmapInputError(
                parameter,
                f"the raster '{path}' does not overlap the cells (raster extent {_extent(source.bounds)}, cells "
                f"{_extent((min(left), min(bottom), max(right), max(top)))} "
                f"in {source.crs.to_string()}); use a population raster of this area.",
            )
    return people, np.clip(inside, 0.0, 1.0)


def _others_by_window(
    windows: Iterable[geopandas.GeoSeries], others: np.ndarray
) -> Iterator[tuple[np.ndarray, geopandas.GeoSeries]]:
    """(cells, their polygons) of each window's ``others`` (the cells off the lattice)."""
    start = 0
    for geometries in windows:
        stop = start + len(geometries)
        here = others[(others >= start) & (others < stop)]
        if len(here):
            yield here, geometries.iloc[here - start]
        start = stop
        del geometries  # one window in memory at a time


def _overall_percent(done: float, share_of_work: float, fraction: float) -> float:
    return 100.0 * (done + fraction * share_of_work)


@dataclasses.dataclass
class SquareLattice:
    """Cells that are squares of one size on one lattice in their CRS (grids povmap builds)."""

    members: np.ndarray  # indexes into the geometries
    rows: np.ndarray  # each member's row and column on the lattice (from the top left)
    columns: np.ndarray
    left: float  # the lattice's top-left corner and cell size, in ``crs``
    top: float
    size: float
    crs: Any


def square_lattice(geometries: geopandas.GeoSeries) -> SquareLattice | None:
    """The geometries that are whole squares on one lattice (None when there are none).

    A member is a polygon of four corners, without holes, whose bounding box is
    a square of the most common size and whose corners fall on the lattice of
    that size through the first such square (to a millionth of a cell).
    """
    return _lattice_of(_ShapeFacts.of_windows([geometries]))


@dataclasses.dataclass
class _ShapeFacts:
    """What ``square_lattice`` needs of each polygon (a few numbers, not the polygon)."""

    bounds: np.ndarray  # [n, 4]
    quadrilateral: np.ndarray  # a Polygon of 4 corners (5 coordinates) without holes
    area: np.ndarray
    crs: Any

    @classmethod
    def of_windows(cls, windows: Iterable[geopandas.GeoSeries]) -> _ShapeFacts:
        import shapely

        bounds, quadrilateral, area, crs = [], [], [], None
        for geometries in windows:
            polygons = np.asarray(geometries.values, dtype=object)
            crs = geometries.crs if crs is None else crs
            bounds.append(shapely.bounds(polygons).reshape(-1, 4))
            quadrilateral.append(
                (shapely.get_type_id(polygons) == 3)  # Polygon
                & (shapely.get_num_coordinates(polygons) == 5)
                & (shapely.get_num_interior_rings(polygons) == 0)
            )
            area.append(shapely.area(polygons))
        return cls(
            np.concatenate(bounds) if bounds else np.zeros((0, 4)),
            np.concatenate(quadrilateral) if quadrilateral else np.zeros(0, dtype=bool),
            np.concatenate(area) if area else np.zeros(0),
            crs,
        )


def _lattice_of(facts: _ShapeFacts) -> SquareLattice | None:
    """``square_lattice`` of the polygons described by ``facts``."""
    bounds = facts.bounds
    if facts.crs is None or not len(bounds):
        return None
    width, height = bounds[:, 2] - bounds[:, 0], bounds[:, 3] - bounds[:, 1]
    finite = np.isfinite(width) & np.isfinite(height)
    if not finite.any():
        return None
    size = float(np.median(width[finite]))
    if not size > 0:
        return None
    tolerance = LATTICE_TOLERANCE * size
    with np.errstate(invalid="ignore"):
        square = (
            finite
            & facts.quadrilateral
            & (np.abs(width - size) <= tolerance)
            & (np.abs(height - size) <= tolerance)
            & (np.abs(facts.area - size * size) <= 2 * tolerance * size)
        )
    if not square.any():
        return None
    reference = np.flatnonzero(square)[0]
    columns = (bounds[:, 0] - bounds[reference, 0]) / size
    rows = (bounds[reference, 3] - bounds[:, 3]) / size
    with np.errstate(invalid="ignore"):
        square &= (np.abs(columns - np.round(columns)) <= LATTICE_TOLERANCE) & (
            np.abs(rows - np.round(rows)) <= LATTICE_TOLERANCE
        )
    members = np.flatnonzero(square)
    columns, rows = (
        np.round(columns[members]).astype("int64"),
        np.round(rows[members]).astype("int64"),
    )
    first_column, first_row = int(columns.min()), int(rows.min())
    return SquareLattice(
        members=members,
        rows=rows - first_row,
        columns=columns - first_column,
        left=float(bounds[reference, 0] + first_column * size),
        top=float(bounds[reference, 3] - first_row * size),
        size=size,
        crs=facts.crs,
    )


class _LatticeWork:
    """People of lattice cells: the raster read once in strips of rows, each row cut at the
    cells' edges (``_add_strip``)."""

    def __init__(self, source: Any, lattice: SquareLattice) -> None:
        from rasterio.warp import transform_bounds

        self.source, self.lattice, self.cells = source, lattice, lattice.members
        size = lattice.size
        self.extent = transform_bounds(  # the cells' extent in the raster's CRS
            lattice.crs,
            source.crs,
            lattice.left,
            lattice.top - (int(lattice.rows.max()) + 1) * size,
            lattice.left + (int(lattice.columns.max()) + 1) * size,
            lattice.top,
            densify_pts=DENSIFY_POINTS,
        )
        left, bottom, right, top = source.bounds
        self.overlaps = (
            self.extent[0] < right
            and self.extent[2] > left
            and self.extent[1] < top
            and self.extent[3] > bottom
        )
        self.usable = self._rows_fit_cells()

    def _rows_fit_cells(self) -> bool:
        """Whether this way applies: the raster's columns run east along the lattice's columns
        and its rows south along the lattice's rows (north-up, not mirrored), checked at the
        centre of the cells' extent."""
        from rasterio.warp import transform

        source, lattice = self.source, self.lattice
        x = (self.extent[0] + self.extent[2]) / 2
        y = (self.extent[1] + self.extent[3]) / 2
        a, e = source.transform.a, source.transform.e
        tx, ty = transform(source.crs, lattice.crs, [x, x + a, x], [y, y, y + e])
        return bool(tx[1] > tx[0] and ty[2] < ty[0])

    def run(
        self, reporter: Reporter | None, progress: Callable[[float], float]
    ) -> tuple[np.ndarray, np.ndarray]:
        import rasterio.windows

        source, lattice = self.source, self.lattice
        people = np.zeros(len(self.cells), dtype="float64")
        if not self.overlaps:
            return people, np.zeros(len(self.cells), dtype="float64")
        wanted = rasterio.windows.from_bounds(*self.extent, transform=source.transform)
        row0 = max(0, int(math.floor(wanted.row_off)) - 1)
        column0 = max(0, int(math.floor(wanted.col_off)) - 1)
        row1 = min(source.height, int(math.ceil(wanted.row_off + wanted.height)) + 1)
        column1 = min(source.width, int(math.ceil(wanted.col_off + wanted.width)) + 1)
        strip_rows = max(1, STRIP_PIXELS // max(1, column1 - column0))
        order = np.argsort(lattice.rows, kind="stable")  # for each strip: its rows' cells
        sorted_rows = lattice.rows[order]
        for first in range(row0, row1, strip_rows):
            if reporter is not None:
                reporter.check_canceled()
                reporter.progress(progress((first - row0) / max(1, row1 - row0)))
            window = rasterio.windows.Window(
                column0, first, column1 - column0, min(strip_rows, row1 - first)
            )
            self._add_strip(window, order, sorted_rows, people)
        return people, self._inside_share()

    def _add_strip(
        self, window: Any, order: np.ndarray, sorted_rows: np.ndarray, people: np.ndarray
    ) -> None:
        """Add one strip of the raster's rows to the lattice cells they cover.

        Along each raster row, the lattice's column edges cross at known positions
        (the exact transformation at every ``FRAME_STEP``-th pixel edge, linear
        between); the people between two crossings — whole pixels from the row's
        running sum, and the crossed pixels split at the crossing, people spread
        evenly within a pixel — belong to one column of cells. Each such segment is
        then shared among the rows of cells the raster row overlaps at the segment's
        centre, by how much of the raster row's height lies in each. Both splits are
        by area: a pixel's people go to the cells its area lies in.
        """
        source, lattice = self.source, self.lattice
        values = clean_people(source.read(1, window=window, masked=True))
        if not (values > 0).any():
            return
        height, width = values.shape
        running = np.zeros((height, width + 1), dtype="float64")
        np.cumsum(values, axis=1, out=running[:, 1:])
        edges, u, v, half_height = self._row_frame(window)
        lattice_columns, lattice_rows, halves, sums = [], [], [], []
        for row in range(height):
            # u (lattice column units) increases along the row: where it crosses whole numbers
            first, last = u[row, 0], u[row, -1]
            crossings = np.arange(math.ceil(first), math.floor(last) + 1, dtype="float64")
            at = np.concatenate([[0.0], np.interp(crossings, u[row], edges), [float(width)]])
            pixel = np.minimum(at.astype("int64"), width - 1)
            before = running[row, pixel] + (at - pixel) * values[row, pixel]
            sums.append(np.diff(before))
            lattice_columns.append(math.floor(first) + np.arange(len(at) - 1))
            centres = (at[:-1] + at[1:]) / 2
            lattice_rows.append(np.interp(centres, edges, v[row]))
            if not isinstance(half_height, float):
                halves.append(np.interp(centres, edges, half_height[row]))
        if halves:
            half_height = np.concatenate(halves)
        segment_sum = np.concatenate(sums)
        segment_column = np.concatenate(lattice_columns)
        segment_v = np.concatenate(lattice_rows)
        # The raster row spans lattice rows segment_v ± half_height: its people go to each
        # row of cells it overlaps in proportion to the overlap.
        top_edge, bottom_edge = segment_v - half_height, segment_v + half_height
        first_row = np.floor(top_edge).astype("int64")
        spanned = int(np.max(np.ceil(bottom_edge) - first_row))
        row0, row1 = int(first_row.min()), int(first_row.max()) + spanned
        column0, column1 = int(segment_column.min()), int(segment_column.max()) + 1
        cells = order[
            np.searchsorted(sorted_rows, max(row0, 0)) : np.searchsorted(sorted_rows, row1)
        ]
        cells = cells[(lattice.columns[cells] >= column0) & (lattice.columns[cells] < column1)]
        if not len(cells):
            return
        stride = column1 - column0
        lookup = np.full((row1 - row0) * stride, -1, dtype="int64")
        lookup[(lattice.rows[cells] - row0) * stride + lattice.columns[cells] - column0] = cells
        at_cell = (first_row - row0) * stride + (segment_column - column0)
        for below in range(spanned):
            overlap = np.minimum(bottom_edge, first_row + below + 1) - np.maximum(
                top_edge, first_row + below
            )
            share = np.clip(overlap, 0.0, None) / (2 * half_height)
            taken = np.flatnonzero(share > 0)
            _add_people(
                people, lookup[at_cell[taken] + below * stride], segment_sum[taken] * share[taken]
            )

    def _row_frame(self, window: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
        """For each raster row of ``window``, at pixel-edge positions ``edges`` along it
        (every ``FRAME_STEP``-th and the last): the lattice column u and row v of the row's
        centre line there, from the exact transformation; and the raster row's half
        height in lattice rows (one number where it varies by under a thousandth)."""
        from rasterio.warp import transform

        source, lattice = self.source, self.lattice
        height, width = int(window.height), int(window.width)
        edges = np.unique(np.r_[np.arange(0, width, FRAME_STEP), width]).astype("float64")
        rows = np.unique(np.r_[np.arange(0, height, FRAME_STEP), height - 1])
        a, c, e, f = (
            source.transform.a,
            source.transform.c,
            source.transform.e,
            source.transform.f,
        )
        x = c + (int(window.col_off) + edges) * a
        y = f + (int(window.row_off) + rows + 0.5) * e

        def lattice_units(dy: float) -> tuple[np.ndarray, np.ndarray]:
            grid_x, grid_y = np.meshgrid(x, y + dy)
            tx, ty = transform(source.crs, lattice.crs, grid_x.ravel(), grid_y.ravel())
            return (
                ((np.asarray(tx) - lattice.left) / lattice.size).reshape(grid_x.shape),
                ((lattice.top - np.asarray(ty)) / lattice.size).reshape(grid_x.shape),
            )

        u, v = lattice_units(0.0)
        _, south = lattice_units(e / 2)
        _, north = lattice_units(-e / 2)
        half = np.abs(south - north) / 2
        index, weight = _between(rows, height)
        following = np.minimum(index + 1, len(rows) - 1)

        def every_row(coarse: np.ndarray) -> np.ndarray:
            return coarse[index] * (1 - weight[:, None]) + coarse[following] * weight[:, None]

        steady = float(half.max() - half.min()) <= 1e-3 * float(half.mean())
        return edges, every_row(u), every_row(v), float(half.mean()) if steady else every_row(half)

    def _inside_share(self) -> np.ndarray:
        """Each cell's share of its area inside the raster: 1 for the cells well inside, the
        exact intersection (in the raster's CRS) for those near its edge."""
        import geopandas
        import shapely
        from rasterio.warp import transform

        source, lattice, size = self.source, self.lattice, self.lattice.size
        share = np.ones(len(self.cells), dtype="float64")
        # The raster's edges in the lattice's CRS, densified: cells inside the rectangle
        # bounded by each edge's innermost point are inside the raster.
        left, bottom, right, top = source.bounds
        along_x = np.linspace(left, right, DENSIFY_POINTS)
        along_y = np.linspace(bottom, top, DENSIFY_POINTS)

        def edge(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            tx, ty = transform(source.crs, lattice.crs, xs, ys)
            return np.asarray(tx), np.asarray(ty)

        inner = (
            edge(np.full(DENSIFY_POINTS, left), along_y)[0].max(),
            edge(along_x, np.full(DENSIFY_POINTS, bottom))[1].max(),
            edge(np.full(DENSIFY_POINTS, right), along_y)[0].min(),
            edge(along_x, np.full(DENSIFY_POINTS, top))[1].min(),
        )
        cell_left = lattice.left + lattice.columns * size
        cell_top = lattice.top - lattice.rows * size
        near_edge = np.flatnonzero(
            (cell_left < inner[0])
            | (cell_top - size < inner[1])
            | (cell_left + size > inner[2])
            | (cell_top > inner[3])
        )
        if len(near_edge):
            squares = geopandas.GeoSeries(
                shapely.box(
                    cell_left[near_edge],
                    cell_top[near_edge] - size,
                    cell_left[near_edge] + size,
                    cell_top[near_edge],
                ),
                crs=lattice.crs,
            ).to_crs(source.crs)
            polygons = np.asarray(squares.values, dtype=object)
            areas = shapely.area(polygons)
            with np.errstate(divide="ignore", invalid="ignore"):
                share[near_edge] = np.where(
                    areas > 0,
                    shapely.area(
                        shapely.intersection(polygons, shapely.box(left, bottom, right, top))
                    )
                    / areas,
                    0.0,
                )
        return share


def _add_people(people: np.ndarray, cells: np.ndarray, weights: np.ndarray) -> None:
    """people[cell] += weight for each cell ≥ 0 (−1: a lattice position with no cell)."""
    kept = cells >= 0
    people += np.bincount(cells[kept], weights=weights[kept], minlength=len(people))


def _between(known: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """For 0 … length − 1: the index of the known position at or before it and the weight
    of the next one."""
    every = np.arange(length)
    index = np.clip(np.searchsorted(known, every, side="right") - 1, 0, len(known) - 1)
    following = known[np.minimum(index + 1, len(known) - 1)]
    gap = np.maximum(following - known[index], 1)
    return index, np.where(following > known[index], (every - known[index]) / gap, 0.0)


def _extent(bounds: Iterable[float]) -> str:
    return "(" + ", ".join(f"{value:.6g}" for value in bounds) + ")"
