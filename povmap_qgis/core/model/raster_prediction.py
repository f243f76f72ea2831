"""Predicting straight from the rasters: sample a batch of cells, predict it, keep no chips.

For maps whose chips need not be kept (a country, a continent), ``predict``
with ``source="rasters"`` samples each block of neighbouring cells with the
local engine's sampler (``raster_sampler.InputSampler`` through ``raster_sampler.sample_ahead``),
in the dtype a chip store would hold (float16, or float32 for an input whose
values float16 cannot hold, found as ``sample_chips`` finds it: the run starts
again with that input wider), and hands the chips to the members in batches
(``learning_data.predict_batch``, as predicting from a store does). So the
probabilities are those of a store sampled on the same grid, without the
store: nothing is written but the prediction layer. The per-chip statistics
of the transparent baseline (``chip_features.features_of_chips``) and the nodata
fractions travel back with the probabilities (a few numbers per cell), and are
kept on disk, not in memory (below): the layer is written window by window.

Runs in this process (``engine="local"``) or as Spark tasks
(``core/engines/spark_engine.py``), each calling
``sample_and_predict`` below on its blocks.

Resumable. The grid's blocks, in raster order, are cut into *parts* of about
``CHUNK_CELLS`` cells (fewer for small grids), each sampled and predicted on its
own (its batches start with it and its last one is padded), so a part's numbers do
not depend on which other parts run with it. Every finished part is kept in
``.NAME.predicting/`` beside the output (``Checkpoint``: the members'
probabilities, baseline statistics and nodata fractions of its cells, never chips);
a run stopped, cancelled or killed part-way and started again with the same
parameters (same model package, grid cells, input files, batch size) predicts only
the parts that are missing and writes the same layer as a run never interrupted.
The folder is removed once the layer is written.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
import shutil
import signal
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..atomic import OutputLock
from ..chips import chip_features, grid_cells, raster_sampler, sampling
from ..errors import PovmapInputError
from ..names import CELL_ID
from . import learning_data, model_package

if TYPE_CHECKING:
    from ..chips.grid_cells import GridCells
    from ..progress import Reporter
    from .prediction import PredictOptions


CHUNK_CELLS = 4096  # the most cells of one resumable part (a finished part is kept on disk)
CHUNKS_AT_LEAST = 64  # smaller grids: parts of len(grid) / 64 cells, so tasks stay many
RESUME_FORMAT = 1
KILL_AFTER_VARIABLE = "POVMAP_PREDICT_KILL_AFTER"  # tests: SIGKILL the run after N parts kept


@dataclasses.dataclass
class RasterPrediction:
    """What predicting from rasters gives for the grid's cells (in ``cell_ids`` order)."""

    cell_ids: np.ndarray
    parts: KeptParts  # the cells' numbers, read back window by window
    crs: str | None = None  # the grid's CRS (WKT)
    checkpoint: Checkpoint | None = None  # finish() once the layer is written


def input_specs(
    inputs: Sequence[Any], manifest: Mapping[str, Any], parameter: str = "SOURCE"
) -> list[raster_sampler.ChipInput]:
    """The model's inputs as ``ChipInput`` in the model's order, from the rasters given.

    Every input the model was trained on must be given, with its bands; rasters
    the model does not use are left out (with their names in the message only
    when one is missing).
    """
    given = {}
    for spec in inputs or []:
        spec = (
            spec if isinstance(spec, raster_sampler.ChipInput) else raster_sampler.ChipInput(**spec)
        )
        given[spec.name] = spec
    needed = [spec["name"] for spec in manifest["inputs"]]
    missing = [name for name in needed if name not in given]
    if missing:
        raise PovmapInputError(
            parameter,
            f"predicting from rasters needs every input the model was trained on ({', '.join(needed)}); "
            f"give {', '.join(missing)} too"
            + (f" (given: {', '.join(given)})" if given else "")
            + ", or predict from a chip store (CHIPS).",
        )
    ordered = []
    for model_input in manifest["inputs"]:
        spec = given[model_input["name"]]
        if [int(band) for band in spec.bands] != [int(band) for band in model_input["bands"]]:
            raise PovmapInputError(
                spec.parameter,
                f"{raster_sampler.described(spec)}: bands {list(spec.bands)} given, the model was trained "
                f"on bands {list(model_input['bands'])}.",
            )
        ordered.append(spec)
    return ordered


