"""Aligned multi-source chips per cell (pipeline step 3, core).

Each chip is an input raster resampled onto its cell's own grid in the grid
CRS — what ``gdalwarp -t_srs <grid CRS> -te <cell bounds> -tr <res> <res>
-r <method>`` gives for that cell. Warping cell by cell decodes the same
source tiles again for neighbouring cells, so cells are warped in blocks of
neighbours (one GDAL warp per block and input, sliced into chips); the grid
is aligned to multiples of the cell size, so a block's pixels are exactly
the pixels of its cells.

Nodata and areas outside a raster become NaN and are counted per cell and
input; a cell is never silently filled with zeros.
"""

import dataclasses
import time

import numpy as np

from . import cells, vectors
from .chip_store import ChipStoreWriter
from .errors import PovmapInputError
from .reporting import Reporter

BLOCK_CELLS = 8          # a block is up to 8 × 8 neighbouring cells
FLUSH_EVERY_BLOCKS = 16  # durable progress for resume, without flushing constantly
RESAMPLING_METHODS = ("nearest", "bilinear", "cubic", "cubic_spline", "lanczos", "average", "mode")


@dataclasses.dataclass
class ChipInput:
    name: str
    path: str
    bands: list
    resampling: str = "bilinear"
    parameter: str = "EXTRA"


@dataclasses.dataclass
class ChipOptions:
    grid_path: str
    inputs: list
    output_path: str
    grid_layer: str = None
    resolution: float = 10.0
    chip_size: int = None
    max_nodata: float = 0.1
    dtype: str = "float16"


def sample_chips(options, reporter=None):
    """Fill the chip store at ``options.output_path``; return a summary."""
    reporter = reporter or Reporter()
    started = time.monotonic()
    inputs = [spec if isinstance(spec, ChipInput) else ChipInput(**spec) for spec in options.inputs]
    if not inputs:
        raise PovmapInputError("DAYTIME", "choose at least one input raster (DAYTIME, NIGHTLIGHTS, ACCESSIBILITY or EXTRA).")
    cell_ids, rows, cols, cell_size, grid_crs = read_grid_cells(options.grid_path, options.grid_layer)
    chip_size = options.chip_size or int(round(cell_size / options.resolution))
    if chip_size < 1 or abs(chip_size * options.resolution - cell_size) > 1e-6 * cell_size:
        raise PovmapInputError("CHIP_SIZE", f"a chip of {chip_size} px at {options.resolution:g} m does not cover a {cell_size:g} m cell; use CHIP_SIZE = cell size / RESOLUTION.")
    for spec in inputs:
        _check_raster(spec, grid_crs, rows, cols, cell_size)

    settings = {"grid": options.grid_path, "grid_layer": options.grid_layer, "crs": grid_crs.to_wkt(),
                "cell_size": cell_size, "resolution": options.resolution}
    store_inputs = [{"name": spec.name, "source": spec.path, "bands": list(spec.bands), "dtype": options.dtype,
                     "resampling": spec.resampling} for spec in inputs]
    writer = ChipStoreWriter(options.output_path, cell_ids, store_inputs, chip_size, settings).open()
    try:
        pending = writer.pending()
        if writer.resumed:
            reporter.info(f"Resuming the chip store: {len(cell_ids) - len(pending)} of {len(cell_ids)} cells were already sampled.")
        _sample_blocks(writer, inputs, pending, rows, cols, cell_size, options.resolution, chip_size, grid_crs, reporter)
        statistics = _band_statistics(writer, inputs)
        nodata = np.array(writer.array("nodata_fraction"))
        path = writer.finish(statistics)
    except BaseException:
        writer.close()
        raise
    flagged = np.flatnonzero((nodata > options.max_nodata).any(axis=1))
    seconds = time.monotonic() - started
    summary = {"cells": int(len(cell_ids)), "sampled": int(len(pending)), "resumed_cells": int(len(cell_ids) - len(pending)),
               "flagged": int(len(flagged)), "flagged_cell_ids": [int(cell_ids[row]) for row in flagged[:1000]],
               "seconds": round(seconds, 3), "output": path, "chip_size": chip_size}
    per_thousand = seconds / max(len(pending), 1) * 1000
    reporter.info(f"Sampled {len(pending)} cells ({summary['resumed_cells']} already done) in {seconds:.1f} s, {per_thousand:.1f} s per 1,000 cells.")
    if len(flagged):
        listed = ", ".join(str(cell) for cell in summary["flagged_cell_ids"][:10])
        reporter.warning(f"{len(flagged)} cell(s) have more than {options.max_nodata:.0%} nodata in an input and are flagged (excluded from training): {listed}{'…' if len(flagged) > 10 else ''}.")
    return summary


def read_grid_cells(path, layer=None, parameter="GRID"):
    """Cell ids, rows, columns, cell size and CRS of an aligned grid layer."""
    import pyogrio
    import shapely
    from pyproj import CRS

    layer = vectors.spatial_layer(path, layer, parameter)
    info = vectors.layer_info(path, layer, parameter)
    if "cell_id" not in list(info["fields"]):
        raise PovmapInputError(parameter, f"the layer '{layer or path}' has no cell_id field; make the grid with Build training grid or Build prediction grid.")
    if info.get("features", 0) == 0:
        raise PovmapInputError(parameter, f"the layer '{layer or path}' is empty.")
    meta, _, wkb, (cell_ids,) = pyogrio.raw.read(path, layer=layer, columns=["cell_id"])
    bounds = shapely.bounds(shapely.from_wkb(wkb))
    cell_size = float(np.median(bounds[:, 2] - bounds[:, 0]))
    rows, cols = cells.decode_cell_ids(cell_ids)
    expected = np.column_stack([cols * cell_size, rows * cell_size, (cols + 1) * cell_size, (rows + 1) * cell_size])
    if not np.allclose(bounds, expected, atol=1e-6 * cell_size):
        raise PovmapInputError(parameter, f"the cells of '{layer or path}' do not match their cell_id (edited or reprojected?); rebuild the grid with Build training grid or Build prediction grid.")
    return np.asarray(cell_ids, dtype="int64"), rows, cols, cell_size, CRS.from_user_input(meta["crs"])


