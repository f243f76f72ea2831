"""Predicting straight from the rasters: sample a batch of cells, predict it, keep no chips.

For maps whose chips need not be kept (a country, a continent), ``predict``
with ``source="rasters"`` samples each block of neighbouring cells with the
local engine's sampler (``sampling.InputSampler`` through ``sampling.sample_ahead``),
in the dtype a chip store would hold (float16, or float32 for an input whose
values float16 cannot hold, found as ``sample_chips`` finds it: the run starts
again with that input wider), and hands the chips to the members in batches
(``learning_data.predict_batch``, as predicting from a store does). So the
probabilities are those of a store sampled on the same grid, without the
store: nothing is written but the prediction layer. The per-chip statistics
of the transparent baseline (``baseline.features_of_chips``) and the nodata
fractions travel back with the probabilities (a few numbers per cell).

Runs in this process (``engine="local"``) or as Spark tasks over runs of
neighbouring blocks (``spark_engine.predict_from_rasters_on_spark``), each
calling ``sample_and_predict`` below on its blocks.
"""

import dataclasses

import numpy as np

from ..chips import sampling
from ..errors import PovmapInputError
from ..names import CELL_ID
from . import baseline, learning_data, model_package


@dataclasses.dataclass
class RasterPrediction:
    """What predicting from rasters gives for the grid's cells (in ``cell_ids`` order)."""

    cell_ids: np.ndarray
    probabilities: list  # per member: float32 [n_cells]
    features: np.ndarray | None  # the baseline's per-chip statistics [n_cells, features]
    nodata: np.ndarray  # float32 [n_cells, n_inputs], as a chip store's nodata_fraction.npy
    crs: str | None = None  # the grid's CRS (WKT)


def input_specs(inputs, manifest, parameter="SOURCE"):
    """The model's inputs as ``ChipInput`` in the model's order, from the rasters given.

    Every input the model was trained on must be given, with its bands; rasters
    the model does not use are left out (with their names in the message only
    when one is missing).
    """
    given = {}
    for spec in inputs or []:
        spec = spec if isinstance(spec, sampling.ChipInput) else sampling.ChipInput(**spec)
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
                f"{sampling.described(spec)}: bands {list(spec.bands)} given, the model was trained "
                f"on bands {list(model_input['bands'])}.",
            )
        ordered.append(spec)
    return ordered


def predict_from_rasters(options, manifest, reporter):
    """Sample and predict every cell of ``options.grid_path`` from ``options.inputs``."""
    inputs = input_specs(options.inputs, manifest)
    resolution, chip_size = float(manifest["resolution"]), int(manifest["chip_size"])
    grid = sampling.read_grid_cells(
        options.grid_path,
        options.grid_layer,
        id_field=options.id_field or CELL_ID,
        resolution=resolution,
        chip_size=chip_size,
        chip_parameter="GRID",  # the model's chip size: the grid's cells must give it
    )
    cell_ids = grid.ids
    for spec in inputs:
        sampling.check_raster(spec, grid)
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
            baseline.feature_inputs(manifest["baseline"]) if manifest.get("baseline") else None
        ),
    }
    blocks = sampling.group_blocks(np.arange(len(cell_ids)), grid)
    reporter.info(
        f"Predicting from the rasters ({', '.join(spec.name for spec in inputs)}): no chips are "
        "stored."
    )
    models = None
    dtypes = {spec.name: sampling.COMPACT_DTYPE for spec in inputs}
    while True:
        job["inputs"] = [dict(spec.__dict__, dtype=dtypes[spec.name]) for spec in inputs]
        try:
            if options.engine == "spark":
                from .spark_engine import predict_from_rasters_on_spark

                parts = predict_from_rasters_on_spark(
                    job, blocks, grid, reporter, master=options.spark_master
                )
            else:
                if models is None:
                    models = model_package.load_members(manifest)
                parts = [_predict_here(models, job, blocks, grid, len(cell_ids), reporter)]
        except sampling.WiderDtypeNeededError as widen:
            # As sample_chips: an input float16 cannot hold is sampled again as float32.
            dtypes[widen.spec.name] = sampling.WIDE_DTYPE
            reporter.info(f"{widen}: sampling again with this input as float32.")
            continue
        break
    prediction = _assembled(cell_ids, parts, len(manifest["members"]), len(inputs))
    sampling.refuse_inputs_without_data(inputs, prediction.nodata)
    prediction.crs = grid.crs.to_wkt()
    return prediction


def _predict_here(models, job, blocks, grid, n_cells, reporter):
    """The local engine: every block in this process, with progress and Cancel."""

    def progress(done):
        reporter.progress(5 + 90 * done / n_cells)
        reporter.check_canceled()

    reporter.progress(5)
    payloads = [(members, grid.lefts[members], grid.tops[members]) for members in blocks]
    return sample_and_predict(models, job, payloads, progress)


def sample_and_predict(models, job, payloads, on_cells=None):
    """Sample ``payloads`` [(grid positions, cell rows, cell cols)] and predict them in batches.

    Returns (positions, probabilities [members][n], features or None, nodata)
    for the payloads' cells. Batches hold ``job["batch_rows"]`` cells; the last
    one is padded as ``learning_data.predict_rows`` pads it. A sampler that
    finds values float16 cannot hold raises ``sampling.WiderDtypeNeededError``.
    """
    import rasterio

    names = [spec["name"] for spec in job["inputs"]]
    batch_rows = job["batch_rows"]
    total = sum(len(positions) for positions, _, _ in payloads)
    pad = total > batch_rows  # as predict_rows: Keras traces one batch shape
    buffered, done = [], 0
    positions_out, probabilities_out, features_out, nodata_out = [], [], [], []

    def predict_buffered(count):
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
                baseline.features_of_chips(batch, job["normalisation"], job["feature_inputs"])
            )

    with rasterio.Env(GDAL_CACHEMAX=sampling.GDAL_CACHE_MB * 1024 * 1024):
        _, samplers = sampling.samplers_of(
            job["inputs"], job["grid_crs"], job["resolution"], job["chip_size"]
        )
        try:
            blocks = [(lefts, tops) for _, lefts, tops in payloads]
            for index, sampled in sampling.sample_ahead(samplers, blocks):
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


def _assembled(cell_ids, parts, n_members, n_inputs):
    """The parts of the tasks (or of this process) placed back in the grid's cell order."""
    n = len(cell_ids)
    probabilities = np.full((n_members, n), np.nan, dtype="float32")
    nodata = np.full((n, n_inputs), np.nan, dtype="float32")
    features = None
    seen = np.zeros(n, dtype="bool")
    for positions, part_probabilities, part_features, part_nodata in parts:
        if not len(positions):
            continue
        probabilities[:, positions] = part_probabilities
        nodata[positions] = part_nodata
        if part_features is not None:
            if features is None:
                features = np.full((n, part_features.shape[1]), np.nan)
            features[positions] = part_features
        seen[positions] = True
    if not seen.all():  # a lost task would otherwise read as NaN probabilities
        raise RuntimeError(f"{int((~seen).sum())} cells were not predicted")
    return RasterPrediction(cell_ids, list(probabilities), features, nodata)
