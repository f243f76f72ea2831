"""Predictions against observed labels (pipeline step 6, runs in the worker).

Cells of a prediction layer (``povmap:predict``) are matched with the cells
of a labelled grid (held-out cells, or a new ground-truth survey gridded with
``povmap:buildtraininggrid``) by ``cell_id`` (an own grid's id: ``id_field``) —
never by location, so the two
layers may be stored in different CRSs. For every member (its probability at
the model's threshold), the ensemble (its ``pred`` majority vote; AUC from
``prob_mean``) and the paper's random baseline (median of RANDOM_DRAWS
coin-flip predictions) this writes recall, precision, accuracy and AUC, over
all matched cells and per district, as JSON and a tidy CSV; ROC curves and
confusion matrices as PNGs; and the hit/miss layer (prediction fields +
``label`` + ``outcome``), styled, with the count of each outcome in its legend.

Truth with one class only (e.g. every surveyed cell poor) is not an error:
recall, precision and accuracy are still reported where defined; AUC and ROC
curves are undefined, left empty (None) with a note and a warning.

numpy and pandas are imported inside the functions that need them. The
figures and the HTML report are built by ``evaluation_report.py`` (its
``report_document`` is also called inside QGIS).
"""

import dataclasses
import datetime
import json
import os
import time

from .. import labels
from ..atomic import check_output_path
from ..errors import PovmapInputError
from ..geopackage import povmap_layer_metadata
from ..grid.cells import crs_to_string
from ..grid.labelled_grid import check_cell_ids, layer_fields, read_labelled_grid
from ..names import BASELINE, CELL_ID, ENSEMBLE, ID_FIELD_RECORDED, RANDOM, RANDOM_DRAWS
from ..progress import Reporter
from ..wording import metric_text
from .evaluation_report import write_figures
from .interval_report import COVERAGE_COLUMNS, coverage_rows
from .validation_outputs import (
    OUTCOMES,
    hitmiss_style_with_counts,
    metrics_csv_path,
    metrics_files,
    model_names,
    outcomes,
)

METRICS_FORMAT = "povmap-evaluation"
METRICS_FORMAT_VERSION = "1.0"
ALL_SCOPE = "all"
IN_RANGE_SCOPE = "all (in range)"  # cells with out_of_range = 0, when the layer has the field
NEW_CELLS_SCOPE = "all (new cells)"  # cells with training_cell = 0, when some compared cells are 1
CSV_COLUMNS = (
    "scope",
    "model",
    "n",
    "recall",
    "precision",
    "accuracy",
    "auc",
) + COVERAGE_COLUMNS  # filled on the interval rows only
DEFAULT_THRESHOLD = 0.5
# prob_ fields of the prediction layer that are not members
NOT_MEMBER_FIELDS = ("prob_mean", "prob_raw", "prob_low", "prob_high", "prob_baseline")


@dataclasses.dataclass
class EvaluateOptions:
    predictions_path: str
    truth_path: str
    hitmiss_path: str
    metrics_path: str
    figures_folder: str | None = None  # PNGs (ROC curves, confusion matrices); None: no figures
    predictions_layer: str | None = None
    truth_layer: str | None = None
    random_draws: int = RANDOM_DRAWS
    seed: int = 0
    style_qml_path: str | None = None  # resources/styles/hitmiss.qml; legend labels get the counts
    # The cell id both layers share (an own grid's ID_FIELD); None: the id Predict poverty
    # recorded in the prediction layer, else cell_id.
    id_field: str | None = None
    # the layers' names in the user's project (e.g. "Predictions — Kotlani (demo_compact)");
    # None: the layer's name in its file
    predictions_name: str | None = None
    truth_name: str | None = None