def predict_from_rasters(
    options: PredictOptions, manifest: dict[str, Any], reporter: Reporter, remote: Any = None
) -> RasterPrediction:
    """Sample and predict every cell of ``options.grid_path`` from ``options.inputs``."""
    inputs = input_specs(options.inputs, manifest)  # type: ignore[arg-type]  # SOURCE=rasters
    resolution, chip_size = float(manifest["resolution"]), int(manifest["chip_size"])
    grid = grid_cells.read_grid_cells(
        options.grid_path,
        options.grid_layer,
        id_field=options.id_field or CELL_ID,
        resolution=resolution,
        chip_size=chip_size,
        chip_parameter="GRID",  # the model's chip size: the grid's cells must give it
    )
    cell_ids = grid.ids
    for spec in inputs:
        raster_sampler.check_raster(spec, grid)
    job = {
        "model": manifest["path"],
        "grid_crs": grid.crs.to_wkt(),
        "resolution": resolution,
        "chip_size": chip_size,
        "batch_rows": int(options.batch_rows),
        "normalisation": manifest["normalisation"],
        "baseline": bool(manifest.get("baseline")),
        # the stored baseline's column order (the manifest's normalisation is alphabetical)
        "feature_inputs": (
            chip_features.feature_inputs(manifest["baseline"]) if manifest.get("baseline") else None
        ),
    }
    blocks = grid_cells.group_blocks(np.arange(len(cell_ids)), grid)
    blocks.sort(key=lambda members: tuple(int(key) for key in grid.keys[members[0]]))
    chunks = chunk_blocks(blocks, len(cell_ids))  # raster order: neighbours share source tiles
    reporter.info(
        f"Predicting from the rasters ({', '.join(spec.name for spec in inputs)}): no chips are "
        "stored."
    )
    checkpoint = Checkpoint(
        options.output_path, resume_key(manifest, grid, inputs, job, chunks), chunks
    ).open()
    try:
        dtypes = checkpoint.dtypes or {spec.name: raster_sampler.COMPACT_DTYPE for spec in inputs}
        done = checkpoint.done_parts(dtypes)
        if done:
            cells = sum(done.values())
            reporter.info(
                f"Resuming: {len(done)} of {len(chunks)} parts ({cells:,} of {len(cell_ids):,} "
                f"cells) were already predicted by a run that stopped ({checkpoint.folder})."
            )
        models = None
        while True:
            job["inputs"] = [dict(spec.__dict__, dtype=dtypes[spec.name]) for spec in inputs]
            pending = [index for index in range(len(chunks)) if index not in done]
            try:
                if options.engine == "spark":
                    sampling.remote_engine(remote).predict_from_rasters(
                        job, chunks, pending, grid, reporter, checkpoint.keep
                    )
                else:
                    if models is None and pending:
                        models = model_package.load_members(manifest)
                    _predict_here(
                        models,  # type: ignore[arg-type]  # loaded when a part is pending
                        job,
                        chunks,
                        pending,
                        grid,
                        checkpoint.keep,
                        reporter,
                    )
            except raster_sampler.WiderDtypeNeededError as widen:
                # As sample_chips: an input float16 cannot hold is sampled again as float32, and
                # the parts predicted from float16 chips are predicted again.
                dtypes[widen.spec.name] = raster_sampler.WIDE_DTYPE
                done = checkpoint.restart(dtypes)
                reporter.info(f"{widen}: sampling again with this input as float32.")
                continue
            break
        parts = KeptParts(checkpoint, len(cell_ids))
        sampling.refuse_inputs_without_data(inputs, parts.least_nodata)
    except BaseException:
        checkpoint.close()
        raise
    return RasterPrediction(cell_ids, parts, grid.crs.to_wkt(), checkpoint)


