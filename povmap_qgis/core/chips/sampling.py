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

from .. import vectors
from ..errors import PovmapInputError, write_failure
from ..grid import cells
from ..names import CELL_ID, DEFAULT_RESOLUTION
from ..progress import Reporter
from ..raster_windows import finite_source, inside, source_window
from .chip_store import WIDENED_DTYPES, ChipStoreWriter, check_input_name, check_input_names

BLOCK_CELLS = 8  # a block is up to 8 × 8 neighbouring cells
FLUSH_EVERY_SECONDS = 10  # progress made durable for resume, without flushing constantly
GDAL_CACHE_MB = 192  # decoded source tiles kept between blocks
BLOCKS_AHEAD = 2  # blocks sampled ahead of the writer (bounds memory)
MOMENT_CELLS = 8  # cells whose pixel moments are computed at once (float64 copies)
POLYGON_TYPES = ("Polygon", "MultiPolygon")
RESAMPLING_METHODS = ("nearest", "bilinear", "cubic", "cubic_spline", "lanczos", "average", "mode")
# Chips are stored compactly in float16 unless an input's values do not fit it: beyond
# ±65,504 float16 holds only infinity, and a block whose largest magnitude is below float16's
# smallest normal number (2**-14) would lose its relative precision or round to 0. Such an
# input is stored in float32 instead (its dtype is recorded in the manifest).
COMPACT_DTYPE = "float16"
WIDE_DTYPE = WIDENED_DTYPES[COMPACT_DTYPE]  # float32
FLOAT16_LARGEST = 65504.0
FLOAT16_SMALLEST_NORMAL = 2.0**-14


@dataclasses.dataclass
class ChipInput:
    name: str
    path: str
    bands: list
    resampling: str = "bilinear"
    parameter: str = "EXTRA"
    label: str | None = None  # the parameter's label in the dialog, for messages


def described(spec):
    """How messages name an input: its label and parameter, e.g. ``Night-time lights (NIGHTLIGHTS)``."""
    if spec.label:
        return f"{spec.label} ({spec.parameter})"
    return f"the input '{spec.name}' ({spec.parameter})"


@dataclasses.dataclass
class ChipOptions:
    grid_path: str
    inputs: list
    output_path: str
    grid_layer: str | None = None
    id_field: str = CELL_ID  # the grid's unique whole-number id (any polygon grid)
    resolution: float = DEFAULT_RESOLUTION
    chip_size: int | None = None
    max_nodata: float = 0.1
    dtype: str = "float16"
    nodata_grid_path: str | None = None  # optional copy of the grid with nodata fields per input
    style_qml_path: str | None = None
    engine: str = "local"  # "local" (this process) or "spark" (core/engines/spark_engine.py)
    spark_master: str = "local[*]"