def evaluate(options, reporter=None):
    """Compare predictions with observed labels; write the outputs; return a summary (see module doc)."""
    reporter = reporter or Reporter()
    started = time.monotonic()
    _check_options(options)
    predictions = _read_predictions(options)
    options = dataclasses.replace(options, id_field=predictions["id_field"])
    reporter.progress(10)
    reporter.check_canceled()
    truth = read_labelled_grid(options.truth_path, options.truth_layer, options.id_field, reporter)
    reporter.progress(20)
    cells, data = _join(predictions, truth, options, reporter)
    _report_matched(cells, data, options, reporter)
    _check_votes(cells, predictions, reporter)
    reporter.check_canceled()

    districts = _district_groups(cells)
    overall = _scope_metrics(cells, predictions, options)
    in_range = _in_range_metrics(cells, predictions, options, reporter)
    trained_on = _training_cells(cells, predictions["metadata"], reporter)
    new_cells = _new_cell_metrics(cells, trained_on, districts, predictions, options)
    by_district = {}
    for index, (district, group) in enumerate(districts):
        reporter.progress(20 + 45 * (index + 1) / (len(districts) + 1))
        reporter.check_canceled()
        by_district[district] = _scope_metrics(group, predictions, options)
    document = {
        "format": METRICS_FORMAT,
        "format_version": METRICS_FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "settings": _settings(options, predictions),
        "data": data,
        "members": predictions["members"],
        "threshold": predictions["threshold"],
        "metrics": {"all": overall, "districts": by_district}
        | ({"in_range": in_range} if in_range is not None else {})
        | new_cells,
        "training_districts": _training_districts(predictions["metadata"]),
        "training_cells": trained_on,
        "roc": _roc_curves(cells, predictions["members"]),
        "verdict": _verdict(cells, overall, options),
        "calibrated": "prob_raw" in cells,
        "outcomes": {
            "all": _outcome_counts(cells),
            "districts": {district: _outcome_counts(group) for district, group in districts},
        },
        "notes": _notes(overall, by_district, data, in_range),
    }
    coverage = _interval_coverage(cells, predictions, reporter)
    if coverage is not None:
        document["interval_coverage"] = coverage
    reporter.progress(70)
    reporter.check_canceled()
    figures = (
        write_figures(options.figures_folder, document, predictions["members"])
        if options.figures_folder
        else {}
    )
    reporter.progress(85)
    reporter.check_canceled()
    _write_outputs(options, document, cells, predictions)
    reporter.progress(100)
    ensemble = overall[ENSEMBLE]
    reporter.info(
        "ensemble "
        + "  ".join(
            f"{key} {metric_text(ensemble[key])}"
            for key in ("recall", "precision", "accuracy", "auc")
        )
        + f"; random baseline (median of {options.random_draws}) "
        + "  ".join(
            f"{key} {metric_text(overall[RANDOM][key])}"
            for key in ("recall", "precision", "accuracy")
        )
    )
    if BASELINE in overall:
        reporter.info(
            "transparent baseline (prob_baseline) "
            + "  ".join(
                f"{key} {metric_text(overall[BASELINE][key])}"
                for key in ("recall", "precision", "accuracy", "auc")
            )
        )
    verdict = document.get("verdict") or {}
    if verdict.get("headline"):
        reporter.info(f"Verdict: {verdict['headline']} {verdict.get('sentence', '')}".strip())
    return dict(
        document,
        hitmiss=os.path.abspath(options.hitmiss_path),
        metrics_json=os.path.abspath(options.metrics_path),
        metrics_csv=os.path.abspath(metrics_csv_path(options.metrics_path)),
        figures=figures,
        seconds=round(time.monotonic() - started, 2),
    )


def _report_matched(cells, data, options, reporter):
    """How many cells were matched and left out; a warning when they hold one class only."""
    labels = cells["label"].to_numpy()
    reporter.info(
        f"{data['common_cells']} cells matched by {options.id_field} ({data['poor_cells']} poor); "
        f"{data['truth_without_prediction']} TRUTH cells without a prediction, "
        f"{data['predictions_without_truth']} predicted cells without a label."
    )
    if data["poor_cells"] in (0, len(labels)):
        reporter.warning(
            f"TRUTH: all {len(labels)} matched cells are {'poor' if data['poor_cells'] else 'not poor'} (one class): "
            "AUC and ROC curves are undefined and left empty; recall, precision and accuracy are reported where defined."
        )


