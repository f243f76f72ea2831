"""Run a model package on a grid's chips (pipeline step 5, runs in the worker).

The chip store is streamed in batches (memory bounded); every member predicts
every batch. With ``source="rasters"`` no store is read or written: the cells
are sampled from the rasters block by block and predicted at once
(core/model/raster_prediction.py, the same sampler and the same batches). Either way, the output is the grid with the prediction fields of docs/contracts.md:
``prob_<member>``, ``prob_mean``, ``votes``, ``pred`` (1 = poor: calibrated
``prob_mean`` >= the package's ``decision_threshold``; the members' majority vote
for a package without one) and ``disagreement`` (standard deviation of the members'
probabilities), plus ``chip_flagged`` (1 = too much nodata: a less reliable
prediction).

Trust fields (model packages of format 1.1, see ``trust_fields``): ``prob_raw``
(before calibration: the stacking of the members and the baseline, ``stacking.combine``
with the package's ``stacking`` — format 1.2 —, else the members' mean, which the log
says), ``prob_mean`` calibrated (Platt
scaling fitted on the validation cells: "share of such cells that are poor"),
``prob_low`` / ``prob_high`` (``intervals.cell_interval``: the package's interval
rule, fitted on the validation cells by district, with its nominal coverage; a
package from before that rule keeps the members' spread, calibrated ``prob_raw``
∓ 1.96 × ``disagreement``, and the log says so), ``prob_baseline`` (the transparent baseline's calibrated
probability) and ``out_of_range`` (1 = a per-chip statistic lies outside the
training cells' 1st–99th percentiles). A 1.0 package writes ``prob_raw`` =
``prob_mean`` and says in the log what it lacks.
"""

from __future__ import annotations

import dataclasses
import html
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import vectors
from ..chips import chip_features
from ..chips.chip_store import ChipStore
from ..chips.grid_cells import read_cell_ids
from ..chips.sampling import remote_engine
from ..errors import PovmapInputError
from ..geopackage import write_layer_chunks
from ..history import drift
from ..names import CELL_ID, ID_FIELD_METADATA, PREDICTION_SOURCES
from ..progress import Reporter
from ..wording import counted
from . import baseline, calibration, intervals, learning_data, model_package, stacking
from .ensemble_judges import ensemble_outputs
from .environment import keep_freed_memory

if TYPE_CHECKING:
    import pandas as pd


ENGINES = ("local", "spark")


@dataclasses.dataclass
class PredictOptions:
    model_path: str
    chips_path: str | None  # the grid's chip store; None with source="rasters"
    grid_path: str
    output_path: str
    grid_layer: str | None = None
    id_field: str | None = None  # None: the id field the chip store was sampled by
    batch_rows: int = 64
    style_qml_path: str | None = None
    extra_styles: list | None = None  # [(qml path, style name)] stored beside the default style
    engine: str = "local"  # "local" (this process) or "spark" (core/engines/spark_engine.py)
    spark_master: str = "local[*]"
    # "chips": read the chip store; "rasters": sample ``inputs`` (ChipInput or dicts) cell
    # block by cell block and predict, storing no chips (core/model/raster_prediction.py)
    source: str = "chips"
    inputs: list | None = None
    max_nodata: float = 0.1  # chip_flagged from rasters (a store keeps its own)


