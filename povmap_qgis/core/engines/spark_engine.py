"""The Spark engine: sampling chips and predicting as Apache Spark tasks (docs/spark.md).

Same code, other processes. Sampling groups the pending cells into the
local engine's blocks of neighbouring cells (``grid_cells.group_blocks``), gives
each Spark task a run of spatially adjacent blocks (compact raster windows),
and samples each block with the local engine's ``raster_sampler.InputSampler``. A task
writes its chips straight into the preallocated arrays of the partial store
(pwrite of whole rows, so every executor must reach the store's folder: a
shared file system), then its nodata fractions and done flags, and returns
only small numbers to the driver: per block, the nodata fractions. Each
cell's pixel moments are written into the partial store beside its chips, and
the statistics are combined from them in row order (``raster_sampler.statistics_of_cells``),
so the manifest's statistics are bit for bit the local engine's. Chips never
travel to the driver.

Predicting gives each task a run of store rows; the task reads the model
package from its (shared) path, checks its hashes (``read_package``), loads
the members once per Python worker and returns the members' probabilities
for its rows; the driver writes the usual prediction layer.

PySpark is imported only here, and this module only in the worker process
(never inside QGIS). The executors run the worker's Python
(``PYSPARK_PYTHON``) unless the cluster sets its own; on a cluster the driver
ships this package to them (``ship_package``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..chips.chip_store_writer import ChipStoreWriter
    from ..chips.grid_cells import GridCells
    from ..chips.raster_sampler import ChipInput
    from ..progress import Reporter


from .spark_session import (
    TASKS_PER_CORE,
    crash_if_asked,
    partition_count,
    run_job,
    running_session,
)

_members_cache: dict = {}  # per Python worker: (package path, weight hashes) -> Keras members


# --- sampling chips -----------------------------------------------------------


def sample_blocks_on_spark(
    writer: ChipStoreWriter,
    inputs: Sequence[ChipInput],
    pending: np.ndarray,
    grid: GridCells,
    dtypes: Mapping[str, str],
    reporter: Reporter,
    master: str = "local[*]",
) -> None:
    """The Spark twin of ``sampling.sample_blocks``: same arguments, same store written."""
    from ..chips import grid_cells, raster_sampler

    blocks = grid_cells.group_blocks(pending, grid)
    # Tasks get runs of blocks in raster order (neighbours share source tiles); statistics are
    # combined per cell in row order, so they do not depend on this.
    keys = [tuple(int(key) for key in grid.keys[members[0]]) for members in blocks]
    order = sorted(range(len(blocks)), key=lambda index: keys[index])
    job = {
        "partial": writer.partial,
        "inputs": [
            dict(
                spec.__dict__,
                dtype=dtypes[spec.name] if isinstance(dtypes, dict) else dtypes,
            )
            for spec in inputs
        ],
        "grid_crs": grid.crs.to_wkt(),
        "resolution": grid.resolution,
        "chip_size": grid.chip_size,
    }
    with running_session(master) as session:
        parts = job["parts"] = partition_count(session, len(blocks))
        # parallelize() slices a list into contiguous runs: each task gets neighbouring blocks.
        payloads = [
            (index, blocks[index], grid.lefts[blocks[index]], grid.tops[blocks[index]])
            for index in order
        ]
        rdd = session.sparkContext.parallelize(payloads, parts).mapPartitionsWithIndex(
            lambda partition, items: _sample_partition(job, partition, items)
        )
        reporter.info(
            f"Spark ({session.sparkContext.master}): {len(blocks)} blocks of cells in "
            f"{parts} tasks."
        )
        results = run_job(session, rdd.collect, reporter, 0.0, 90.0, "povmap: sample chips")
    for result in results:
        if result[0] == "widen":
            _, name, largest = result
            raise raster_sampler.WiderDtypeNeededError(
                next(spec for spec in inputs if spec.name == name), largest
            )
    for _, index, nodata in sorted(results, key=lambda result: result[1]):
        writer.mark_written(blocks[index], nodata)
    writer.flush()


def _sample_partition(job: Mapping[str, Any], partition: int, payloads: Iterable[Any]) -> list[Any]:
    """One Spark task: sample its blocks, pwrite the rows into the store, return small results."""
    import rasterio

    from ..chips import raster_sampler
    from ..chips.chip_store import DONE, MOMENTS, NODATA_FRACTION, RowFile

    crash_if_asked("sample", partition, job["parts"] - 1)
    payloads = list(payloads)  # this task's blocks: a few small arrays each
    specs = [
        raster_sampler.ChipInput(**{k: v for k, v in spec.items() if k != "dtype"})
        for spec in job["inputs"]
    ]
    arrays = {
        name: RowFile(os.path.join(job["partial"], f"{name}.npy"), "r+")
        for name in [spec.name for spec in specs]
    }
    for name in (NODATA_FRACTION, MOMENTS, DONE):  # file names, like "done.npy"
        arrays[name] = RowFile(os.path.join(job["partial"], name), "r+")
    results = []
    with rasterio.Env(GDAL_CACHEMAX=raster_sampler.GDAL_CACHE_MB * 1024 * 1024):
        _, samplers = raster_sampler.samplers_of(
            job["inputs"], job["grid_crs"], job["resolution"], job["chip_size"]
        )
        try:
            written = []
            # As in the local engine: one thread per input (GDAL releases the GIL), blocks ahead.
            blocks = [(lefts, tops) for _, _, lefts, tops in payloads]
            try:
                for position, sampled in raster_sampler.sample_ahead(samplers, blocks):
                    index, members = payloads[position][:2]
                    nodata = np.column_stack([fractions for _, fractions, _ in sampled])
                    nodata = nodata.astype("float32")  # the store's dtype, as the local engine
                    for spec, (values, _, _) in zip(specs, sampled, strict=True):
                        arrays[spec.name].write(members, values)
                    arrays[NODATA_FRACTION].write(members, nodata)
                    arrays[MOMENTS].write(
                        members, np.concatenate([moments for _, _, moments in sampled], axis=1)
                    )
                    written.append(members)
                    results.append(("block", index, nodata))
            except raster_sampler.WiderDtypeNeededError as widen:
                return [("widen", widen.spec.name, widen.largest)]
            # Chips, nodata and moments durable before their done flags: a resumed run trusts them.
            for name in [spec.name for spec in specs] + [NODATA_FRACTION, MOMENTS]:
                arrays[name].flush()
            for members in written:
                arrays[DONE].write(members, np.ones(len(members), dtype="bool"))
            arrays[DONE].flush()
        finally:
            for sampler in samplers:
                sampler.close()
            for array in arrays.values():
                array.close()
    return results


# --- predicting -------------------------------------------------------------------


def predict_rows_on_spark(
    model_path: str,
    chips_path: str,
    rows: Any,
    batch_rows: int,
    reporter: Reporter,
    master: str = "local[*]",
) -> list[Any]:
    """Each member's probabilities for store ``rows`` (the twin of ``learning_data.predict_rows``)."""
    rows = np.asarray(rows, dtype="int64")
    job = {
        "model": os.path.abspath(model_path),
        "chips": os.path.abspath(chips_path),
        "batch_rows": int(batch_rows),
    }
    with running_session(master) as session:
        # Whole batches per task, so that tasks pad (and batch) rows as one process would.
        batches = int(np.ceil(len(rows) / batch_rows))
        parts = job["parts"] = partition_count(session, batches)
        starts = [int(batch[0]) * batch_rows for batch in np.array_split(np.arange(batches), parts)]
        payloads = [
            (start, rows[start:end])
            for start, end in zip(starts, starts[1:] + [len(rows)], strict=True)
        ]
        reporter.info(
            f"Spark ({session.sparkContext.master}): {len(rows)} cells in {len(payloads)} tasks."
        )
        rdd = session.sparkContext.parallelize(payloads, len(payloads)).mapPartitionsWithIndex(
            lambda partition, items: _predict_partition(job, partition, items)
        )
        results = run_job(session, rdd.collect, reporter, 5.0, 95.0, "povmap: predict")
    outputs = None
    for start, probabilities in results:
        if outputs is None:
            outputs = [np.empty(len(rows), dtype="float32") for _ in probabilities]
        for out, values in zip(outputs, probabilities, strict=True):
            out[start : start + len(values)] = values
    return outputs or []


