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

This module is the step (samplechips) and its local engine: the grid's cells and
blocks are read by ``grid_cells.py``, each input is sampled by
``raster_sampler.InputSampler``, the chips are kept by ``chip_store.py``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import vectors
from ..errors import PovmapInputError, write_failure
from ..names import CELL_ID, DEFAULT_RESOLUTION
from ..progress import Reporter
from .chip_store import DEFAULT_MAX_NODATA, check_input_name, check_input_names
from .chip_store_writer import ChipStoreWriter
from .grid_cells import grid_cells_sha256, group_blocks, read_grid_cells
from .raster_sampler import (
    BLOCKS_AHEAD,
    GDAL_CACHE_MB,
    WIDE_DTYPE,
    ChipInput,
    InputSampler,
    WiderDtypeNeededError,
    check_raster,
    statistics_of_cells,
)

if TYPE_CHECKING:
    from concurrent.futures import Future

    from .grid_cells import GridCells


FLUSH_EVERY_SECONDS = 10  # progress made durable for resume, without flushing constantly


@dataclasses.dataclass
class ChipOptions:
    grid_path: str
    inputs: list
    output_path: str
    grid_layer: str | None = None
    id_field: str = CELL_ID  # the grid's unique whole-number id (any polygon grid)
    resolution: float = DEFAULT_RESOLUTION
    chip_size: int | None = None
    max_nodata: float = DEFAULT_MAX_NODATA
    dtype: str = "float16"
    nodata_grid_path: str | None = None  # optional copy of the grid with nodata fields per input
    style_qml_path: str | None = None
    engine: str = "local"  # "local" (this process) or "spark" (core/engines/spark_engine.py)
    spark_master: str = "local[*]"


def sample_chips(
    options: ChipOptions, reporter: Reporter | None = None, remote: Any = None
) -> dict[str, Any]:
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
    summary: dict[str, Any] = {
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


def _stop(writer: ChipStoreWriter, error: BaseException) -> None:
    """Keep the partial store for a resume after a cancel, a kill or a crash; remove it after
    bad input or a full disk, which a rerun with the same settings would meet again."""
    if isinstance(error, PovmapInputError) or write_failure(error) is not None:
        writer.discard()
    else:
        writer.close()


def _engine(options: ChipOptions, remote: Any) -> Callable[..., Any]:
    """What samples the pending blocks: threads in this process, or Spark tasks (same sampler)."""
    if options.engine == "spark":
        return remote_engine(remote).sample_blocks
    if options.engine != "local":
        raise PovmapInputError("ENGINE", f"unknown engine '{options.engine}' (local or spark).")
    return sample_blocks


def remote_engine(remote: Any) -> Any:
    """The engine ENGINE=spark runs on; a step called without one is called past the engines."""
    if remote is None:
        raise PovmapInputError(
            "ENGINE",
            "ENGINE=spark runs through povmap_qgis.core.engines.steps (as the worker and the "
            "command line do), which hands the step its Spark engine.",
        )
    return remote


def refuse_inputs_without_data(inputs: Sequence[ChipInput], nodata: np.ndarray) -> None:
    """An input with no data in any cell ([n_cells, n_inputs] nodata fractions) is a mistake."""
    for column, spec in enumerate(inputs):
        if (nodata[:, column] >= 1).all():
            raise PovmapInputError(
                spec.parameter,
                f"the raster '{spec.path}' has no data in any cell (all nodata or outside the grid); check its nodata value and extent, or leave it out.",
            )


def file_fingerprint(path: str) -> list[int] | None:
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


def write_nodata_grid(
    options: ChipOptions,
    inputs: Sequence[ChipInput],
    cell_ids: np.ndarray,
    nodata: np.ndarray,
    flagged: np.ndarray,
) -> None:
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
        options.nodata_grid_path,  # type: ignore[arg-type]  # called with NODATA_GRID only
        options.style_qml_path,
        "povmap chip nodata",
        metadata={
            "povmap_max_nodata": options.max_nodata,
            "povmap_chip_store": options.output_path,
        },
    )


def sample_blocks(
    writer: ChipStoreWriter,
    inputs: Sequence[ChipInput],
    pending: np.ndarray,
    grid: GridCells,
    dtypes: dict[str, str],
    reporter: Reporter,
) -> None:
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
    in_flight: deque[Any] = deque()
    flushed = time.monotonic()
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


def _write_block(
    writer: ChipStoreWriter,
    inputs: Sequence[ChipInput],
    members: np.ndarray,
    futures: Sequence[Future[Any]],
) -> None:
    results = [future.result() for future in futures]
    writer.write(
        members,
        {spec.name: chips for spec, (chips, _, _) in zip(inputs, results, strict=True)},
        np.column_stack([nodata for _, nodata, _ in results]),
        {spec.name: moments for spec, (_, _, moments) in zip(inputs, results, strict=True)},
    )