def predict(
    options: PredictOptions, reporter: Reporter | None = None, remote: Any = None
) -> dict[str, Any]:
    """Predict every cell; ``remote``: the engine that predicts elsewhere when ``options.engine``
    is not local (``core/engines/steps.py`` hands it over; this module knows no engine)."""
    reporter = reporter or Reporter()
    started = time.monotonic()
    keep_freed_memory()  # a batch's arrays reuse the last one's pages
    manifest = model_package.read_package(options.model_path)
    if options.source not in PREDICTION_SOURCES:
        raise PovmapInputError(
            "SOURCE", f"unknown source '{options.source}' ({' or '.join(PREDICTION_SOURCES)})."
        )
    if options.engine not in ENGINES:
        raise PovmapInputError("ENGINE", f"unknown engine '{options.engine}' (local or spark).")
    if options.engine == "spark":
        remote_engine(remote)  # before any work
    if options.source == "rasters":
        cells = _from_rasters(options, manifest, reporter, remote)
    else:
        if not options.chips_path:
            raise PovmapInputError(
                "CHIPS",
                "choose the grid's chip store (Sample image chips), or predict from the rasters "
                "(SOURCE=rasters with DAYTIME, NIGHTLIGHTS, ACCESSIBILITY or EXTRA).",
            )
        cells = _from_store(options, manifest, reporter, remote)
    checkpoint = cells.get("checkpoint")
    try:
        written = write_predictions(options, manifest, cells, reporter)
    except BaseException:
        if checkpoint is not None:
            checkpoint.close()  # its parts stay: running again resumes
        raise
    if checkpoint is not None:
        checkpoint.finish()
    seconds = time.monotonic() - started
    reporter.info(
        f"{written['poor']} of {written['cells']} cells predicted poor; "
        f"{written['cells'] / seconds:.0f} cells/s"
    )
    return {
        "output": options.output_path,
        "cells": written["cells"],
        "predicted_poor": written["poor"],
        "seconds": round(seconds, 2),
        "flagged": written["flagged"],
        "drift": written["drift"],
    }


def write_predictions(
    options: PredictOptions, manifest: dict[str, Any], cells: dict[str, Any], reporter: Reporter
) -> dict[str, Any]:
    """The grid with the prediction fields, written to ``options.output_path`` window by window.

    ``cells["window"](start, stop)``: (members' probabilities, baseline statistics or None,
    nodata fractions) of the grid's cells start..stop; the grid is read and the layer
    written ``vectors.WINDOW_CELLS`` cells at a time, so memory does not hold the country's
    polygons nor its fields at once. The drift check's bin counts are gathered over the
    windows first (its scores are layer metadata, written with the first window).
    Returns {"cells", "poor", "flagged", "drift"}.
    """
    import pyogrio

    layer = vectors.spatial_layer(options.grid_path, options.grid_layer, "GRID")
    cell_ids, window = cells["cell_ids"], cells["window"]
    if not len(cell_ids):
        raise PovmapInputError("GRID", "the grid has no cells to predict.")
    grid_info = pyogrio.read_info(options.grid_path, layer=layer)
    if grid_info["features"] != len(cell_ids):
        raise RuntimeError("the grid changed while predicting; run again")
    spans = [
        (start, min(start + vectors.WINDOW_CELLS, len(cell_ids)))
        for start in range(0, len(cell_ids), vectors.WINDOW_CELLS)
    ]
    prepared = TrustFields(manifest, reporter)
    has_features = prepared.simple is not None and cells["has_features"]
    drift_scores = _inputs_checked(prepared, spans, window, reporter) if has_features else {}
    decision_metadata = describe_decision(manifest, reporter)
    seen, seen_metadata = training_cell_flags(manifest, cells, reporter)
    totals = {"poor": 0, "flagged": 0}

    def with_fields(start: int, grid: pd.DataFrame) -> pd.DataFrame:
        stop = start + len(grid)
        ids = grid[cells["id_field"]].astype("int64").to_numpy()
        if not np.array_equal(ids, cell_ids[start:stop]):
            raise RuntimeError("the grid changed while predicting; run again")
        probabilities, features, nodata = window(start, stop)
        fields = prediction_fields(manifest, prepared, probabilities, features, nodata, cells)
        for field, values in fields.items():
            grid[field] = values
        if seen is not None:
            grid["training_cell"] = seen[start:stop]
        totals["poor"] += int(grid["pred"].sum())
        totals["flagged"] += int(grid["chip_flagged"].sum())
        reporter.progress(95 + 5 * stop / max(len(cell_ids), 1))
        return grid

    def frames() -> Iterator[pd.DataFrame]:
        for start, grid in vectors.read_windows(options.grid_path, layer, len(cell_ids)):
            reporter.check_canceled()
            yield with_fields(start, grid)
            del grid  # the writer has let this window go: memory holds one at a time

    chunks = frames()
    first = next(chunks)  # its columns choose the styles offered
    extra_styles = styles_with_their_fields(options.extra_styles, first.columns)
    in_order = _handed_over(first, chunks)
    del first  # memory holds one window at a time
    write_layer_chunks(
        in_order,
        options.output_path,
        options.style_qml_path,
        "povmap prediction (class)",
        metadata={
            "povmap_model": manifest["path"],
            "povmap_threshold": manifest["threshold"],
            "povmap_members": ",".join(m["name"] for m in manifest["members"]),
            "povmap_label": manifest["label"]["meaning"],
            ID_FIELD_METADATA: cells["id_field"],
            **_training_districts(manifest),
            **seen_metadata,
            **prepared.metadata(has_features, drift_scores),
            **decision_metadata,
        },
        extra_styles=extra_styles,
        geometry_type=grid_info.get("geometry_type"),
    )
    return {"cells": len(cell_ids), **totals, "drift": drift_scores}