def sample_chips(options, reporter=None, remote=None):
    """Fill the chip store at ``options.output_path``; return a summary.

    ``remote``: the engine that samples the pending blocks elsewhere when ``options.engine``
    is not local (``core/engines/steps.py`` hands it over; this module knows no engine).
    """
    reporter = reporter or Reporter()
    started = time.monotonic()
    if options.engine == "spark":
        remote_engine(remote)  # before any work
    inputs = [spec if isinstance(spec, ChipInput) else ChipInput(**spec) for spec in options.inputs]
    if not (isinstance(options.max_nodata, (int, float)) and 0 <= options.max_nodata <= 1):
        raise PovmapInputError(
            "MAX_NODATA",
            f"{options.max_nodata!r} is not a share between 0 and 1 (0.1: cells with more than "
            "10 % nodata in an input are flagged).",
        )
    if not inputs:
        raise PovmapInputError(
            "DAYTIME",
            "choose at least one input raster (DAYTIME, NIGHTLIGHTS, ACCESSIBILITY or EXTRA).",
        )
    for spec in inputs:  # a name that collides with the store's own files or leaves it
        check_input_name(spec.name, spec.parameter)
    check_input_names([spec.name for spec in inputs], inputs[-1].parameter)
    grid = read_grid_cells(
        options.grid_path,
        options.grid_layer,
        id_field=options.id_field,
        resolution=options.resolution,
        chip_size=options.chip_size,
    )
    cell_ids, chip_size = grid.ids, grid.chip_size
    if not grid.povmap_ids:
        reporter.info(
            f"Own grid: {len(cell_ids)} cells identified by {options.id_field}; each chip is its "
            f"cell's bounding box at {options.resolution:g} m ({chip_size} × {chip_size} px)."
        )
    for spec in inputs:
        check_raster(spec, grid)

    settings = {
        "grid": options.grid_path,
        "grid_layer": options.grid_layer,
        "grid_cells_sha256": grid_cells_sha256(grid),
        "id_field": options.id_field,
        "crs": grid.crs.to_wkt(),
        "cell_size": grid.cell_size,
        "resolution": options.resolution,
    }
    resume_key = {"input_files": {spec.name: file_fingerprint(spec.path) for spec in inputs}}
    dtypes = {spec.name: options.dtype for spec in inputs}
    while True:
        store_inputs = [
            {
                "name": spec.name,
                "source": spec.path,
                "bands": list(spec.bands),
                "dtype": dtypes[spec.name],
                "resampling": spec.resampling,
            }
            for spec in inputs
        ]
        writer = ChipStoreWriter(
            options.output_path, cell_ids, store_inputs, chip_size, settings, resume_key=resume_key
        ).open()
        # A resumed store keeps the dtypes it was started with (an input may have been widened).
        dtypes = {spec["name"]: spec["dtype"] for spec in writer.inputs}
        try:
            pending = writer.pending()
            if writer.resumed:
                reporter.info(
                    f"Resuming the chip store: {len(cell_ids) - len(pending)} of {len(cell_ids)} cells were already sampled."
                )
            _engine(options, remote)(writer, inputs, pending, grid, dtypes, reporter)
        except WiderDtypeNeededError as widen:
            # Chips already stored in float16 lost precision: start again with the input in float32.
            writer.discard()
            dtypes[widen.spec.name] = WIDE_DTYPE
            reporter.info(f"{widen}: sampling again with this input stored as float32.")
            continue
        except BaseException as error:
            _stop(writer, error)
            raise
        break
    try:
        statistics = {
            spec.name: statistics_of_cells(writer.cell_moments(spec.name)) for spec in inputs
        }
        nodata = writer.nodata_fractions()
        try:
            refuse_inputs_without_data(inputs, nodata)
        except PovmapInputError:
            writer.discard()
            raise
        flagged = np.flatnonzero((nodata > options.max_nodata).any(axis=1))
        if options.nodata_grid_path:
            write_nodata_grid(options, inputs, cell_ids, nodata, flagged)
        path = writer.finish(
            statistics, {"max_nodata": options.max_nodata, "flagged_cells": int(len(flagged))}
        )
    except BaseException as error:
        _stop(writer, error)
        raise
    seconds = time.monotonic() - started
    summary = {
        "cells": int(len(cell_ids)),
        "sampled": int(len(pending)),
        "resumed_cells": int(len(cell_ids) - len(pending)),
        "flagged": int(len(flagged)),
        "flagged_cell_ids": [int(cell_ids[row]) for row in flagged[:1000]],
        "seconds": round(seconds, 3),
        "output": path,
        "chip_size": chip_size,
    }
    per_thousand = seconds / max(len(pending), 1) * 1000
    reporter.info(
        f"Sampled {len(pending)} cells ({summary['resumed_cells']} already done) in {seconds:.1f} s, {per_thousand:.1f} s per 1,000 cells."
    )
    if len(flagged):
        listed = ", ".join(str(cell) for cell in summary["flagged_cell_ids"][:10])
        reporter.warning(
            f"{len(flagged)} cell(s) have more than {options.max_nodata:.0%} nodata in an input and are flagged (excluded from training): {listed}{'…' if len(flagged) > 10 else ''}."
        )
    return summary


def _stop(writer, error):
    """Keep the partial store for a resume after a cancel, a kill or a crash; remove it after
    bad input or a full disk, which a rerun with the same settings would meet again."""
    if isinstance(error, PovmapInputError) or write_failure(error) is not None:
        writer.discard()
    else:
        writer.close()


def _engine(options, remote):
    """What samples the pending blocks: threads in this process, or Spark tasks (same sampler)."""
    if options.engine == "spark":
        return remote_engine(remote).sample_blocks
    if options.engine != "local":
        raise PovmapInputError("ENGINE", f"unknown engine '{options.engine}' (local or spark).")
    return sample_blocks


def remote_engine(remote):
    """The engine ENGINE=spark runs on; a step called without one is called past the engines."""
    if remote is None:
        raise PovmapInputError(
            "ENGINE",
            "ENGINE=spark runs through povmap_qgis.core.engines.steps (as the worker and the "
            "command line do), which hands the step its Spark engine.",
        )
    return remote


def refuse_inputs_without_data(inputs, nodata):
    """An input with no data in any cell ([n_cells, n_inputs] nodata fractions) is a mistake."""
    for column, spec in enumerate(inputs):
        if (nodata[:, column] >= 1).all():
            raise PovmapInputError(
                spec.parameter,
                f"the raster '{spec.path}' has no data in any cell (all nodata or outside the grid); check its nodata value and extent, or leave it out.",
            )


