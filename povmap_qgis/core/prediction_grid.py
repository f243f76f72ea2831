"""Cells covering districts or an area of interest (pipeline step 2).

Same alignment and ids as the training grid, so cells of a surveyed and an
unsurveyed district never collide and a cell keeps its id across runs. Each
cell takes the district it overlaps most. With a habitability raster (a
settlement or population layer), only cells whose mean reaches a minimum are
kept — the mean being the raster averaged onto the cell (GDAL's ``average``
resampling, nodata ignored).
"""

import dataclasses
import time

import numpy as np

from . import cells, vectors
from .errors import PovmapInputError
from .geopackage import GRID_FORMAT_VERSION, write_layer
from .reporting import Reporter


@dataclasses.dataclass
class PredictionGridOptions:
    area_path: str
    output_path: str
    area_layer: str | None = None
    district_field: str | None = None
    cell_size: float = 1000.0
    crs: str | None = None
    habitable_path: str | None = None
    habitable_band: int = 1
    habitable_min: float | None = None
    style_qml_path: str | None = None


def build_prediction_grid(options, reporter=None):
    reporter = reporter or Reporter()
    started = time.monotonic()
    cells.check_cell_size(options.cell_size)
    counts = {}

    areas = vectors.read_polygons(
        options.area_path,
        options.area_layer,
        "AREA",
        field=options.district_field,
        reporter=reporter,
    )
    grid_crs, crs_note = cells.working_crs(
        options.crs, tuple(areas.to_crs("EPSG:4326").total_bounds)
    )
    reporter.info(crs_note)
    areas = areas.to_crs(grid_crs)
    reporter.progress(10)

    rows, cols, districts = _covering_cells(areas, options, reporter)
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
        rows, cols, districts, habitable_mean = (
            rows[keep],
            cols[keep],
            districts[keep],
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

    frame = _cells_frame(rows, cols, districts, habitable_mean, options.cell_size, grid_crs)
    write_layer(
        frame,
        options.output_path,
        options.style_qml_path,
        "povmap prediction grid",
        metadata={
            "povmap_grid_kind": "prediction",
            "povmap_grid_format": GRID_FORMAT_VERSION,
            "cell_size": options.cell_size,
        },
    )
    counts["cells_kept"] = len(frame)
    counts["crs"] = cells.crs_to_string(grid_crs)
    counts["seconds"] = round(time.monotonic() - started, 3)
    reporter.progress(100)
    reporter.info(f"Prediction grid: {counts['cells_kept']} cells of {options.cell_size:g} m.")
    return counts


def _covering_cells(areas, options, reporter):
    """Cells whose square overlaps the polygons with a positive area."""
    import shapely

    size = options.cell_size
    xmin, ymin, xmax, ymax = areas.total_bounds
    row_range = np.arange(np.floor(ymin / size), np.ceil(ymax / size), dtype="int64")
    col_range = np.arange(np.floor(xmin / size), np.ceil(xmax / size), dtype="int64")
    if len(row_range) * len(col_range) > 50_000_000:
        raise PovmapInputError(
            "CELL_SIZE",
            f"the area would need {len(row_range) * len(col_range):,} candidate cells; use a larger CELL_SIZE or a smaller AREA.",
        )
    rows, cols = (grid.ravel() for grid in np.meshgrid(row_range, col_range, indexing="ij"))
    boxes = cells.cell_boxes(rows, cols, size)
    polygons = areas.geometry.values
    shapely.prepare(polygons)
    box_index, polygon_index = shapely.STRtree(boxes).query(polygons, predicate="intersects")[::-1]
    overlap = shapely.area(shapely.intersection(boxes[box_index], polygons[polygon_index]))
    real = overlap > 0
    box_index, polygon_index, overlap = box_index[real], polygon_index[real], overlap[real]
    # For each cell keep the polygon it overlaps most.
    order = np.lexsort((-overlap, box_index))
    box_index, polygon_index = box_index[order], polygon_index[order]
    first = np.r_[True, box_index[1:] != box_index[:-1]]
    box_index, polygon_index = box_index[first], polygon_index[first]
    if options.district_field:
        names = areas[options.district_field].to_numpy(dtype=object)
        districts = np.array(
            [None if name is None else str(name) for name in names[polygon_index]], dtype=object
        )
    else:
        districts = np.full(len(box_index), None, dtype=object)
    return rows[box_index], cols[box_index], districts


def _cell_means(path, band, rows, cols, cell_size, grid_crs):
    """Mean of a raster band over each cell, NaN where it has no data."""
    import rasterio
    from rasterio.warp import Resampling, reproject

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
                "HABITABLE",
                f"the raster '{path}' has {source.count} band(s); band {band} does not exist.",
            )
        top, left = rows.max() + 1, cols.min()
        height, width = top - rows.min(), cols.max() + 1 - left
        transform = rasterio.Affine(cell_size, 0, left * cell_size, 0, -cell_size, top * cell_size)
        means = np.full((height, width), np.nan, dtype="float64")
        reproject(
            rasterio.band(source, band),
            means,
            dst_transform=transform,
            dst_crs=grid_crs.to_wkt(),
            dst_nodata=np.nan,
            resampling=Resampling.average,
        )
    return means[top - 1 - rows, cols - left]


def _cells_frame(rows, cols, districts, habitable_mean, cell_size, grid_crs):
    import geopandas

    columns = {"cell_id": cells.encode_cell_ids(rows, cols), "district": districts}
    if habitable_mean is not None:
        columns["habitable_mean"] = habitable_mean
    frame = geopandas.GeoDataFrame(
        columns, geometry=cells.cell_boxes(rows, cols, cell_size), crs=grid_crs
    )
    return frame.sort_values("cell_id").reset_index(drop=True)
