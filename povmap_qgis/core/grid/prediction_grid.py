"""Cells covering districts or an area of interest (pipeline step 2).

Same alignment and ids as the training grid, so cells of a surveyed and an
unsurveyed district never collide and a cell keeps its id across runs. Each
cell takes the district it overlaps most. With a habitability raster (a
settlement or population layer), only cells whose mean reaches a minimum are
kept — the mean being the raster averaged onto the cell (GDAL's ``average``
resampling; nodata, NaN and ±inf ignored).

Memory stays bounded on large areas: candidate cells are handled in blocks of
at most ``BLOCK_CELLS`` (a band of grid rows), the habitability raster is
averaged one band of rows at a time and the layer is written in chunks, so
only compact per-cell arrays (row, column, district, mean) grow with the
area. The number of candidate cells (the bounding box of AREA in cells) is
limited by what the machine can hold: ``BYTES_PER_CANDIDATE`` per candidate
must fit in ``MEMORY_SHARE`` of the memory available when the run starts,
and never more than ``MAX_CANDIDATE_CELLS`` (a day's work on two cores).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import vectors
from ..errors import PovmapInputError
from ..geopackage import GRID_FORMAT_VERSION, write_layer_chunks
from ..names import DEFAULT_CELL_SIZE
from ..progress import Reporter
from . import cells

if TYPE_CHECKING:
    import geopandas
    from pyproj import CRS


BLOCK_CELLS = 65_536
"""Candidate cells handled at once (also the rows × columns of one raster window)."""
WRITE_CHUNK_CELLS = 50_000
"""Cells written to the GeoPackage at once."""
BYTES_PER_CANDIDATE = 64
"""Compact arrays kept per cell for the whole area (row, column, district, mean, ordering)."""
MEMORY_SHARE = 0.25
MAX_CANDIDATE_CELLS = 50_000_000


@dataclasses.dataclass
class PredictionGridOptions:
    area_path: str
    output_path: str
    area_layer: str | None = None
    district_field: str | None = None
    cell_size: float = DEFAULT_CELL_SIZE
    crs: str | None = None
    habitable_path: str | None = None
    habitable_band: int = 1
    habitable_min: float | None = None
    style_qml_path: str | None = None


def build_prediction_grid(
    options: PredictionGridOptions, reporter: Reporter | None = None
) -> dict[str, Any]:
    reporter = reporter or Reporter()
    started = time.monotonic()
    cells.check_cell_size(options.cell_size)
    counts: dict[str, Any] = {}

    areas = vectors.read_polygons(
        options.area_path,
        options.area_layer,
        "AREA",
        field=options.district_field,
        reporter=reporter,
    )
    lonlat_bounds = tuple(areas.to_crs("EPSG:4326").total_bounds)
    grid_crs, crs_note = cells.working_crs(options.crs, lonlat_bounds)
    reporter.info(crs_note)
    if options.crs:
        centre = (
            (lonlat_bounds[0] + lonlat_bounds[2]) / 2,
            (lonlat_bounds[1] + lonlat_bounds[3]) / 2,
        )
        cells.check_crs_suits(grid_crs, centre, options.cell_size, reporter.warning)
    areas = areas.to_crs(grid_crs)
    names = np.full(len(areas), None, dtype=object)
    if options.district_field:
        names[:] = [
            None if name is None else str(name)
            for name in areas[options.district_field].to_numpy(dtype=object)
        ]
    reporter.progress(10)

    rows, cols, polygon_index = _covering_cells(areas, options, reporter)
    counts["cells_covering"] = len(rows)
    reporter.progress(60)
    reporter.check_canceled()

    habitable_mean = None
    if options.habitable_path:
        habitable_mean = _cell_means(
            options.habitable_path, options.habitable_band, rows, cols, options.cell_size, grid_crs
        )
        unknown = ~np.isfinite(habitable_mean)
        keep = np.isfinite(habitable_mean)
        if options.habitable_min is not None:
            keep &= habitable_mean >= options.habitable_min
        counts["cells_no_habitable_data"] = int(unknown.sum())
        counts["cells_not_habitable"] = int((~keep & ~unknown).sum())
        rows, cols, polygon_index, habitable_mean = (
            rows[keep],
            cols[keep],
            polygon_index[keep],
            habitable_mean[keep],
        )
        reporter.info(
            f"HABITABLE: {counts['cells_not_habitable']} cells below HABITABLE_MIN and {counts['cells_no_habitable_data']} without raster data were left out."
        )
    if not len(rows):
        raise PovmapInputError(
            "HABITABLE_MIN" if options.habitable_path else "AREA",
            "no cell is left; lower HABITABLE_MIN or check that the HABITABLE raster covers AREA."
            if options.habitable_path
            else "the polygons cover no cell.",
        )
    reporter.progress(85)
    reporter.check_canceled()

    chunks = _cells_frames(
        rows, cols, polygon_index, habitable_mean, options.cell_size, grid_crs, names
    )
    write_layer_chunks(
        chunks,
        options.output_path,
        options.style_qml_path,
        "povmap prediction grid",
        metadata={
            "povmap_grid_kind": "prediction",
            "povmap_grid_format": GRID_FORMAT_VERSION,
            "cell_size": options.cell_size,
        },
    )
    counts["cells_kept"] = len(rows)
    counts["crs"] = cells.crs_to_string(grid_crs)
    counts["seconds"] = round(time.monotonic() - started, 3)
    reporter.progress(100)
    reporter.info(f"Prediction grid: {counts['cells_kept']} cells of {options.cell_size:g} m.")
    return counts


def candidate_cell_limit(available_bytes: int | None = None) -> int:
    """How many candidate cells this machine can handle (see the module docstring)."""
    if available_bytes is None:
        available_bytes = available_memory()
    by_memory = int(available_bytes * MEMORY_SHARE) // BYTES_PER_CANDIDATE
    return max(BLOCK_CELLS, min(MAX_CANDIDATE_CELLS, by_memory))


def available_memory() -> int:
    """Bytes of memory available to a new allocation (MemAvailable on Linux)."""
    import os

    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return 4 * 1024**3


def _covering_cells(
    areas: geopandas.GeoDataFrame, options: PredictionGridOptions, reporter: Reporter
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cells whose square overlaps the polygons with a positive area.

    Returns rows, columns and the index of the polygon each cell overlaps most,
    sorted by row then column (the cell id order).
    """
    import shapely

    size = options.cell_size
    xmin, ymin, xmax, ymax = areas.total_bounds
    row_start, row_stop = int(np.floor(ymin / size)), int(np.ceil(ymax / size))
    col_start, col_stop = int(np.floor(xmin / size)), int(np.ceil(xmax / size))
    candidates = (row_stop - row_start) * (col_stop - col_start)
    limit = candidate_cell_limit()
    if candidates > limit:
        raise PovmapInputError(
            "CELL_SIZE",
            f"the area would need {candidates:,} candidate cells; this machine can handle "
            f"{limit:,} (a quarter of its available memory); use a larger CELL_SIZE or a "
            "smaller AREA (e.g. one run per district).",
        )
    polygons = np.asarray(areas.geometry.values, dtype=object)
    shapely.prepare(polygons)
    polygon_tree = shapely.STRtree(polygons)
    blocks = list(cell_blocks(row_start, row_stop, col_start, col_stop))
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    band: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    band_start = None
    for done, block in enumerate(blocks):
        if band and block[0] != band_start:
            parts.append(_in_cell_order(band))
            band = []
        band_start = block[0]
        band.append(_block_cells(block, size, polygons, polygon_tree))
        reporter.check_canceled()
        reporter.progress(10 + 50 * (done + 1) / len(blocks))
    parts.append(_in_cell_order(band))
    rows, cols, polygon_index = (np.concatenate(columns) for columns in zip(*parts, strict=True))
    return rows, cols, polygon_index