# --- inputs -------------------------------------------------------------------------------------------


def _check_options(options):
    check_output_path(options.hitmiss_path, "HITMISS", (".gpkg",))
    check_output_path(options.metrics_path, "METRICS", (".json",))
    for path, parameter in (
        (options.predictions_path, "PREDICTIONS"),
        (options.truth_path, "TRUTH"),
    ):
        if not path or not os.path.exists(path):
            raise PovmapInputError(parameter, f"the file '{path}' does not exist.")
        if os.path.abspath(path) in (
            os.path.abspath(options.hitmiss_path),
            os.path.abspath(options.metrics_path),
        ):
            raise PovmapInputError(
                "HITMISS", f"'{path}' is the {parameter} input; choose another output name."
            )
    if int(options.random_draws) < 1:
        raise PovmapInputError(
            "RANDOM_DRAWS", f"{options.random_draws} draws: give at least 1 (the paper: 1000)."
        )


def _read_predictions(options):
    """The prediction layer (GeoDataFrame), its members, threshold and metadata."""
    import geopandas

    path = options.predictions_path
    layer, fields, info = layer_fields(path, options.predictions_layer, "PREDICTIONS")
    name = layer or os.path.basename(path)
    if not info.get("geometry_type"):
        raise PovmapInputError(
            "PREDICTIONS",
            f"the layer '{name}' has no geometries; use the prediction layer written by Predict poverty.",
        )
    metadata = povmap_layer_metadata(path, layer)
    key = options.id_field or metadata.get(ID_FIELD_RECORDED) or CELL_ID
    missing = [field for field in (key, "pred", "prob_mean") if field not in fields]
    listed = [member for member in str(metadata.get("povmap:members", "")).split(",") if member]
    members = listed or [
        field[len("prob_") :]
        for field in fields
        if field.startswith("prob_") and field not in NOT_MEMBER_FIELDS
    ]
    missing += [f"prob_{member}" for member in members if f"prob_{member}" not in fields]
    if missing or not members:
        wanted = (
            f"no {', '.join(missing)} field"
            if missing
            else "no member probabilities (a prob_ field per member, e.g. prob_compact_cnn)"
        )
        raise PovmapInputError(
            "PREDICTIONS",
            f"the layer '{name}' has {wanted}; use the prediction layer written by Predict poverty "
            f"({key}, one prob_ field per member, prob_mean, votes, pred)"
            + ("" if key == CELL_ID else f" of the grid whose cell id is {key} (ID_FIELD)")
            + f". Its fields: {', '.join(fields) or 'none'}.",
        )
    threshold, threshold_note = DEFAULT_THRESHOLD, None
    if "povmap:threshold" in metadata:
        try:
            threshold = float(metadata["povmap:threshold"])
        except ValueError:
            threshold_note = f"the layer metadata povmap:threshold '{metadata['povmap:threshold']}' is not a number; members are cut at {DEFAULT_THRESHOLD}"
    else:
        threshold_note = f"no povmap:threshold in the layer metadata (e.g. the layer was copied); members are cut at {DEFAULT_THRESHOLD}"
    frame = geopandas.read_file(path, layer=layer, engine="pyogrio")
    if frame.empty:
        raise PovmapInputError("PREDICTIONS", f"the layer '{name}' has no features.")
    check_cell_ids(frame, "PREDICTIONS", name, key)
    trust = [field for field in ("prob_raw", "prob_baseline") if field in frame]
    for field in ["pred", "prob_mean"] + [f"prob_{member}" for member in members] + trust:
        values = frame[field]
        if values.isna().any():
            raise PovmapInputError(
                "PREDICTIONS",
                f"the field {field} of '{name}' is empty in {int(values.isna().sum())} cells; predict them again.",
            )
        valid = values.isin([0, 1]).all() if field == "pred" else values.between(0, 1).all()
        if not valid:
            expected = "0 or 1" if field == "pred" else "probabilities between 0 and 1"
            raise PovmapInputError(
                "PREDICTIONS", f"the field {field} of '{name}' must hold {expected}."
            )
    return {
        "frame": frame,
        "members": members,
        "threshold": threshold,
        "baseline_threshold": _number_or(
            metadata.get("povmap:baseline_threshold"), DEFAULT_THRESHOLD
        ),
        "threshold_note": threshold_note,
        "decision_threshold": _number_or(metadata.get("povmap:decision_threshold"), None),
        "metadata": metadata,
        "layer": name,
        "crs": crs_to_string(frame.crs),
        "id_field": key,
    }


