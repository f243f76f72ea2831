"""The inputs of ``evaluate``: the prediction layer, and its cells matched with the labels.

The prediction layer written by Predict poverty (read by ``decision.prediction_layer`` as
every step reads it; its members, thresholds and metadata checked here) and the labelled grid (TRUTH, read by ``grid.labelled_grid``) are
matched by cell id, never by location; the labels and districts come from TRUTH. A
``pred`` that does not follow its rule is a warning.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .. import labels
from ..errors import PovmapInputError
from ..grid.cells import crs_to_string
from ..names import CELL_ID
from .validation_outputs import outcomes

if TYPE_CHECKING:
    import pandas as pd

    from ..progress import Reporter
    from .evaluation import EvaluateOptions


DEFAULT_THRESHOLD = 0.5
# prob_ fields of the prediction layer that are not members
NOT_MEMBER_FIELDS = ("prob_mean", "prob_raw", "prob_low", "prob_high", "prob_baseline")


def read_predictions(options: EvaluateOptions) -> dict[str, Any]:
    """The prediction layer (GeoDataFrame), its members, threshold and metadata.

    The layer is read and checked by the one reader of the contract
    (``decision.prediction_layer.read_predictions``: polygons, prob_mean, the cell ids, as in
    every step); evaluate adds what it compares: ``pred`` and each member's ``prob_`` field,
    filled and valid in every predicted cell. Cells without a prediction (empty prob_mean)
    are left out, with a warning (``unpredicted_note``)."""
    from ..decision.prediction_layer import read_predictions as read_prediction_layer

    frame, name, metadata, key = read_prediction_layer(options, keep_targeting_fields=True)
    fields = [str(column) for column in frame.columns if column != frame.geometry.name]
    listed = [member for member in str(metadata.get("povmap:members", "")).split(",") if member]
    members = listed or [
        field[len("prob_") :]
        for field in fields
        if field.startswith("prob_") and field not in NOT_MEMBER_FIELDS
    ]
    missing = [field for field in ("pred",) if field not in fields]
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
    predicted = frame["prob_mean"].notna()
    unpredicted = int((~predicted).sum())
    unpredicted_note = (
        f"{unpredicted} cells without a prediction (empty prob_mean) are left out"
        if unpredicted
        else None
    )
    frame = frame.loc[predicted].reset_index(drop=True)
    trust = [field for field in ("prob_raw", "prob_baseline") if field in frame]
    for field in ["pred"] + [f"prob_{member}" for member in members] + trust:
        values = frame[field]
        if values.isna().any():
            raise PovmapInputError(
                "PREDICTIONS",
                f"the field {field} of '{name}' is empty in {int(values.isna().sum())} cells "
                "that have a prob_mean; predict them again.",
            )
        if not str(values.dtype).startswith(("int", "uint", "float", "bool")):
            valid = False
        else:
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
        "unpredicted_note": unpredicted_note,
        "decision_threshold": _number_or(metadata.get("povmap:decision_threshold"), None),
        "metadata": metadata,
        "layer": name,
        "crs": crs_to_string(frame.crs),
        "id_field": key,
    }


def _number_or(value: Any, default: float | None) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def match_cells(
    predictions: dict[str, Any], truth: dict[str, Any], options: EvaluateOptions, reporter: Reporter
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Matched cells (prediction fields + label, district filled from TRUTH) and the data summary."""
    import pandas

    frame, observed = predictions["frame"], truth["frame"]
    key = options.id_field
    matched = frame[key].isin(observed[key])
    if not matched.any():
        raise PovmapInputError(
            "TRUTH",
            _no_common_cells_message(predictions, truth, key),  # type: ignore[arg-type]  # set by evaluate
        )
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
    if predictions.get("unpredicted_note"):
        reporter.warning(f"PREDICTIONS: {predictions['unpredicted_note']}.")
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


def _out_of_range_counts(cells: pd.DataFrame, districts: Iterable[str]) -> dict[str, Any] | None:
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


def _no_common_cells_message(
    predictions: dict[str, Any], truth: dict[str, Any], key: str = CELL_ID
) -> str:
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


def _label_meaning(truth_metadata: dict[str, Any], prediction_metadata: dict[str, Any]) -> str:
    if truth_metadata.get("cutoff") not in (None, ""):
        below = labels.poor_below_from_metadata(truth_metadata.get("poor_below"))
        return labels.label_sentence(truth_metadata["cutoff"], below)
    return str(prediction_metadata.get("povmap:label") or "1 = poor")


def check_votes(cells: pd.DataFrame, predictions: dict[str, Any], reporter: Reporter) -> None:
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