def _handed_over(first: pd.DataFrame, rest: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """``first`` then ``rest``, keeping no chunk once the writer has moved on (itertools.chain
    would keep ``first`` in its arguments until the end: a window held all along)."""
    yield first
    del first
    yield from rest


def _inputs_checked(
    prepared: TrustFields,
    spans: Sequence[tuple[int, int]],
    window: Callable[[int, int], tuple[Any, ...]],
    reporter: Reporter,
) -> dict[str, float]:
    """{input: PSI} of the cells' baseline statistics, gathered window by window, and the log's
    lines on the cells' inputs (drift, cells outside the training range)."""
    counts: list[Any] = []
    outside = cells = 0
    for start, stop in spans:
        features = window(start, stop)[1]
        counts = drift.summed_counts(counts, drift.bin_counts(prepared.manifest, features))
        outside += int(baseline.out_of_range(prepared.simple, features).sum())  # type: ignore[arg-type]
        cells += stop - start
    scores = drift.scores_of_counts(prepared.manifest, counts)
    prepared.report_inputs(reporter, scores, outside, cells)
    return scores


def prediction_fields(
    manifest: dict[str, Any],
    prepared: TrustFields,
    probabilities: Sequence[np.ndarray],
    features: np.ndarray | None,
    nodata: np.ndarray,
    cells: Mapping[str, Any],
) -> dict[str, Any]:
    """{field: values} of the prediction fields of some cells, in the layer's order (quiet)."""
    ensemble = ensemble_outputs(probabilities, manifest["threshold"])
    fields: dict[str, Any] = {}
    for member, values in zip(manifest["members"], probabilities, strict=True):
        fields[f"prob_{member['name']}"] = np.round(values.astype("float64"), 5)
    fields["prob_mean"] = np.round(ensemble["prob_mean"].astype("float64"), 5)
    fields["votes"] = ensemble["votes"].astype("int32")
    fields["pred"] = ensemble["pred"].astype("int32")
    fields["disagreement"] = np.round(ensemble["disagreement"].astype("float64"), 5)
    fields.update(prepared.of(features, ensemble))
    fields["pred"] = decided_class(manifest, fields["prob_mean"], fields["pred"])
    fields["chip_flagged"] = (nodata > cells["max_nodata"]).any(axis=1).astype("int32")
    return fields


def _from_store(
    options: PredictOptions, manifest: dict[str, Any], reporter: Reporter, remote: Any
) -> dict[str, Any]:
    """Cell ids, members' probabilities, baseline features and nodata of the grid, from the store."""
    store = ChipStore(options.chips_path)  # type: ignore[arg-type]  # SOURCE=chips: given
    model_package.check_inputs_match(manifest, store.manifest)
    layer = vectors.spatial_layer(options.grid_path, options.grid_layer, "GRID")
    id_field = store.id_field(options.id_field)
    info = vectors.layer_info(options.grid_path, layer, "GRID")
    cell_ids = read_cell_ids(options.grid_path, layer, id_field, info)
    rows = learning_data.store_rows_for(store, cell_ids)
    reporter.info(members_summary(manifest["members"], len(rows)))
    if manifest.get("notice"):
        reporter.warning(manifest["notice"])
    probabilities = _member_probabilities(options, manifest, store, rows, reporter, remote)
    simple = manifest.get("baseline")
    return {
        "id_field": id_field,
        "crs": store.manifest["settings"].get("crs"),
        "cell_size": store.manifest["settings"].get("cell_size"),
        "cell_ids": cell_ids,
        "window": _in_memory_window(
            probabilities,
            chip_features.package_features(store, rows, manifest) if simple else None,
            np.asarray(store.nodata_fraction)[rows],
        ),
        "has_features": bool(simple),
        "max_nodata": store.max_nodata,
    }


def _in_memory_window(
    probabilities: Sequence[np.ndarray], features: np.ndarray | None, nodata: np.ndarray
) -> Callable[[int, int], tuple[list, np.ndarray | None, np.ndarray]]:
    """``cells["window"]`` of numbers held in memory (a chip store's cells)."""

    def window(start: int, stop: int) -> tuple[list, np.ndarray | None, np.ndarray]:
        return (
            [values[start:stop] for values in probabilities],
            None if features is None else features[start:stop],
            nodata[start:stop],
        )

    return window


def _from_rasters(
    options: PredictOptions, manifest: dict[str, Any], reporter: Reporter, remote: Any
) -> dict[str, Any]:
    """The same, sampled from the rasters cell block by cell block (no chips stored)."""
    from .raster_prediction import predict_from_rasters

    if options.chips_path:
        reporter.warning("SOURCE=rasters: the chip store (CHIPS) is not read.")
    if manifest.get("notice"):
        reporter.warning(manifest["notice"])
    predicted = predict_from_rasters(options, manifest, reporter, remote)
    reporter.info(members_summary(manifest["members"], len(predicted.cell_ids)))
    return {
        "id_field": options.id_field or CELL_ID,
        "crs": predicted.crs,
        "cell_size": None,  # an own grid's polygons, or povmap's: the ids say
        "cell_ids": predicted.cell_ids,
        "window": predicted.parts.window,
        "has_features": bool(manifest.get("baseline")),
        "max_nodata": float(options.max_nodata),
        "checkpoint": predicted.checkpoint,
    }


def trust_fields(
    manifest: dict[str, Any],
    features: np.ndarray | None,
    ensemble: dict[str, Any],
    reporter: Reporter,
) -> tuple[dict[str, Any], dict[str, str]]:
    """({field: values}, layer metadata) of the trust fields of all the cells at once.

    ``features``: the baseline's per-chip statistics of the cells (None for a
    package without a baseline). Predict computes the same window by window
    (``TrustFields``, the one home of these fields).
    """
    prepared = TrustFields(manifest, reporter)
    fields = prepared.of(features, ensemble)
    has_features = prepared.simple is not None and features is not None
    scores: dict[str, float] = {}
    if has_features:
        scores = drift.input_scores(manifest, features)
        prepared.report_inputs(reporter, scores, int(fields["out_of_range"].sum()), len(features))  # type: ignore[arg-type]
    return fields, prepared.metadata(has_features, scores)


class TrustFields:
    """The trust fields of a model package (see the module doc), for any window of cells.

    Made once per prediction: says in the log what the package does (its missing
    parts, stacking and interval rule); ``of`` then computes the fields quietly.
    """

    def __init__(self, manifest: dict[str, Any], reporter: Reporter) -> None:
        self.manifest = manifest
        self.simple = manifest.get("baseline")
        for sentence in model_package.missing_parts(manifest):
            reporter.warning(sentence)
        describe_combination(manifest, reporter)
        rule = manifest.get("interval")
        if not rule:
            reporter.info(
                "the model package has no interval rule (made before povmap-qgis 0.3.0): "
                f"{intervals.describe(rule)}; retrain it for intervals with their nominal coverage"
            )
        else:
            reporter.info(intervals.describe(rule))

    def of(self, features: np.ndarray | None, ensemble: dict[str, Any]) -> dict[str, Any]:
        """{field: values} of the cells of ``ensemble`` (``ensemble_outputs``' dict)."""
        manifest = self.manifest
        raw = ensemble_probability(manifest, ensemble, features)
        fitted = manifest.get("calibration")
        low, high = intervals.cell_interval(
            raw, fitted, manifest.get("interval"), ensemble["disagreement"]
        )
        fields = {
            "prob_raw": np.round(raw, 5),
            "prob_mean": np.round(calibration.calibrate(raw, fitted), 5),
            "prob_low": np.round(low, 5),
            "prob_high": np.round(high, 5),
        }
        if self.simple and features is not None:
            fields["prob_baseline"] = np.round(
                baseline.calibrated_probabilities(self.simple, features), 5
            )
            fields["out_of_range"] = baseline.out_of_range(self.simple, features)
        return fields

    def metadata(self, has_features: bool, drift_scores: Mapping[str, float]) -> dict[str, str]:
        """The layer metadata of the trust fields; ``drift_scores``: the cells' PSI per input."""
        manifest = self.manifest
        metadata = {
            "povmap_calibration": json.dumps(manifest.get("calibration") or {"method": "none"}),
            "povmap_interval": json.dumps(
                manifest.get("interval") or {"method": intervals.SPREAD_METHOD}
            ),
            "povmap_stacking": json.dumps(
                manifest.get("stacking") or {"method": "none", "note": "the members' mean"}
            ),
        }
        if self.simple and has_features:
            metadata["povmap_baseline_threshold"] = self.simple["threshold"]
            if drift_scores:
                metadata["povmap_drift"] = json.dumps(drift_scores)
        return metadata

    @staticmethod
    def report_inputs(
        reporter: Reporter, drift_scores: Mapping[str, float], outside: int, cells: int
    ) -> None:
        """The log's lines on how the cells' inputs compare with the training cells'."""
        reporter.info(f"drift: {drift.sentence(drift_scores)}")
        for warning in drift.warnings(drift_scores, cells):
            reporter.warning(warning)
        reporter.info(
            f"{outside} of {cells} cells lie outside the training range (a per-chip statistic "
            "beyond the training cells' 1st–99th percentiles)"
        )


def describe_combination(manifest: dict[str, Any], reporter: Reporter) -> None:
    """The log's line on how ``prob_raw`` is made (``ensemble_probability``)."""
    combiner = manifest.get("stacking")
    if combiner is None:
        reporter.info(
            f"the model package (format {manifest.get('format_version')}) has no stacking: "
            "prob_raw is the members' mean, as it was trained; retrain it to combine the "
            "members and the baseline by their out-of-fold evidence"
        )
    else:
        reporter.info(stacking.describe(combiner))


def ensemble_probability(
    manifest: dict[str, Any], ensemble: dict[str, Any], features: np.ndarray | None
) -> np.ndarray:
    """``prob_raw`` of the cells: the package's stacking of the members and the baseline
    (``stacking.combine``), or the members' mean (``ensemble_outputs``' ``prob_mean``) for a
    package without one. ``ensemble``: ``ensemble_judges.ensemble_outputs``' dict."""
    combiner = manifest.get("stacking")
    if not stacking.is_stacked(combiner):
        return np.asarray(ensemble["prob_mean"], dtype="float64")
    simple = manifest.get("baseline")
    baseline_raw = (
        baseline.probabilities(simple, features) if simple and features is not None else None
    )
    names = [member["name"] for member in manifest["members"]]
    return stacking.combine(
        combiner, stacking.candidates_of(names, ensemble["members"], baseline_raw)
    )


def describe_decision(manifest: dict[str, Any], reporter: Reporter) -> dict[str, Any]:
    """The log's line on how ``pred`` is decided (``decided_class``); its layer metadata."""
    threshold = manifest.get("decision_threshold")
    if threshold is None:
        reporter.info(
            f"the model package (format {manifest.get('format_version')}) has no decision "
            "threshold on the calibrated scale: pred is the members' majority vote at threshold "
            f"{manifest['threshold']:g}"
        )
        return {"povmap_decision": "majority vote of members"}
    rule = manifest.get("decision_rule") or f"calibrated prob_mean >= {threshold:g}"
    said = f"calibrated prob_mean >= {threshold:.4g}"
    reporter.info(
        f"pred = 1 (poor) where {said}"
        + (", the package's decision threshold" if rule.startswith(said) else f" ({rule})")
        + "; votes (members voting poor) are kept as information"
    )
    return {"povmap_decision_threshold": float(threshold), "povmap_decision": rule}


def decided_class(
    manifest: dict[str, Any], prob_mean: np.ndarray, majority: np.ndarray
) -> np.ndarray:
    """``pred``: calibrated ``prob_mean`` >= the package's decision threshold; a package
    without one (format 1.0, or 1.1 from before it) keeps the members' ``majority`` vote."""
    threshold = manifest.get("decision_threshold")
    if threshold is None:
        return np.asarray(majority).astype("int32")
    return (np.asarray(prob_mean, dtype="float64") >= float(threshold)).astype("int32")


def _member_probabilities(
    options: PredictOptions,
    manifest: dict[str, Any],
    store: ChipStore,
    rows: np.ndarray,
    reporter: Reporter,
    remote: Any,
) -> list[np.ndarray]:
    """Each member's probability per row: batches in this process, or Spark tasks (same code)."""
    if options.engine == "spark":
        return remote_engine(remote).predict_rows(
            options.model_path, options.chips_path, rows, options.batch_rows, reporter
        )
    models = model_package.load_members(manifest)
    reporter.progress(5)
    names = [spec["name"] for spec in manifest["inputs"]]

    def progress(done: int) -> None:
        reporter.check_canceled()
        reporter.progress(5 + 90 * done / len(rows))

    return learning_data.predict_rows(
        models, store, rows, manifest["normalisation"], names, options.batch_rows, progress
    )


def styles_with_their_fields(
    styles: Sequence[tuple[str, str]] | None, columns: Sequence[str]
) -> list[tuple[str, str]]:
    """The extra styles [(qml path, name)] whose renderer reads only fields of ``columns``.

    A 1.0 package writes no ``out_of_range``: its style would draw nothing, so it is left out.
    The renderer's attribute may be an expression (``"prob_high" - "prob_low"``).
    """
    import re

    kept = []
    for path, name in styles or []:
        with open(path, encoding="utf-8") as handle:
            found = re.search(r'<renderer-v2[^>]*\sattr="([^"]*)"', handle.read())
        attribute = html.unescape(found.group(1)) if found else ""
        fields = re.findall(r'"([^"]+)"', attribute) or ([attribute] if attribute else [])
        if all(field in columns for field in fields):
            kept.append((path, name))
    return kept


def training_cell_flags(
    manifest: dict[str, Any], cells: dict[str, Any], reporter: Reporter
) -> tuple[np.ndarray | None, dict[str, str]]:
    """(``training_cell`` per cell or None, layer metadata): 1 = the members learned this cell's
    label (a training or validation cell of the package), 0 = they did not. None (no field)
    when that cannot be known: a package that records no training cells, or cell ids of
    another id field or CRS than the training grid's (ids that would match by accident)."""
    known, why = model_package.read_training_cells(manifest)
    if known is not None:
        record = why
        if record.get("id_field") != cells["id_field"]:
            known, why = (
                None,
                (
                    f"the cells are identified by {cells['id_field']}, the training cells by "
                    f"{record.get('id_field')}"
                ),
            )
        elif not _same_crs(record.get("crs"), cells.get("crs")):
            known, why = None, "the grid's CRS is not the training grid's"
        elif cells.get("cell_size") not in (None, record.get("cell_size")):
            known, why = None, "the grid's cell size is not the training grid's"
    if known is None:
        reporter.info(f"Which cells the model was trained on cannot be known: {why}.")
        return None, {"povmap_training_cells": json.dumps({"known": False, "why": why})}
    flags = np.isin(np.asarray(cells["cell_ids"], dtype="int64"), known).astype("int32")
    if flags.any():
        reporter.info(
            f"{counted(int(flags.sum()), 'cell')} of the grid were training cells of the model "
            "(training_cell = 1): predictions there are not predictions for new cells."
        )
    return flags, {"povmap_training_cells": json.dumps({"known": True, "count": int(flags.sum())})}


def _same_crs(first: Any, second: Any) -> bool:
    if not first or not second:
        return first == second
    from pyproj import CRS

    return CRS.from_user_input(first) == CRS.from_user_input(second)


def _training_districts(manifest: dict[str, Any]) -> dict[str, str]:
    """Metadata item listing the districts the members learned from (for the evaluation's unsurveyed-district section)."""
    seen = manifest.get("training", {}).get("districts_seen")
    return {} if seen is None else {"povmap_training_districts": json.dumps(seen)}


def members_summary(members: Sequence[Mapping[str, Any]], n_cells: int) -> str:
    """'3 members (a, b, c) on 1,656 cells' — '1 member' for a single-member package."""
    names = ", ".join(member["name"] for member in members)
    return f"{counted(len(members), 'member')} ({names}) on {counted(n_cells, 'cell')}"