def _number_or(value, default):
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _join(predictions, truth, options, reporter):
    """Matched cells (prediction fields + label, district filled from TRUTH) and the data summary."""
    import pandas

    frame, observed = predictions["frame"], truth["frame"]
    key = options.id_field
    matched = frame[key].isin(observed[key])
    if not matched.any():
        raise PovmapInputError("TRUTH", _no_common_cells_message(predictions, truth, key))
    by_cell = observed.set_index(key)
    cells = frame.loc[matched].copy()
    truth_labels = by_cell.loc[cells[key], "label"].to_numpy()
    if (
        "label" in cells
        and not (
            pandas.to_numeric(cells["label"], errors="coerce").to_numpy() == truth_labels
        ).all()
    ):
        reporter.info("PREDICTIONS has its own label field: the labels of TRUTH are used.")
    cells = cells.drop(columns=[column for column in ("label", "outcome") if column in cells])
    if "district" in by_cell:
        truth_districts = by_cell.loc[cells[key], "district"].to_numpy()
        if "district" in cells:
            cells["district"] = cells["district"].where(
                cells["district"].notna(), pandas.Series(truth_districts, index=cells.index)
            )
        else:
            cells["district"] = truth_districts
    cells["label"] = truth_labels.astype("int32")
    cells["outcome"] = outcomes(cells["label"].to_numpy(), cells["pred"].to_numpy())
    if predictions["crs"] and truth["crs"] and predictions["crs"] != truth["crs"]:
        reporter.info(
            f"PREDICTIONS is in {predictions['crs']} and TRUTH in {truth['crs']}: cells are matched by {key}; "
            "the hit/miss layer keeps the geometry of PREDICTIONS."
        )
    if predictions["threshold_note"]:
        reporter.warning(f"PREDICTIONS: {predictions['threshold_note']}.")
    districts = (
        sorted({str(value) for value in cells["district"].dropna()}) if "district" in cells else []
    )
    data = {
        "id_field": key,
        "predictions_layer": predictions["layer"],
        "truth_layer": truth["layer"],
        # the layers' names as the user knows them (the Layers panel's), for the report
        "predictions_name": options.predictions_name or predictions["layer"],
        "truth_name": options.truth_name or truth["layer"],
        "predictions_crs": predictions["crs"],
        "truth_crs": truth["crs"],
        "prediction_cells": int(len(frame)),
        "truth_cells": int(len(observed)),
        "common_cells": int(len(cells)),
        "truth_without_prediction": int((~observed[key].isin(frame[key])).sum()),
        "predictions_without_truth": int((~matched).sum()),
        "poor_cells": int(cells["label"].sum()),
        "predicted_poor_cells": int(cells["pred"].sum()),
        "flagged_cells": int(cells["chip_flagged"].sum()) if "chip_flagged" in cells else None,
        "out_of_range_cells": _out_of_range_counts(cells, districts),
        "districts": districts,
        "cells_without_district": int(cells["district"].isna().sum())
        if "district" in cells
        else int(len(cells)),
        "label_meaning": _label_meaning(truth["metadata"], predictions["metadata"]),
    }
    return cells, data


def _out_of_range_counts(cells, districts):
    """{"all": n, "districts": {name: n}} of cells outside the training range; None without the field."""
    if "out_of_range" not in cells:
        return None
    flags = cells["out_of_range"].fillna(0).astype(int)
    named = cells["district"].astype(str) if "district" in cells else None
    return {
        "all": int(flags.sum()),
        "districts": {
            name: int(flags[named == name].sum()) for name in districts if named is not None
        },
    }