def grid_cells_sha256(grid):
    """What the chips depend on in a grid (``GridCells``): its cells in row order, where each
    chip lies, the chip size, resolution and CRS.

    The path does not (a filtered layer is exported to a new temporary file each run).
    """
    import hashlib

    digest = hashlib.sha256(np.ascontiguousarray(grid.ids, dtype="<i8").tobytes())
    digest.update(np.ascontiguousarray(grid.lefts, dtype="<f8").tobytes())
    digest.update(np.ascontiguousarray(grid.tops, dtype="<f8").tobytes())
    digest.update(f"|{int(grid.chip_size)}|{float(grid.resolution)!r}|{grid.crs.to_wkt()}".encode())
    return digest.hexdigest()


def file_fingerprint(path):
    """Size and modification time of an input file (None when it is not a plain file).

    Part of a partial store's resume key: a raster rewritten between a stopped
    run and its resumption starts the store afresh instead of mixing chips of
    both versions. (Hashing multi-gigabyte rasters at every start would cost
    more than the resume saves.)
    """
    import os

    try:
        status = os.stat(path)
    except (OSError, TypeError, ValueError):
        return None
    return [int(status.st_size), int(status.st_mtime_ns)]


def write_nodata_grid(options, inputs, cell_ids, nodata, flagged):
    """The grid with ``nodata_<input>`` fractions and ``chip_flagged`` (1 = above MAX_NODATA)."""
    import pyogrio

    from ..geopackage import write_layer

    frame = pyogrio.read_dataframe(
        options.grid_path,
        layer=vectors.spatial_layer(options.grid_path, options.grid_layer, "GRID"),
    )
    position = {int(cell): row for row, cell in enumerate(cell_ids)}
    order = np.array([position[int(cell)] for cell in frame[options.id_field]])
    for column, spec in enumerate(inputs):
        frame[f"nodata_{spec.name}"] = np.round(nodata[order, column].astype("float64"), 4)
    is_flagged = np.zeros(len(cell_ids), dtype="int32")
    is_flagged[flagged] = 1
    frame["chip_flagged"] = is_flagged[order]
    write_layer(
        frame,
        options.nodata_grid_path,
        options.style_qml_path,
        "povmap chip nodata",
        metadata={
            "povmap_max_nodata": options.max_nodata,
            "povmap_chip_store": options.output_path,
        },
    )


@dataclasses.dataclass
class GridCells:
    """The cells of a grid layer and where each one's chip lies.

    A chip is the cell polygon's bounding box sampled at ``resolution`` in the
    grid's CRS: ``chip_size`` pixels from the box's top-left corner, what
    ``gdalwarp -te <box> -tr <res> <res>`` gives (it rounds the box's width in
    pixels the same way). ``keys`` groups neighbouring cells into blocks that
    are warped together; cells of one block lie on one pixel lattice.
    """

    ids: np.ndarray  # int64, from the id field, one per cell
    lefts: np.ndarray  # float64: each chip's left and top edge in the grid CRS
    tops: np.ndarray
    chip_size: int
    resolution: float
    crs: object
    keys: np.ndarray  # int64 [n, 3]: cells with the same key are sampled as one block
    povmap_ids: bool  # cell_id encodes the cell's place (povmap's own grids)

    @property
    def cell_size(self):
        return self.chip_size * self.resolution