def _predict_partition(
    job: Mapping[str, Any], partition: int, payloads: Iterable[Any]
) -> list[Any]:
    from ..chips.chip_store import ChipStore
    from ..model import learning_data, model_package

    crash_if_asked("predict", partition, job["parts"] - 1)
    manifest = model_package.read_package(job["model"])  # hashes checked on this executor
    models = _members(manifest)
    names = [spec["name"] for spec in manifest["inputs"]]
    store = ChipStore(job["chips"])
    try:
        results = []
        for start, part_rows in payloads:
            probabilities = learning_data.predict_rows(
                models, store, part_rows, manifest["normalisation"], names, job["batch_rows"]
            )
            results.append((start, probabilities))
        return results
    finally:
        store.close()


def _set_up_worker() -> None:
    """A Python worker's process made ready to predict, before TensorFlow starts: memory kept
    for the next batch as the local engine keeps it, and TensorFlow's thread pools sized to
    the task's cores (spark.task.cpus).

    Left alone, every Python worker's TensorFlow would use every core of the
    machine: with one worker per core they fight over them.
    """
    from pyspark import TaskContext

    from ..model.environment import keep_freed_memory, limit_tensorflow_threads

    keep_freed_memory()
    context = TaskContext.get()
    cpus = context.cpus() if context is not None else 0
    if cpus:
        limit_tensorflow_threads(cpus)


def _members(manifest: Mapping[str, Any]) -> Any:
    """The package's Keras members, built once per Python worker (TensorFlow loads once)."""
    from ..model import model_package

    key = (manifest["path"], tuple(member.get("sha256", "") for member in manifest["members"]))
    if key not in _members_cache:
        if not _members_cache:
            _set_up_worker()
        _members_cache.clear()
        _members_cache[key] = model_package.load_members(manifest)
    return _members_cache[key]