def _no_common_cells_message(predictions, truth, key=CELL_ID):
    frame, observed = predictions["frame"], truth["frame"]
    cell_size = truth["metadata"].get("cell_size")
    described = (
        f"PREDICTIONS: {len(frame)} cells in {predictions['crs'] or 'an unknown CRS'}, e.g. {key} {int(frame[key].iloc[0])}; "
        f"TRUTH: {len(observed)} cells in {truth['crs'] or 'an unknown CRS'}"
        + (f", cell size {cell_size}" if cell_size else "")
        + f", e.g. {key} {int(observed[key].iloc[0])}"
    )
    return (
        f"no {key} of the TRUTH layer is in PREDICTIONS, so nothing can be compared. Cell ids depend on the grid's CRS and cell "
        "size: grid the ground truth with Build training grid in the same CRS and CELL_SIZE as the grid that was predicted, "
        f"and check that both cover the same area ({described})."
    )


def _label_meaning(truth_metadata, prediction_metadata):
    if truth_metadata.get("cutoff") not in (None, ""):
        below = labels.poor_below_from_metadata(truth_metadata.get("poor_below"))
        return labels.label_sentence(truth_metadata["cutoff"], below)
    return str(prediction_metadata.get("povmap:label") or "1 = poor")


def _check_votes(cells, predictions, reporter):
    """Warn when ``pred`` does not follow its rule (a lost or wrong threshold).

    The rule: calibrated ``prob_mean`` >= the layer's ``povmap_decision_threshold``;
    the members' majority at the threshold for a layer without one (an older package).
    """
    decision = predictions.get("decision_threshold")
    if decision is not None:
        decided = (cells["prob_mean"].to_numpy(dtype="float64") >= decision).astype(int)
        differing = int((decided != cells["pred"].to_numpy()).sum())
        if differing:
            reporter.warning(
                f"PREDICTIONS: in {differing} of {len(cells)} cells pred is not prob_mean >= "
                f"{decision:g} (the layer's decision threshold): the ensemble uses pred as written."
            )
        return
    members = predictions["members"]
    votes = sum(
        (cells[f"prob_{member}"].to_numpy() >= predictions["threshold"]).astype(int)
        for member in members
    )
    differing = int(((votes * 2 > len(members)).astype(int) != cells["pred"].to_numpy()).sum())
    if differing:
        reporter.warning(
            f"PREDICTIONS: in {differing} of {len(cells)} cells pred is not the majority of members at threshold "
            f"{predictions['threshold']:g}: member metrics use that threshold, the ensemble uses pred as written."
        )


# --- metrics ------------------------------------------------------------------------------------------


def _district_groups(cells):
    if "district" not in cells:
        return []
    named = cells[cells["district"].notna()]
    return sorted(
        ((str(name), group) for name, group in named.groupby(named["district"].astype(str))),
        key=lambda item: item[0],
    )


def _scope_metrics(cells, predictions, options):
    """Members, ensemble, baseline (when the layer has prob_baseline) and random on some cells.

    The ensemble and the baseline also get the Brier score, the expected
    calibration error and the reliability bins (``core.model.calibration``) of
    ``prob_mean`` and ``prob_baseline``; ``brier_raw`` / ``ece_raw`` of
    ``prob_raw`` where the layer has it (before calibration).
    """
    from ..model import calibration
    from . import metrics

    labels = cells["label"].to_numpy()
    threshold = predictions["threshold"]
    result = {}
    for member in predictions["members"]:
        probabilities = cells[f"prob_{member}"].to_numpy(dtype="float64")
        result[member] = metrics.binary_metrics(labels, probabilities >= threshold, probabilities)
    mean = cells["prob_mean"].to_numpy(dtype="float64")
    result[ENSEMBLE] = metrics.binary_metrics(labels, cells["pred"].to_numpy(), mean)
    result[ENSEMBLE].update(calibration.scores(labels, mean))
    if "prob_raw" in cells:
        raw = calibration.scores(labels, cells["prob_raw"].to_numpy(dtype="float64"))
        result[ENSEMBLE].update({f"{key}_raw": value for key, value in raw.items()})
    if "prob_baseline" in cells:
        simple = cells["prob_baseline"].to_numpy(dtype="float64")
        result[BASELINE] = metrics.binary_metrics(
            labels, simple >= predictions["baseline_threshold"], simple
        )
        result[BASELINE].update(calibration.scores(labels, simple))
    result[RANDOM] = metrics.random_baseline(labels, int(options.random_draws), int(options.seed))
    return result