def cell_blocks(
    row_start: int, row_stop: int, col_start: int, col_stop: int, block_cells: int | None = None
) -> Iterator[tuple[int, int, int, int]]:
    """(row start, row stop, col start, col stop) of blocks of at most ``block_cells`` cells.

    Bands of whole rows (split into column ranges when one row is longer than a
    block), in row order.
    """
    block_cells = block_cells or BLOCK_CELLS
    width = min(col_stop - col_start, block_cells)
    band_rows = max(1, block_cells // max(width, 1))
    for first_row in range(row_start, row_stop, band_rows):
        for first_col in range(col_start, col_stop, width):
            yield (
                first_row,
                min(first_row + band_rows, row_stop),
                first_col,
                min(first_col + width, col_stop),
            )


def _block_cells(
    block: tuple[int, int, int, int], size: float, polygons: Any, polygon_tree: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, columns and most-overlapped polygon of one block's covering cells."""
    import shapely

    first_row, stop_row, first_col, stop_col = block
    extent = shapely.box(first_col * size, first_row * size, stop_col * size, stop_row * size)
    near = np.sort(polygon_tree.query(extent, predicate="intersects"))
    if not len(near):
        return _no_cells()
    rows, cols = (
        grid.ravel()
        for grid in np.meshgrid(
            np.arange(first_row, stop_row, dtype="int64"),
            np.arange(first_col, stop_col, dtype="int64"),
            indexing="ij",
        )
    )
    boxes = cells.cell_boxes(rows, cols, size)
    box_index, near_index = shapely.STRtree(boxes).query(polygons[near], predicate="intersects")[
        ::-1
    ]
    polygon_index = near[near_index]
    # A cell inside a polygon overlaps it by its own area: no intersection to compute.
    touched, touching = boxes[box_index], polygons[polygon_index]
    overlap = shapely.area(touched)
    edge = ~shapely.contains_properly(touching, touched)
    overlap[edge] = shapely.area(shapely.intersection(touched[edge], touching[edge]))
    real = overlap > 0
    box_index, polygon_index, overlap = box_index[real], polygon_index[real], overlap[real]
    # For each cell keep the polygon it overlaps most (the first one on a tie).
    order = np.lexsort((polygon_index, -overlap, box_index))
    box_index, polygon_index = box_index[order], polygon_index[order]
    first = np.r_[True, box_index[1:] != box_index[:-1]]
    box_index, polygon_index = box_index[first], polygon_index[first]
    return rows[box_index], cols[box_index], polygon_index.astype("int64")


def _no_cells() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.empty(0, "int64"), np.empty(0, "int64"), np.empty(0, "int64")


def _in_cell_order(
    parts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows, cols, polygon_index = (np.concatenate(columns) for columns in zip(*parts, strict=True))
    order = np.lexsort((cols, rows))
    return rows[order], cols[order], polygon_index[order]


def _cell_means(
    path: str, band: int, rows: np.ndarray, cols: np.ndarray, cell_size: float, grid_crs: CRS
) -> np.ndarray:
    """Mean of a raster band over each cell, NaN where it has no data.

    The raster is averaged onto windows of whole grid rows (at most BLOCK_CELLS
    cells each) so memory does not grow with the area's bounding box.
    """
    import rasterio
    from rasterio.warp import Resampling, reproject

    from ..raster_windows import finite_source, source_window

    try:
        source = rasterio.open(path)
    except Exception as error:
        raise PovmapInputError("HABITABLE", f"cannot open the raster '{path}': {error}") from None
    with source:
        if source.crs is None:
            raise PovmapInputError(
                "HABITABLE",
                f"the raster '{path}' has no CRS; assign one (Raster ▸ Projections ▸ Assign Projection).",
            )
        if not 1 <= band <= source.count:
            raise PovmapInputError(
                "HABITABLE_BAND",
                f"the raster '{path}' has {source.count} band(s); band {band} does not exist.",
            )
        means = np.full(len(rows), np.nan, dtype="float64")
        grid_crs_wkt = grid_crs.to_wkt()
        pixel = min(abs(source.transform.a), abs(source.transform.e))
        if source.crs.is_geographic:
            pixel *= 111_320.0 * 0.5  # degrees to metres, conservatively short
        margin = 2 + int(np.ceil(cell_size / pixel))  # the average kernel's reach
        left, right = int(cols.min()), int(cols.max()) + 1
        width = right - left
        band_rows = max(1, BLOCK_CELLS // width)
        # rows are sorted: each band of grid rows is a contiguous slice of the cells
        for bottom in range(int(rows.min()), int(rows.max()) + 1, band_rows):
            top = bottom + band_rows
            start, stop = np.searchsorted(rows, [bottom, top])
            if start == stop:
                continue
            window = np.full((band_rows, width), np.nan, dtype="float64")
            transform = rasterio.Affine(
                cell_size, 0, left * cell_size, 0, -cell_size, top * cell_size
            )
            # NaN and ±inf pixels are nodata whatever the raster declares (core/raster_windows)
            pixels = source_window(
                source,
                grid_crs_wkt,
                left * cell_size,
                bottom * cell_size,
                right * cell_size,
                top * cell_size,
                margin,
            )
            values, source_transform = finite_source(source, [band], pixels)
            reproject(
                values,
                window[np.newaxis],
                src_transform=source_transform,
                src_crs=source.crs,
                src_nodata=np.nan,
                dst_transform=transform,
                dst_crs=grid_crs_wkt,
                dst_nodata=np.nan,
                resampling=Resampling.average,
            )
            means[start:stop] = window[top - 1 - rows[start:stop], cols[start:stop] - left]
    return means


def _cells_frames(
    rows: np.ndarray,
    cols: np.ndarray,
    polygon_index: np.ndarray,
    habitable_mean: np.ndarray | None,
    cell_size: float,
    grid_crs: CRS,
    names: np.ndarray,
) -> Iterator[geopandas.GeoDataFrame]:
    """The grid layer as GeoDataFrames of at most WRITE_CHUNK_CELLS cells, in cell id order."""
    import geopandas

    for start in range(0, len(rows), WRITE_CHUNK_CELLS):
        part = slice(start, start + WRITE_CHUNK_CELLS)
        columns = {
            "cell_id": cells.encode_cell_ids(rows[part], cols[part]),
            "district": names[polygon_index[part]],
        }
        if habitable_mean is not None:
            columns["habitable_mean"] = habitable_mean[part]
        yield geopandas.GeoDataFrame(
            columns, geometry=cells.cell_boxes(rows[part], cols[part], cell_size), crs=grid_crs
        )