def read_grid_cells(
    path,
    layer=None,
    parameter="GRID",
    id_field=CELL_ID,
    resolution=10.0,
    chip_size=None,
    chip_parameter="CHIP_SIZE",
):
    """The cells of a polygon grid layer (see ``GridCells``), or a message naming the parameter.

    Any polygon layer with a unique whole-number id in ``id_field`` works. An id field
    named ``cell_id`` is povmap's and must match the geometry: that id names the same
    square in every grid of that CRS and cell size, which is what joins a training grid,
    a prediction grid and a ground truth; an edited or reprojected povmap grid (whose
    metadata other tools do not keep) would silently join other places.
    """
    import pyogrio
    import shapely
    from pyproj import CRS

    layer = vectors.spatial_layer(path, layer, parameter)
    info = vectors.layer_info(path, layer, parameter)
    vectors.require_geometry(info, path, layer, parameter, POLYGON_TYPES)
    if info.get("features", 0) == 0:
        raise PovmapInputError(parameter, f"the layer '{layer or path}' is empty.")
    ids = read_cell_ids(path, layer, id_field, info, parameter)
    meta, _, wkb, _ = pyogrio.raw.read(path, layer=layer, columns=[])
    bounds = shapely.bounds(shapely.from_wkb(wkb))
    empty = np.flatnonzero(~np.isfinite(bounds).all(axis=1))
    if len(empty):
        raise PovmapInputError(
            parameter,
            f"{len(empty)} feature(s) of '{layer or path}' have no geometry (e.g. {id_field} "
            f"{int(ids[empty[0]])}); delete them or give them their polygon.",
        )
    crs = CRS.from_user_input(meta["crs"])
    if id_field == CELL_ID:
        cell_size = float(np.median(bounds[:, 2] - bounds[:, 0]))
        rows, cols = cells.decode_cell_ids(ids)
        expected = np.column_stack(
            [cols * cell_size, rows * cell_size, (cols + 1) * cell_size, (rows + 1) * cell_size]
        )
        matching = np.isclose(bounds, expected, atol=1e-6 * cell_size, rtol=0).all(axis=1)
        if matching.all():
            size = _chip_size(
                cell_size,
                cell_size,
                resolution,
                chip_size,
                parameter,
                None,
                id_field,
                chip_parameter,
            )
            # Exact corners from the ids: blocks of cells share one warp, pixel for pixel.
            lefts, tops = cols * cell_size, (rows + 1) * cell_size
            keys = np.column_stack([rows // BLOCK_CELLS, cols // BLOCK_CELLS, np.zeros_like(rows)])
            return GridCells(ids, lefts, tops, size, resolution, crs, keys, True)
        raise PovmapInputError(
            parameter,
            f"{int((~matching).sum())} of {len(ids)} cells of '{layer or path}' do not match their "
            "cell_id (edited or reprojected?): povmap's cell_id names the same square in every "
            "grid, so that grids and ground truths join on it. Rebuild the grid with Build "
            "training grid or Build prediction grid. If this is a grid of your own whose ids are "
            "in a field named cell_id, rename that field (e.g. to gid) and choose it as the cell "
            "id field (ID_FIELD).",
        )
    widths, heights = bounds[:, 2] - bounds[:, 0], bounds[:, 3] - bounds[:, 1]
    size = _chip_size(
        widths, heights, resolution, chip_size, parameter, ids, id_field, chip_parameter
    )
    lefts, tops = bounds[:, 0], bounds[:, 3]
    keys = _block_keys(lefts, tops, size * resolution, resolution)
    return GridCells(ids, lefts, tops, size, resolution, crs, keys, False)


def read_cell_ids(path, layer, id_field, info, parameter="GRID", id_parameter="ID_FIELD"):
    """The whole-number ids of ``id_field`` (int64), refusing missing, NULL, fractional or repeated ids."""
    import pyogrio

    fields = list(info["fields"])
    name = layer or path
    if id_field == info.get("fid_column") and id_field not in fields:
        raise PovmapInputError(
            id_parameter,
            f"{id_field} is the feature number of '{name}' ({parameter}), which changes when the "
            "layer is copied or filtered; copy it into a field with the Field calculator ($id) "
            "and choose that field.",
        )
    if id_field not in fields:
        if id_field == CELL_ID:
            hint = (
                "make the grid with Build training grid or Build prediction grid, or choose "
                "your grid's own id field (Cell id field, ID_FIELD)"
            )
        else:
            hint = "choose one of its fields"
        raise PovmapInputError(
            id_parameter,
            f"the layer '{name}' ({parameter}) has no {id_field} field (its fields: "
            f"{', '.join(fields) or 'none'}); {hint}.",
        )
    dtype = str(info["dtypes"][fields.index(id_field)])
    if not dtype.startswith(vectors.NUMERIC_DTYPES):
        raise PovmapInputError(
            id_parameter,
            f"the id field {id_field} of '{name}' holds {dtype} values; cell ids are whole "
            "numbers (they index the chip store). Add one with the Field calculator "
            "(e.g. @row_number) and choose it; the text id is carried to the predictions.",
        )
    _, _, _, (values,) = pyogrio.raw.read(
        path, layer=layer, columns=[id_field], read_geometry=False
    )
    values = np.asarray(values)  # integers with NULLs arrive as floats with NaN
    if values.dtype.kind == "f":
        missing = np.flatnonzero(~np.isfinite(values))
        if len(missing):
            raise PovmapInputError(
                id_parameter,
                f"{len(missing)} feature(s) of '{name}' have no {id_field} (NULL), e.g. the "
                f"feature at row {int(missing[0]) + 1}; give every cell an id (or delete those "
                "features): a cell without an id cannot be matched to its chips and predictions.",
            )
        fractional = np.flatnonzero(values != np.round(values))
        if len(fractional):
            raise PovmapInputError(
                id_parameter,
                f"{id_field} of '{name}' holds fractions (e.g. {values[fractional[0]]}); "
                "cell ids are whole numbers.",
            )
    ids = np.asarray(values).astype("int64")
    cells.check_unique_ids(ids, id_parameter, name, id_field)
    return ids


def _chip_size(
    widths, heights, resolution, requested, parameter, ids, id_field, chip_parameter="CHIP_SIZE"
):
    """The chips' side in pixels, which every cell's bounding box must give (gdalwarp's rounding).

    ``chip_parameter``: what a ``requested`` size that the cells do not give is blamed on
    (CHIP_SIZE; GRID when the size is the model's, predicting from the rasters).
    """
    columns = np.atleast_1d(((np.asarray(widths) + resolution / 2) // resolution).astype("int64"))
    lines = np.atleast_1d(((np.asarray(heights) + resolution / 2) // resolution).astype("int64"))
    size = int(requested or np.median(columns))
    if requested and (columns != size).all():
        hint = (
            "use CHIP_SIZE = cell size / RESOLUTION, or 0 to compute it."
            if chip_parameter == "CHIP_SIZE"
            else f"the model needs cells of {size * resolution:g} m; use a grid of that cell size."
        )
        raise PovmapInputError(
            chip_parameter,
            f"a chip of {size} px at {resolution:g} m does not cover a cell ("
            f"{float(np.median(widths)):g} m wide: {int(np.median(columns))} px); {hint}",
        )
    odd = np.flatnonzero((columns != size) | (lines != size))
    if size < 1 or len(odd):
        first = odd[0] if len(odd) else 0
        which = f"{id_field} {int(ids[first])}: " if ids is not None else ""
        raise PovmapInputError(
            parameter,
            f"the chips of one store all have one size, and {len(odd) or len(columns)} cell(s) "
            f"do not give {size} × {size} px at {resolution:g} m ({which}its bounding box is "
            f"{np.atleast_1d(widths)[first]:g} × {np.atleast_1d(heights)[first]:g} m, "
            f"{columns[first]} × {lines[first]} px). Use a grid of equal squares whose side is "
            "a whole number of RESOLUTION pixels (e.g. Vector ▸ Research Tools ▸ Create Grid), "
            "or change RESOLUTION.",
        )
    return size


def _block_keys(lefts, tops, side, resolution):
    """Neighbouring cells on one pixel lattice share a key (their pixels come from one warp)."""
    span = BLOCK_CELLS * side
    tile = np.column_stack(
        [np.floor((tops - side) / span + 1e-9), np.floor(lefts / span + 1e-9)]
    ).astype("int64")
    # Offsets from the pixel lattice through the origin, in 1/1000 px: cells whose corners are
    # a whole number of pixels apart share one.
    phase = (
        np.column_stack(
            [
                np.round((tops / resolution) % 1.0 * 1000),
                np.round((lefts / resolution) % 1.0 * 1000),
            ]
        ).astype("int64")
        % 1000
    )
    _, lattice = np.unique(phase, axis=0, return_inverse=True)
    return np.column_stack([tile, lattice.reshape(-1)])


def check_raster(spec, grid):
    import rasterio
    from rasterio.warp import transform_bounds

    if spec.resampling not in RESAMPLING_METHODS:
        raise PovmapInputError(
            spec.parameter,
            f"unknown resampling '{spec.resampling}' (use one of {', '.join(RESAMPLING_METHODS)}).",
        )
    try:
        dataset = rasterio.open(spec.path)
    except Exception as error:
        raise PovmapInputError(
            spec.parameter, f"cannot open the raster '{spec.path}': {error}"
        ) from None
    with dataset:
        if dataset.crs is None:
            raise PovmapInputError(
                spec.parameter,
                f"the raster '{spec.path}' has no CRS; assign one (Raster ▸ Projections ▸ Assign Projection).",
            )
        wrong = [band for band in spec.bands if not 1 <= int(band) <= dataset.count]
        if wrong or not spec.bands:
            raise PovmapInputError(
                spec.parameter,
                f"band(s) {wrong or spec.bands} do not exist in '{spec.path}', which has {dataset.count} band(s).",
            )
        complex_types = sorted(
            {
                dataset.dtypes[int(band) - 1]
                for band in spec.bands
                if str(dataset.dtypes[int(band) - 1]).startswith("complex")
            }
        )
        if complex_types:
            raise PovmapInputError(
                spec.parameter,
                f"{described(spec)}: the raster '{spec.path}' holds complex numbers "
                f"({', '.join(complex_types)}), and chips hold real values. Make a real-valued raster "
                "first (e.g. the amplitude, or `gdal_translate -ot Float32`, which keeps the real part) "
                "and choose that one.",
            )
        grid_bounds = (
            grid.lefts.min(),
            grid.tops.min() - grid.cell_size,
            grid.lefts.max() + grid.cell_size,
            grid.tops.max(),
        )
        left, bottom, right, top = transform_bounds(
            grid.crs, dataset.crs, *grid_bounds, densify_pts=21
        )
        raster = dataset.bounds
        if (
            right <= raster.left
            or left >= raster.right
            or top <= raster.bottom
            or bottom >= raster.top
        ):
            raise PovmapInputError(
                spec.parameter,
                f"the raster '{spec.path}' does not overlap the grid; check that it covers the cells (and its CRS).",
            )


def group_blocks(pending, grid):
    """Row indices of pending cells grouped in blocks of up to BLOCK_CELLS × BLOCK_CELLS neighbours.

    Cells of a block lie on one pixel lattice (see ``GridCells.keys``).
    """
    blocks = {}
    for row_index in pending:
        blocks.setdefault(tuple(grid.keys[row_index]), []).append(row_index)
    return [np.asarray(members) for members in blocks.values()]


class WiderDtypeNeededError(Exception):
    """An input's chips do not fit float16 (found while sampling: the run starts again in float32)."""

    def __init__(self, spec, largest):
        self.spec, self.largest = spec, largest
        if largest > FLOAT16_LARGEST:
            reason = f"values reach {largest:,.7g}, beyond float16's ±{FLOAT16_LARGEST:,.0f}"
        else:
            reason = (
                f"values of a block are at most {largest:.3g}, below float16's normal range "
                f"(from {FLOAT16_SMALLEST_NORMAL:.2g}), where it rounds coarsely"
            )
        super().__init__(f"{described(spec)}: {reason}")


class InputSampler:
    """Samples one input raster block by block (one thread per input: a dataset is not thread-safe).

    When the raster already has the chips' CRS, pixel size and pixel alignment
    (Sentinel-2 in its own UTM zone at 10 m), every resampling method returns
    the source pixel at each pixel centre, so a windowed read gives exactly
    what the warp would, without warping; otherwise the block is warped.
    """

    def __init__(self, spec, grid_crs, resolution, chip_size, dtype):
        import warnings

        import rasterio
        from rasterio.errors import NotGeoreferencedWarning

        # reproject() into a NumPy array warns that the array has no georeferencing; it is given.
        warnings.filterwarnings("ignore", category=NotGeoreferencedWarning)

        self.spec, self.chip_size, self.resolution = spec, chip_size, resolution
        self.spec_dtype = dtype
        self.grid_crs_wkt = grid_crs.to_wkt()
        self.dataset = rasterio.open(spec.path)
        self.aligned = _is_aligned(self.dataset, grid_crs, resolution)

    def close(self):
        self.dataset.close()

    def sample(self, lefts, tops):
        """One block's cells: chips [n, H, W, bands] in the store's dtype (NaN = nodata), nodata
        fractions [n] and per-band pixel moments [n, bands, 5] (``cell_moments``).

        ``lefts``/``tops``: the block's chip corners in the grid CRS, on one pixel lattice.
        """
        size, resolution = self.chip_size, self.resolution
        left, top = float(np.min(lefts)), float(np.max(tops))
        x0 = np.round((np.asarray(lefts) - left) / resolution).astype("int64")
        y0 = np.round((top - np.asarray(tops)) / resolution).astype("int64")
        height, width = int(y0.max()) + size, int(x0.max()) + size
        if self.aligned and self._on_raster_lattice(left, top):
            warped = self._read_aligned(left, top, height, width)
        else:
            warped = self._warp(left, top, height, width)
        chips = np.stack(
            [warped[:, y : y + size, x : x + size] for y, x in zip(y0, x0, strict=True)]
        )
        # Infinite source pixels (and what resampling spread them to) are nodata, like NaN.
        chips[np.isinf(chips)] = np.nan
        if self.spec_dtype == COMPACT_DTYPE:
            largest = float(np.nanmax(np.abs(chips), initial=0.0))
            if largest > FLOAT16_LARGEST or 0 < largest < FLOAT16_SMALLEST_NORMAL:
                raise WiderDtypeNeededError(self.spec, largest)
        missing = np.isnan(chips)
        nodata = missing.any(axis=1).mean(axis=(1, 2))
        # In C order, as a store's rows are read back: reductions over a chip (the statistics
        # member's float64 sums) then add in the same order whether chips come from a store
        # or straight from the rasters (predict SOURCE=rasters), so they agree to the last bit.
        return (
            np.moveaxis(chips, 1, -1).astype(self.spec_dtype, order="C"),
            nodata,
            cell_moments(chips),
        )

    def _warp(self, left, top, height, width):
        import rasterio
        from rasterio.enums import Resampling
        from rasterio.warp import reproject

        warped = np.full((len(self.spec.bands), height, width), np.nan, dtype="float32")
        transform = rasterio.Affine(self.resolution, 0, left, 0, -self.resolution, top)
        common = {
            "dst_transform": transform,
            "dst_crs": self.grid_crs_wkt,
            "resampling": Resampling[self.spec.resampling],
        }
        window = self._source_window(left, top, height, width)
        values, source_transform = finite_source(self.dataset, self.spec.bands, window)
        complete = inside(self.dataset, window) and not np.isnan(values).any()
        # Every source pixel the kernels touch is valid: GDAL's unmasked kernels give the same
        # values as its nodata-aware ones, several times faster. Otherwise NaN is the nodata
        # (``finite_source``: the declared nodata, NaN and ±inf, whatever the raster declares).
        reproject(
            values,
            warped,
            src_transform=source_transform,
            src_crs=self.dataset.crs,
            src_nodata=None if complete else np.nan,
            dst_nodata=None if complete else np.nan,
            init_dest_nodata=not complete,
            **common,
        )
        return warped

    def _source_window(self, left, top, height, width):
        """The source pixels around a block, with a margin for the resampling kernels."""
        dataset = self.dataset
        pixel = min(abs(dataset.transform.a), abs(dataset.transform.e))
        margin = 4 + int(np.ceil(self._source_pixels_per_chip_pixel(pixel)))
        return source_window(
            dataset,
            self.grid_crs_wkt,
            left,
            top - height * self.resolution,
            left + width * self.resolution,
            top,
            margin,
        )

    def _source_pixels_per_chip_pixel(self, source_pixel):
        """How many source pixels one chip pixel spans (kernels widen when downsampling)."""
        if self.dataset.crs.is_geographic:
            source_pixel *= (
                111_320.0 * 0.5
            )  # degrees to metres, conservatively short at high latitudes
        return self.resolution / source_pixel

    def _on_raster_lattice(self, left, top):
        """Whether a block's corner lies on the raster's pixel corners (a read gives the warp)."""
        transform = self.dataset.transform
        offsets = np.array([left - transform.c, transform.f - top]) / self.resolution
        return bool(np.allclose(offsets, np.round(offsets), atol=1e-6))

    def _read_aligned(self, left, top, height, width):
        from rasterio.windows import Window

        dataset = self.dataset
        column = int(round((left - dataset.transform.c) / self.resolution))
        row = int(round((dataset.transform.f - top) / self.resolution))
        window = (
            Window(column, row, width, height).intersection(
                Window(0, 0, dataset.width, dataset.height)
            )
            if column < dataset.width
            and row < dataset.height
            and column + width > 0
            and row + height > 0
            else None
        )
        out = np.full((len(self.spec.bands), height, width), np.nan, dtype="float32")
        if window is not None and window.width > 0 and window.height > 0:
            values = dataset.read(
                list(self.spec.bands), window=window, masked=True, out_dtype="float32"
            )
            y, x = int(window.row_off) - row, int(window.col_off) - column
            out[:, y : y + int(window.height), x : x + int(window.width)] = values.filled(np.nan)
        return out


def _is_aligned(dataset, grid_crs, resolution):
    """Whether the raster has the chips' CRS and pixel size (then blocks on its lattice are read)."""
    from pyproj import CRS

    transform = dataset.transform
    if (
        transform.b != 0
        or transform.d != 0
        or not np.isclose(transform.a, resolution)
        or not np.isclose(-transform.e, resolution)
    ):
        return False
    return CRS.from_user_input(dataset.crs.to_wkt()) == grid_crs


def samplers_of(described_inputs, grid_crs_wkt, resolution, chip_size):
    """(specs, samplers) of inputs described as plain dicts (``ChipInput`` fields and ``dtype``).

    How Spark tasks receive their inputs; the caller closes the samplers.
    """
    from pyproj import CRS

    grid_crs = CRS.from_wkt(grid_crs_wkt)
    specs, samplers = [], []
    try:
        for described_input in described_inputs:
            spec = ChipInput(**{k: v for k, v in described_input.items() if k != "dtype"})
            samplers.append(
                InputSampler(spec, grid_crs, resolution, chip_size, described_input["dtype"])
            )
            specs.append(spec)
    except BaseException:
        for sampler in samplers:
            sampler.close()
        raise
    return specs, samplers


def sample_ahead(samplers, blocks):
    """Yield (index, [(chips, nodata, moments) per input]) for ``blocks`` [(lefts, tops)] in order.

    One thread per input (GDAL releases the GIL; a dataset is not thread-safe),
    up to BLOCKS_AHEAD blocks sampled ahead of the consumer, which bounds memory.
    A ``WiderDtypeNeededError`` of a sampler is raised here, in the consumer's thread.
    Used by the Spark tasks that sample into a store and those that predict from rasters.
    """
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    pools = [
        ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"chips-{sampler.spec.name}")
        for sampler in samplers
    ]
    in_flight = deque()
    try:
        for index, (lefts, tops) in enumerate(blocks):
            in_flight.append(
                (
                    index,
                    [
                        pool.submit(sampler.sample, lefts, tops)
                        for sampler, pool in zip(samplers, pools, strict=True)
                    ],
                )
            )
            while len(in_flight) > BLOCKS_AHEAD or (in_flight and index == len(blocks) - 1):
                done, futures = in_flight.popleft()
                yield done, [future.result() for future in futures]
    finally:
        for future in (future for _, futures in in_flight for future in futures):
            future.cancel()
        for pool in pools:
            pool.shutdown(wait=True)


def sample_blocks(writer, inputs, pending, grid, dtypes, reporter):
    """Warp blocks with one thread per input (GDAL releases the GIL); write them in order.

    ``grid`` is a ``GridCells``; ``dtypes`` maps each input's name to its storage dtype.
    """
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    import rasterio

    blocks = group_blocks(pending, grid)
    # A bounded GDAL block cache: a row of blocks is all that neighbours share, and the
    # default (5 % of RAM) would let memory grow with the area sampled.
    environment = rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 1024 * 1024)
    environment.__enter__()
    samplers = [
        InputSampler(spec, grid.crs, grid.resolution, grid.chip_size, dtypes[spec.name])
        for spec in inputs
    ]
    pools = [
        ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"chips-{spec.name}")
        for spec in inputs
    ]
    in_flight, flushed = deque(), time.monotonic()
    try:
        for done, members in enumerate(blocks, start=1):
            in_flight.append(
                (
                    members,
                    [
                        pool.submit(sampler.sample, grid.lefts[members], grid.tops[members])
                        for sampler, pool in zip(samplers, pools, strict=True)
                    ],
                )
            )
            if len(in_flight) > BLOCKS_AHEAD:
                _write_block(writer, inputs, *in_flight.popleft())
            if time.monotonic() - flushed > FLUSH_EVERY_SECONDS:
                writer.flush()
                flushed = time.monotonic()
            reporter.progress(90.0 * (done - len(in_flight)) / len(blocks))
            reporter.check_canceled()
        while in_flight:
            _write_block(writer, inputs, *in_flight.popleft())
    finally:
        for future in (future for _, futures in in_flight for future in futures):
            future.cancel()
        for pool in pools:
            pool.shutdown(wait=True)
        for sampler in samplers:
            sampler.close()
        environment.__exit__(None, None, None)
    writer.flush()


def _write_block(writer, inputs, members, futures):
    results = [future.result() for future in futures]
    writer.write(
        members,
        {spec.name: chips for spec, (chips, _, _) in zip(inputs, results, strict=True)},
        np.column_stack([nodata for _, nodata, _ in results]),
        {spec.name: moments for spec, (_, _, moments) in zip(inputs, results, strict=True)},
    )


def cell_moments(chips):
    """Per cell and band of ``chips`` [n, bands, H, W] (float32, NaN = nodata): the valid
    pixels' count, mean, M2 (sum of squared deviations from the mean), min and max,
    as float64 [n, bands, 5] (zeros and ±inf where a cell has no valid pixel).

    Each cell's numbers depend on its own pixels only (every sum runs along one
    cell's pixels), not on the block it was sampled in: whichever run, engine or
    task samples a cell, its moments are the same bits.
    """
    if len(chips) > MOMENT_CELLS:  # a few cells at a time: float64 copies of a block are large
        return np.concatenate(
            [
                cell_moments(chips[start : start + MOMENT_CELLS])
                for start in range(0, len(chips), MOMENT_CELLS)
            ]
        )
    values = chips.reshape(chips.shape[0], chips.shape[1], -1).astype("float64")
    valid = ~np.isnan(values)
    count = valid.sum(axis=-1).astype("float64")
    total = np.where(valid, values, 0.0).sum(axis=-1)
    mean = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    deviations = np.where(valid, values - mean[..., None], 0.0)
    m2 = (deviations * deviations).sum(axis=-1)
    low = np.where(valid, values, np.inf).min(axis=-1, initial=np.inf)
    high = np.where(valid, values, -np.inf).max(axis=-1, initial=-np.inf)
    return np.stack([count, mean, m2, low, high], axis=-1)


def statistics_of_cells(moments):
    """Per-band count, mean, std, min and max over every valid pixel, from per-cell moments.

    ``moments`` [n_cells, bands, 5] (``cell_moments``, in store row order). The
    cells are combined in one step (total count; mean weighted by count; M2 as
    the cells' M2 plus their spread around the overall mean), in float64 and in
    row order, so the result does not depend on the order cells were sampled:
    a resumed store's statistics equal an uninterrupted run's bit for bit.
    """
    moments = np.ascontiguousarray(moments, dtype="float64")
    count, means, m2s = moments[..., 0], moments[..., 1], moments[..., 2]
    total = count.sum(axis=0)
    counted = total > 0
    mean = np.divide((count * means).sum(axis=0), total, out=np.zeros_like(total), where=counted)
    m2 = m2s.sum(axis=0) + (count * (means - mean) ** 2).sum(axis=0)
    std = np.sqrt(np.divide(m2, total, out=np.zeros_like(total), where=counted))
    return {  # null where a band has no valid pixel (JSON has no NaN)
        "count": total.tolist(),
        "mean": _where_counted(total, mean),
        "std": _where_counted(total, std),
        "min": _finite_or_none(moments[..., 3].min(axis=0, initial=np.inf)),
        "max": _finite_or_none(moments[..., 4].max(axis=0, initial=-np.inf)),
    }


def _where_counted(count, values):
    return [
        float(value) if counted > 0 else None for counted, value in zip(count, values, strict=True)
    ]


def _finite_or_none(values):
    return [float(value) if np.isfinite(value) else None for value in values]