def _interval_coverage(cells, predictions, reporter):
    """Both coverage checks of prob_low–prob_high against the labels (``intervals.coverage``), with
    the members'-spread interval beside them where the layer allows; None without the fields."""
    import numpy as np

    from ..model import calibration, intervals

    if "prob_low" not in cells or "prob_high" not in cells:
        return None
    rule = _json_metadata(predictions["metadata"].get("povmap:interval"))
    nominal = float(rule.get("nominal", calibration.NOMINAL_LEVEL))
    mean = cells["prob_mean"].to_numpy(dtype="float64")
    low, high = (cells[field].to_numpy(dtype="float64") for field in ("prob_low", "prob_high"))
    usable = np.isfinite(low) & np.isfinite(high)
    new_only = "training_cell" in cells
    if new_only:  # the cells the model learned from would flatter the intervals
        usable &= cells["training_cell"].fillna(0).astype(int).to_numpy() == 0
        if not usable.any():
            return None
    spread = None
    fitted = _json_metadata(predictions["metadata"].get("povmap:calibration"))
    if rule.get("method") == intervals.METHOD and {"prob_raw", "disagreement"} <= set(cells):
        spread = calibration.interval(
            cells["prob_raw"].to_numpy(dtype="float64")[usable],
            cells["disagreement"].to_numpy(dtype="float64")[usable],
            fitted,
        )
    districts = (
        cells["district"].where(cells["district"].notna(), "(no district)").astype(str).to_numpy()
        if "district" in cells
        else None
    )
    found = intervals.coverage(
        cells["label"].to_numpy()[usable],
        mean[usable],
        low[usable],
        high[usable],
        None if districts is None else districts[usable],
        nominal,
        spread=spread,
    )
    found["rule"] = intervals.describe(rule)
    found["judged_on"] = "cells the model did not train on" if new_only else "all compared cells"
    reporter.info(
        f"prob_low–prob_high hold their reliability bin's observed share poor for "
        f"{metric_text(found['coverage'])} of the cells"
        + (
            f" and their district's for {metric_text(found['districts']['coverage'])} of the districts"
            if found["districts"]
            else ""
        )
        + f" (nominal {nominal:g}; mean width {metric_text(found['mean_width'])})"
    )
    for warning in found["warnings"]:
        reporter.warning(warning)
    return found


def _json_metadata(value):
    """A JSON object stored in the layer metadata; {} when absent or unreadable."""
    try:
        found = json.loads(value) if value else {}
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _in_range_metrics(cells, predictions, options, reporter):
    """Metrics of the cells inside the training range (``out_of_range`` = 0); None without the field.

    Cells the model was trained on statistics like: the numbers a user may
    trust more than those of all cells. None too when no compared cell is inside.
    """
    if "out_of_range" not in cells:
        return None
    inside = cells[cells["out_of_range"].fillna(0).astype(int) == 0]
    if inside.empty:
        reporter.warning(
            "every compared cell lies outside the training range (out_of_range = 1): "
            "no metrics for cells inside it."
        )
        return None
    return _scope_metrics(inside, predictions, options)