# --- predicting from the rasters (no chip store) ---------------------------------


def predict_from_rasters_on_spark(
    job: Mapping[str, Any],
    chunks: Sequence[Sequence[np.ndarray]],
    pending: Sequence[int],
    grid: GridCells,
    reporter: Reporter,
    keep: Callable[[int, tuple[Any, ...]], None],
    master: str = "local[*]",
) -> None:
    """Each task samples one part (a run of neighbouring blocks) and predicts it; no chips stored.

    The twin of ``raster_prediction._predict_here``: each task runs
    ``raster_prediction.sample_and_predict`` on its part with the members
    loaded once per Python worker (hashes checked there) and returns, per cell,
    the members' probabilities, the baseline's per-chip statistics and the
    nodata fractions; chips never leave the task. The pending parts run in
    waves of ``TASKS_PER_CORE`` tasks per core, and the driver keeps each wave's
    parts (``keep(index, part)``: on its own disk, no shared file system needed)
    before the next starts, so a stopped run loses at most one wave. An input
    whose values float16 cannot hold raises ``raster_sampler.WiderDtypeNeededError``
    here, as sampling does.
    """
    from ..chips import raster_sampler

    total = sum(len(members) for chunk in chunks for members in chunk)
    cells = {index: sum(len(members) for members in chunks[index]) for index in pending}
    done = total - sum(cells.values())
    with running_session(master) as session:
        wave_size = session.sparkContext.defaultParallelism * TASKS_PER_CORE
        waves = [pending[start : start + wave_size] for start in range(0, len(pending), wave_size)]
        reporter.info(
            f"Spark ({session.sparkContext.master}): {sum(cells.values())} cells in {len(pending)} "
            f"parts, {len(waves)} wave(s) of up to {wave_size} tasks, sampled and predicted in each."
        )
        for wave in waves:
            payloads = [
                (
                    index,
                    [
                        (members, grid.lefts[members], grid.tops[members])
                        for members in chunks[index]
                    ],
                )
                for index in wave
            ]
            wave_job = dict(job, parts=len(wave))
            rdd = session.sparkContext.parallelize(payloads, len(wave)).mapPartitionsWithIndex(
                lambda partition, items, wave_job=wave_job: _predict_rasters_partition(
                    wave_job, partition, items
                )
            )
            wave_cells = sum(cells[index] for index in wave)
            results = run_job(
                session,
                rdd.collect,
                reporter,
                5.0 + 90.0 * done / total,
                5.0 + 90.0 * (done + wave_cells) / total,
                "povmap: predict from rasters",
            )
            for result in results:
                if result[0] == "widen":
                    _, name, largest = result
                    spec = next(spec for spec in job["inputs"] if spec["name"] == name)
                    raise raster_sampler.WiderDtypeNeededError(
                        raster_sampler.ChipInput(**{k: v for k, v in spec.items() if k != "dtype"}),
                        largest,
                    )
            for _, index, *part in results:
                keep(index, tuple(part))
            done += wave_cells


def _predict_rasters_partition(
    job: Mapping[str, Any], partition: int, payloads: Iterable[Any]
) -> list[Any]:
    from ..chips import raster_sampler
    from ..model import model_package
    from ..model.raster_prediction import sample_and_predict

    crash_if_asked("predict", partition, job["parts"] - 1)
    payloads = list(payloads)  # (part index, its blocks); one part per task
    if not payloads:
        return []
    manifest = model_package.read_package(job["model"])  # hashes checked on this executor
    results = []
    for index, blocks in payloads:
        try:
            part = sample_and_predict(_members(manifest), job, blocks)
        except raster_sampler.WiderDtypeNeededError as widen:
            return [("widen", widen.spec.name, widen.largest)]
        results.append(("part", index, *part))
    return results


class SparkEngine:
    """What the steps run as Spark tasks on ``master`` (handed to them by core/engines/steps.py)."""

    def __init__(self, master: str = "local[*]") -> None:
        self.master = master

    def sample_blocks(
        self,
        writer: ChipStoreWriter,
        inputs: Sequence[ChipInput],
        pending: np.ndarray,
        grid: GridCells,
        dtypes: Mapping[str, str],
        reporter: Reporter,
    ) -> None:
        return sample_blocks_on_spark(writer, inputs, pending, grid, dtypes, reporter, self.master)

    def predict_rows(
        self, model_path: str, chips_path: str, rows: Any, batch_rows: int, reporter: Reporter
    ) -> list[Any]:
        return predict_rows_on_spark(
            model_path, chips_path, rows, batch_rows, reporter, master=self.master
        )

    def predict_from_rasters(
        self,
        job: Mapping[str, Any],
        chunks: Sequence[Sequence[np.ndarray]],
        pending: Sequence[int],
        grid: GridCells,
        reporter: Reporter,
        keep: Callable[[int, tuple[Any, ...]], None],
    ) -> None:
        return predict_from_rasters_on_spark(
            job, chunks, pending, grid, reporter, keep, master=self.master
        )