def chunk_blocks(blocks: Sequence[np.ndarray], n_cells: int) -> list[list[np.ndarray]]:
    """The resumable parts: runs of neighbouring blocks (raster order) of about ``CHUNK_CELLS`` cells."""
    target = max(1, min(CHUNK_CELLS, n_cells // CHUNKS_AT_LEAST))
    chunks, current, count = [], [], 0
    for members in blocks:
        current.append(members)
        count += len(members)
        if count >= target:
            chunks.append(current)
            current, count = [], 0
    if current:
        chunks.append(current)
    return chunks


def resume_key(
    manifest: Mapping[str, Any],
    grid: GridCells,
    inputs: Sequence[raster_sampler.ChipInput],
    job: Mapping[str, Any],
    chunks: Sequence[Sequence[np.ndarray]],
) -> dict[str, Any]:
    """What a kept part depends on: the model package, the grid's cells, the input files, batches."""
    with open(os.path.join(manifest["path"], "manifest.json"), "rb") as handle:
        model = hashlib.sha256(handle.read()).hexdigest()
    return {
        "format": RESUME_FORMAT,
        "model": model,
        "grid_cells_sha256": grid_cells.grid_cells_sha256(grid),
        "inputs": [
            {
                "name": spec.name,
                "path": spec.path,
                "bands": [int(band) for band in spec.bands],
                "resampling": spec.resampling,
                "file": sampling.file_fingerprint(spec.path),
            }
            for spec in inputs
        ],
        "batch_rows": job["batch_rows"],
        "parts": [int(sum(len(members) for members in chunk)) for chunk in chunks],
    }


def resume_folder(output_path: str) -> str:
    """``.NAME.predicting/`` beside the output: the parts a stopped run finished."""
    folder, name = os.path.split(os.path.abspath(output_path))
    return os.path.join(folder, f".{name}.predicting")


class Checkpoint:
    """The finished parts of one predict-from-rasters output, kept until its layer is written.

    Holds the output's lock (``core.atomic.OutputLock``; inherited from the
    Processing adapter) while the run lasts. ``keep(index, part)`` writes a
    finished part to disk (under a temporary name, then renamed; memory keeps
    only its cell count, ``KeptParts`` reads the numbers back); ``open()``
    adopts the parts of an earlier run whose resume key matches and removes
    any other leftover folder.
    """

    MANIFEST = "resume.json"

    def __init__(
        self, output_path: str, key: Mapping[str, Any], chunks: Sequence[Sequence[np.ndarray]]
    ) -> None:
        self.folder = resume_folder(output_path)
        self.key = json.loads(json.dumps(key, sort_keys=True, default=str))
        self.positions = [np.concatenate(chunk).astype("int64") for chunk in chunks]
        self.lock = OutputLock(output_path, "OUTPUT", "the predictions", self.folder)
        self.dtypes: dict[str, str] | None = None
        self.kept: dict[int, int] = {}  # part index -> its cells (the numbers stay on disk)
        self._kept_here = 0

    def open(self) -> Checkpoint:
        self.lock.acquire()
        recorded = self._read_manifest()
        if recorded is not None and recorded.get("key") == self.key:
            self.dtypes = dict(recorded["dtypes"])
        elif os.path.exists(self.folder):
            shutil.rmtree(self.folder)
        return self

    def done_parts(self, dtypes: Mapping[str, str]) -> dict[int, int]:
        """{part index: cells} of the parts an earlier run finished with these ``dtypes`` (on disk)."""
        self.dtypes = dict(dtypes)
        self.kept = {}
        if not os.path.isdir(self.folder):
            return self.kept
        for name in sorted(os.listdir(self.folder)):
            if not (name.startswith("part-") and name.endswith(".npz")):
                continue
            index = int(name[5:-4])
            try:
                with np.load(self.part_path(index)) as stored:
                    positions = stored["positions"]
                    complete = {"probabilities", "nodata"} <= set(stored.files)
            except (OSError, ValueError, KeyError):
                continue  # unreadable (the disk failed as it was renamed): predicted again
            if (
                complete
                and index < len(self.positions)
                and np.array_equal(positions, self.positions[index])
            ):
                self.kept[index] = len(positions)
        return self.kept

    def restart(self, dtypes: Mapping[str, str]) -> dict[int, int]:
        """Forget every part (an input was widened: its chips change); keep the new dtypes."""
        if os.path.isdir(self.folder):
            shutil.rmtree(self.folder)
        self.dtypes, self.kept = dict(dtypes), {}
        return self.kept

    def keep(self, index: int, part: tuple[Any, ...]) -> None:
        positions, probabilities, features, nodata = part
        if not os.path.isdir(self.folder):
            os.makedirs(self.folder)
        if self._read_manifest() is None:
            temporary = os.path.join(self.folder, f".{self.MANIFEST}.tmp")
            with open(temporary, "w", encoding="utf-8") as handle:
                json.dump({"key": self.key, "dtypes": self.dtypes}, handle)
            os.replace(temporary, os.path.join(self.folder, self.MANIFEST))
        arrays = {"positions": positions, "probabilities": probabilities, "nodata": nodata}
        if features is not None:
            arrays["features"] = features
        temporary = os.path.join(self.folder, f".part-{index:06d}.tmp.npz")
        with open(temporary, "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.part_path(index))
        self.kept[index] = len(positions)
        self._kept_here += 1
        if os.environ.get(KILL_AFTER_VARIABLE) == str(self._kept_here):
            os.kill(os.getpid(), signal.SIGKILL)  # tests: a run killed part-way (kill -9)

    def part_path(self, index: int) -> str:
        return os.path.join(self.folder, f"part-{index:06d}.npz")

    def finish(self) -> None:
        """The layer is written: the kept parts are no longer needed."""
        shutil.rmtree(self.folder, ignore_errors=True)
        self.lock.release()

    def close(self) -> None:
        """The run stops unfinished: the kept parts stay for the next run with these parameters."""
        self.lock.release()

    def _read_manifest(self) -> dict[str, Any] | None:
        try:
            with open(os.path.join(self.folder, self.MANIFEST), encoding="utf-8") as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return None


def _predict_here(
    models: Sequence[Any],
    job: Mapping[str, Any],
    chunks: Sequence[Sequence[np.ndarray]],
    pending: Sequence[int],
    grid: GridCells,
    keep: Callable[[int, tuple[Any, ...]], None],
    reporter: Reporter,
) -> None:
    """The local engine: every pending part in this process, kept as it ends; progress and Cancel."""
    total = sum(len(members) for chunk in chunks for members in chunk)
    done = total - sum(len(members) for index in pending for members in chunks[index])
    reporter.progress(5 + 90 * done / total)
    for index in pending:

        def progress(cells: int, before: int = done) -> None:
            reporter.progress(5 + 90 * (before + cells) / total)
            reporter.check_canceled()

        payloads = [(members, grid.lefts[members], grid.tops[members]) for members in chunks[index]]
        keep(index, sample_and_predict(models, job, payloads, progress))
        done += sum(len(members) for members in chunks[index])


def sample_and_predict(
    models: Sequence[Any],
    job: Mapping[str, Any],
    payloads: Sequence[Any],
    on_cells: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray]:
    """Sample ``payloads`` [(grid positions, cell rows, cell cols)] and predict them in batches.

    Returns (positions, probabilities [members][n], features or None, nodata)
    for the payloads' cells. Batches hold ``job["batch_rows"]`` cells; the last
    one is padded as ``learning_data.predict_rows`` pads it. A sampler that
    finds values float16 cannot hold raises ``raster_sampler.WiderDtypeNeededError``.
    """
    import rasterio

    names = [spec["name"] for spec in job["inputs"]]
    batch_rows = job["batch_rows"]
    total = sum(len(positions) for positions, _, _ in payloads)
    pad = total > batch_rows  # as predict_rows: Keras traces one batch shape
    buffered: list[Any] = []
    done = 0
    positions_out: list[np.ndarray] = []
    probabilities_out: list[np.ndarray] = []
    features_out: list[np.ndarray] = []
    nodata_out: list[np.ndarray] = []

    def predict_buffered(count: int) -> None:
        nonlocal buffered
        batch = {name: np.concatenate([sampled[name] for sampled in buffered]) for name in names}
        rest = {name: values[count:] for name, values in batch.items()}
        batch = {name: values[:count] for name, values in batch.items()}
        buffered = [rest] if len(rest[names[0]]) else []
        padded = (
            {
                name: np.concatenate([values, np.repeat(values[-1:], batch_rows - count, axis=0)])
                for name, values in batch.items()
            }
            if pad and count < batch_rows
            else batch
        )
        probabilities = learning_data.predict_batch(models, padded, job["normalisation"])
        probabilities_out.append(np.stack([values[:count] for values in probabilities]))
        if job["baseline"]:
            features_out.append(
                chip_features.features_of_chips(batch, job["normalisation"], job["feature_inputs"])
            )

    with rasterio.Env(GDAL_CACHEMAX=raster_sampler.GDAL_CACHE_MB * 1024 * 1024):
        _, samplers = raster_sampler.samplers_of(
            job["inputs"], job["grid_crs"], job["resolution"], job["chip_size"]
        )
        try:
            blocks = [(lefts, tops) for _, lefts, tops in payloads]
            for index, sampled in raster_sampler.sample_ahead(samplers, blocks):
                positions_out.append(np.asarray(payloads[index][0], dtype="int64"))
                nodata_out.append(
                    np.column_stack([fractions for _, fractions, _ in sampled]).astype("float32")
                )
                buffered.append(
                    {name: values for name, (values, _, _) in zip(names, sampled, strict=True)}
                )
                done += len(payloads[index][0])
                while sum(len(part[names[0]]) for part in buffered) >= batch_rows:
                    predict_buffered(batch_rows)
                if on_cells:
                    on_cells(done)
            if buffered:
                predict_buffered(sum(len(part[names[0]]) for part in buffered))
        finally:
            for sampler in samplers:
                sampler.close()
    return (
        np.concatenate(positions_out) if positions_out else np.zeros(0, dtype="int64"),
        np.concatenate(probabilities_out, axis=1) if probabilities_out else None,
        np.concatenate(features_out) if features_out else None,
        np.concatenate(nodata_out) if nodata_out else np.zeros((0, len(names)), "float32"),
    )


class KeptParts:
    """The finished parts on disk, read back in the grid's cell order one window at a time.

    Memory holds the cells' places (two int32 per cell), the window asked for and
    the last ``CACHED_PARTS`` parts read, never the whole grid's numbers: the
    prediction layer is written window by window (``prediction.write_predictions``).
    """

    CACHED_PARTS = 16

    def __init__(self, checkpoint: Checkpoint, n_cells: int) -> None:
        self._path = checkpoint.part_path
        self.part_of = np.full(n_cells, -1, dtype="int32")
        self.place = np.zeros(n_cells, dtype="int32")
        least_nodata = []
        for index in range(len(checkpoint.positions)):
            with np.load(self._path(index)) as stored:
                positions = stored["positions"]
                if len(positions):
                    least_nodata.append(stored["nodata"].min(axis=0))
            self.part_of[positions] = index
            self.place[positions] = np.arange(len(positions), dtype="int32")
        if (self.part_of < 0).any():  # a lost task would otherwise read as NaN probabilities
            raise RuntimeError(f"{int((self.part_of < 0).sum())} cells were not predicted")
        # per part, each input's smallest nodata fraction: an input with no data anywhere shows
        self.least_nodata = np.array(least_nodata, dtype="float32")
        self._cache: collections.OrderedDict[int, dict[str, Any]] = collections.OrderedDict()

    def window(self, start: int, stop: int) -> tuple[list, np.ndarray | None, np.ndarray]:
        """(probabilities per member, baseline statistics or None, nodata) of cells start..stop."""
        parts, places = self.part_of[start:stop], self.place[start:stop]
        probabilities = nodata = features = None
        for index in np.unique(parts):
            chosen = parts == index
            stored = self._part(int(index))
            if probabilities is None:
                n = stop - start
                probabilities = np.empty((len(stored["probabilities"]), n), dtype="float32")
                nodata = np.empty((n, stored["nodata"].shape[1]), dtype="float32")
                if stored.get("features") is not None:
                    features = np.empty((n, stored["features"].shape[1]), dtype="float64")
            probabilities[:, chosen] = stored["probabilities"][:, places[chosen]]
            nodata[chosen] = stored["nodata"][places[chosen]]  # type: ignore[index]
            if features is not None:
                features[chosen] = stored["features"][places[chosen]]
        if probabilities is None:
            raise ValueError(f"no cells between {start} and {stop}")
        return list(probabilities), features, nodata  # type: ignore[return-value]

    def _part(self, index: int) -> dict[str, Any]:
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        with np.load(self._path(index)) as stored:
            part = {name: stored[name] for name in stored.files}
        self._cache[index] = part
        if len(self._cache) > self.CACHED_PARTS:
            self._cache.popitem(last=False)
        return part