def _training_cells(cells, metadata, reporter):
    """How many compared cells the model learned the label of (``training_cell`` = 1, written
    by Predict poverty from the package's list): {"known", "compared", "districts", "why"}.

    A cell the model was trained on is never "new to the model", whatever its district says
    (a prediction grid's border cells can be training cells of a neighbouring district)."""
    if "training_cell" not in cells:
        try:
            recorded = json.loads(metadata.get("povmap:training_cells", "null")) or {}
        except ValueError:
            recorded = {}
        why = recorded.get("why") if isinstance(recorded, dict) else None
        return {
            "known": False,
            "compared": None,
            "districts": {},
            "why": why
            or "the prediction layer does not record which cells were training cells (a model "
            "package made before povmap-qgis 0.3, or a layer without the training_cell field)",
        }
    seen = cells["training_cell"].fillna(0).astype(int) == 1
    districts = {}
    if "district" in cells:
        names = cells.loc[seen, "district"].dropna().astype(str)
        districts = {str(name): int(count) for name, count in names.value_counts().items()}
    compared = int(seen.sum())
    if compared:
        reporter.warning(
            f"{compared} of the {len(cells)} compared cells were training cells of the model "
            "(training_cell = 1): the numbers over all cells include them and flatter the model; "
            "the report shows the numbers of the other cells apart."
        )
    return {
        "known": True,
        "compared": compared,
        "districts": dict(sorted(districts.items())),
        "why": None,
    }


def _new_cell_metrics(cells, trained_on, districts, predictions, options):
    """{"new_cells": metrics of the compared cells the model was not trained on,
    "districts_new_cells": the same per district holding both kinds}; {} when every compared
    cell is new, none is, or which ones cannot be known."""
    if not trained_on["known"] or trained_on["compared"] in (0, len(cells)):
        return {}
    new = cells["training_cell"].fillna(0).astype(int) == 0
    by_district = {}
    for district, group in districts:
        fresh = group[new.loc[group.index]]
        if 0 < len(fresh) < len(group):
            by_district[district] = _scope_metrics(fresh, predictions, options)
    return {
        "new_cells": _scope_metrics(cells[new], predictions, options),
        "districts_new_cells": by_district,
    }


def _roc_curves(cells, members):
    from . import metrics

    labels = cells["label"].to_numpy()
    columns = [(member, f"prob_{member}") for member in members] + [(ENSEMBLE, "prob_mean")]
    if "prob_baseline" in cells:
        columns.append((BASELINE, "prob_baseline"))
    return {
        name: metrics.roc_points(labels, cells[column].to_numpy(dtype="float64"))
        for name, column in columns
    }


def _verdict(cells, overall, options):
    """The report's verdict (``core.decision.verdict``) on all compared cells, cells resampled."""
    from ..decision.verdict import bootstrap_auc, verdict

    simple = cells["prob_baseline"].to_numpy(dtype="float64") if "prob_baseline" in cells else None
    interval = bootstrap_auc(
        cells["label"].to_numpy(),
        cells["prob_mean"].to_numpy(dtype="float64"),
        simple,
        seed=int(options.seed),
    )
    return dict(
        verdict(
            overall[ENSEMBLE]["recall"],
            overall[ENSEMBLE]["precision"],
            overall[ENSEMBLE]["auc"],
            interval["auc"],
            overall[RANDOM]["recall"],
            overall[BASELINE]["recall"] if BASELINE in overall else None,
            overall[BASELINE]["auc"] if BASELINE in overall else None,
            interval["difference"],
            prevalence=float(cells["label"].mean()),
        ),
        auc_interval=interval["auc"],
        difference_interval=interval["difference"],
        bootstrap_draws=interval["draws"],
        resampled="cells",
    )


def _outcome_counts(cells):
    counts = cells["outcome"].value_counts()
    return {outcome: int(counts.get(outcome, 0)) for outcome in OUTCOMES}