def _check_raster(spec, grid_crs, rows, cols, cell_size):
    import rasterio
    from rasterio.warp import transform_bounds

    if spec.resampling not in RESAMPLING_METHODS:
        raise PovmapInputError(spec.parameter, f"unknown resampling '{spec.resampling}' (use one of {', '.join(RESAMPLING_METHODS)}).")
    try:
        dataset = rasterio.open(spec.path)
    except Exception as error:
        raise PovmapInputError(spec.parameter, f"cannot open the raster '{spec.path}': {error}") from None
    with dataset:
        if dataset.crs is None:
            raise PovmapInputError(spec.parameter, f"the raster '{spec.path}' has no CRS; assign one (Raster ▸ Projections ▸ Assign Projection).")
        wrong = [band for band in spec.bands if not 1 <= int(band) <= dataset.count]
        if wrong or not spec.bands:
            raise PovmapInputError(spec.parameter, f"band(s) {wrong or spec.bands} do not exist in '{spec.path}', which has {dataset.count} band(s).")
        grid_bounds = (cols.min() * cell_size, rows.min() * cell_size, (cols.max() + 1) * cell_size, (rows.max() + 1) * cell_size)
        left, bottom, right, top = transform_bounds(grid_crs, dataset.crs, *grid_bounds, densify_pts=21)
        raster = dataset.bounds
        if right <= raster.left or left >= raster.right or top <= raster.bottom or bottom >= raster.top:
            raise PovmapInputError(spec.parameter, f"the raster '{spec.path}' does not overlap the grid; check that it covers the cells (and its CRS).")


def _sample_blocks(writer, inputs, pending, rows, cols, cell_size, resolution, chip_size, grid_crs, reporter):
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    blocks = {}
    for row_index in pending:
        blocks.setdefault((rows[row_index] // BLOCK_CELLS, cols[row_index] // BLOCK_CELLS), []).append(row_index)
    datasets = [rasterio.open(spec.path) for spec in inputs]
    crs_wkt = grid_crs.to_wkt()
    try:
        for done, members in enumerate(blocks.values(), start=1):
            reporter.check_canceled()
            members = np.asarray(members)
            block_rows, block_cols = rows[members], cols[members]
            top, left = block_rows.max() + 1, block_cols.min()
            height, width = (top - block_rows.min()) * chip_size, (block_cols.max() + 1 - left) * chip_size
            transform = rasterio.Affine(resolution, 0, left * cell_size, 0, -resolution, top * cell_size)
            y0, x0 = (top - 1 - block_rows) * chip_size, (block_cols - left) * chip_size
            chips, nodata = {}, np.zeros((len(members), len(inputs)), dtype="float32")
            for position, (spec, dataset) in enumerate(zip(inputs, datasets)):
                warped = np.full((len(spec.bands), height, width), np.nan, dtype="float32")
                reproject(rasterio.band(dataset, list(spec.bands)), warped, dst_transform=transform, dst_crs=crs_wkt,
                          dst_nodata=np.nan, resampling=Resampling[spec.resampling])
                stack = np.stack([warped[:, y:y + chip_size, x:x + chip_size] for y, x in zip(y0, x0)])
                nodata[:, position] = np.isnan(stack).any(axis=1).mean(axis=(1, 2))
                chips[spec.name] = np.moveaxis(stack, 1, -1)
            writer.write(members, chips, nodata)
            if done % FLUSH_EVERY_BLOCKS == 0:
                writer.flush()
            reporter.progress(90.0 * done / len(blocks))
    finally:
        for dataset in datasets:
            dataset.close()
    writer.flush()


def _band_statistics(writer, inputs, batch_rows=256):
    """Per-band count, mean, std, min and max over valid pixels, read in batches."""
    statistics = {}
    for spec in inputs:
        array = writer.array(spec.name)
        bands = array.shape[-1]
        count, total, squares = np.zeros(bands), np.zeros(bands), np.zeros(bands)
        low, high = np.full(bands, np.inf), np.full(bands, -np.inf)
        for start in range(0, array.shape[0], batch_rows):
            values = np.asarray(array[start:start + batch_rows], dtype="float64").reshape(-1, bands)
            valid = ~np.isnan(values)
            count += valid.sum(axis=0)
            total += np.where(valid, values, 0).sum(axis=0)
            squares += np.where(valid, values ** 2, 0).sum(axis=0)
            low = np.minimum(low, np.where(valid, values, np.inf).min(axis=0))
            high = np.maximum(high, np.where(valid, values, -np.inf).max(axis=0))
        mean = np.divide(total, count, out=np.full(bands, np.nan), where=count > 0)
        std = np.sqrt(np.maximum(np.divide(squares, count, out=np.full(bands, np.nan), where=count > 0) - mean ** 2, 0))
        statistics[spec.name] = {"count": count.tolist(), "mean": mean.tolist(), "std": std.tolist(),
                                 "min": low.tolist(), "max": high.tolist()}
    return statistics

