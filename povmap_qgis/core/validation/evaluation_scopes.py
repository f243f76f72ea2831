"""The numbers of ``evaluate`` for each scope of cells.

Scopes: all matched cells, those inside the training range, those the model was not trained
on, and each district. For each: the members, the ensemble, the baseline and the random
baseline (recall, precision, accuracy, AUC; Brier score, ECE and reliability bins of the
ensemble and the baseline). Also the ROC curves, the verdict, the outcome counts, the
intervals' coverage and the notes on undefined numbers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..names import BASELINE, ENSEMBLE, RANDOM
from ..wording import metric_text
from .validation_outputs import OUTCOMES

if TYPE_CHECKING:
    import pandas as pd

    from ..progress import Reporter
    from .evaluation import EvaluateOptions


ALL_SCOPE = "all"
IN_RANGE_SCOPE = "all (in range)"  # cells with out_of_range = 0, when the layer has the field
NEW_CELLS_SCOPE = "all (new cells)"  # cells with training_cell = 0, when some compared cells are 1


def district_groups(cells: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    if "district" not in cells:
        return []
    named = cells[cells["district"].notna()]
    return sorted(
        ((str(name), group) for name, group in named.groupby(named["district"].astype(str))),
        key=lambda item: item[0],
    )


def scope_metrics(
    cells: pd.DataFrame, predictions: dict[str, Any], options: EvaluateOptions
) -> dict[str, Any]:
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


def interval_coverage(
    cells: pd.DataFrame, predictions: dict[str, Any], reporter: Reporter
) -> dict[str, Any] | None:
    """Both coverage checks of prob_low–prob_high against the labels (``interval_coverage.coverage``), with
    the members'-spread interval beside them where the layer allows; None without the fields."""
    import numpy as np

    from ..model import calibration, intervals
    from .interval_coverage import coverage

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
    found = coverage(
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


def _json_metadata(value: Any) -> dict[str, Any]:
    """A JSON object stored in the layer metadata; {} when absent or unreadable."""
    try:
        found = json.loads(value) if value else {}
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def in_range_metrics(
    cells: pd.DataFrame, predictions: dict[str, Any], options: EvaluateOptions, reporter: Reporter
) -> dict[str, Any] | None:
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
    return scope_metrics(inside, predictions, options)


def training_cells_compared(
    cells: pd.DataFrame, metadata: dict[str, Any], reporter: Reporter
) -> dict[str, Any]:
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


def new_cell_metrics(
    cells: pd.DataFrame,
    trained_on: dict[str, Any],
    districts: Sequence[tuple[str, pd.DataFrame]],
    predictions: dict[str, Any],
    options: EvaluateOptions,
) -> dict[str, Any]:
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
            by_district[district] = scope_metrics(fresh, predictions, options)
    return {
        "new_cells": scope_metrics(cells[new], predictions, options),
        "districts_new_cells": by_district,
    }


def roc_curves(cells: pd.DataFrame, members: Sequence[str]) -> dict[str, Any]:
    from . import metrics

    labels = cells["label"].to_numpy()
    columns = [(member, f"prob_{member}") for member in members] + [(ENSEMBLE, "prob_mean")]
    if "prob_baseline" in cells:
        columns.append((BASELINE, "prob_baseline"))
    return {
        name: metrics.roc_points(labels, cells[column].to_numpy(dtype="float64"))
        for name, column in columns
    }


def evaluation_verdict(
    cells: pd.DataFrame, overall: dict[str, Any], options: EvaluateOptions
) -> dict[str, Any]:
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


def outcome_counts(cells: pd.DataFrame) -> dict[str, int]:
    counts = cells["outcome"].value_counts()
    return {outcome: int(counts.get(outcome, 0)) for outcome in OUTCOMES}


def metric_notes(
    overall: dict[str, Any],
    by_district: dict[str, Any],
    data: dict[str, Any],
    in_range: dict[str, Any] | None = None,
) -> list[str]:
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