def _notes(overall, by_district, data, in_range=None):
    notes = []
    scopes = [(ALL_SCOPE, overall)] + ([(IN_RANGE_SCOPE, in_range)] if in_range else [])
    for scope, models in scopes + list(by_district.items()):
        for model, values in models.items():
            notes += [f"{scope} · {model}: {note}" for note in values.get("notes", [])]
    if data["cells_without_district"] and data["districts"]:
        notes.append(
            f"{data['cells_without_district']} matched cells have no district: they count in 'all' only"
        )
    if ALL_SCOPE in data["districts"]:
        notes.append(
            "a district is named 'all': in the CSV the overall rows come first, that district's rows in alphabetical order"
        )
    return notes


def _settings(options, predictions):
    from ..version import plugin_version

    metadata = predictions["metadata"]
    return {
        "predictions": os.path.abspath(options.predictions_path),
        "predictions_layer": options.predictions_layer,
        "truth": os.path.abspath(options.truth_path),
        "truth_layer": options.truth_layer,
        "random_draws": int(options.random_draws),
        "seed": int(options.seed),
        "threshold": predictions["threshold"],
        "threshold_source": "layer metadata povmap:threshold"
        if not predictions["threshold_note"]
        else f"default ({predictions['threshold_note']})",
        "decision_threshold": predictions.get("decision_threshold"),
        "model": metadata.get("povmap:model"),
        "model_notice": _model_notice(metadata.get("povmap:model")),
        "povmap_qgis": plugin_version(),
    }


def _training_districts(metadata):
    """{district: labelled cells the model learned from}, from the prediction layer's metadata; None when not recorded."""
    try:
        seen = json.loads(metadata.get("povmap:training_districts", "null"))
    except ValueError:
        return None
    return seen if isinstance(seen, dict) else None


def _model_notice(model_path):
    """The model package's notice (demonstration models say they are not for policy use)."""
    if not model_path:
        return None
    try:
        with open(os.path.join(model_path, "manifest.json"), encoding="utf-8") as handle:
            return json.load(handle).get("notice")
    except (OSError, ValueError):
        return None


# --- outputs ------------------------------------------------------------------------------------------


def _write_outputs(options, document, cells, predictions):
    """Metrics JSON and CSV, then the hit/miss layer; all three appear only when all three are written."""
    from ..geopackage import write_layer

    with (
        metrics_files(options.metrics_path, document, CSV_COLUMNS, tidy_rows(document)),
        hitmiss_style_with_counts(options.style_qml_path, document["outcomes"]["all"]) as style,
    ):
        # underscore keys: GDAL would cut "povmap:threshold" at the colon (see _metadata)
        metadata = {
            "povmap_threshold": predictions["threshold"],
            "povmap_members": ",".join(predictions["members"]),
            "povmap_predictions": os.path.abspath(options.predictions_path),
            "povmap_truth": os.path.abspath(options.truth_path),
            "povmap_model": predictions["metadata"].get("povmap:model", ""),
            "povmap_outcomes": json.dumps(document["outcomes"]["all"]),
        }
        write_layer(cells, options.hitmiss_path, style, "povmap hit/miss", metadata=metadata)


def tidy_rows(document):
    """CSV rows: scope (all, all (in range) and all (new cells) when judged, then districts), model, n, recall, precision, accuracy, auc."""
    in_range = document["metrics"].get("in_range")
    new_cells = document["metrics"].get("new_cells")
    scopes = (
        [(ALL_SCOPE, document["metrics"]["all"])]
        + ([(IN_RANGE_SCOPE, in_range)] if in_range else [])
        + ([(NEW_CELLS_SCOPE, new_cells)] if new_cells else [])
        + sorted(document["metrics"]["districts"].items())
    )
    rows = []
    blank = [""] * len(COVERAGE_COLUMNS)
    for scope, models in scopes:
        for model in model_names(document["members"], models):
            values = models[model]
            rows.append(
                [scope, model, values["n"]]
                + [
                    "" if values[key] is None else repr(float(values[key]))
                    for key in ("recall", "precision", "accuracy", "auc")
                ]
                + blank
            )
    for name, n, *values in coverage_rows(document.get("interval_coverage")):
        rows.append([ALL_SCOPE, name, n, "", "", "", ""] + values)
    return rows
