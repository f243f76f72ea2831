"""Budgeted geographic targeting (pipeline step 8, runs in the worker).

A programme can enrol a budget of cells or people; this chooses the cells.
Cells of a prediction layer are ranked by ``prob_mean`` (RANK_BY
``probability``) or by expected poor people ``prob_mean × population``
(``expected_poor``; needs POPULATION, a raster of people per pixel summed per
cell by ``population.cell_population``), then enrolled down the ranking
until the budget is spent. A cell is enrolled whole: one that would overshoot
the budget is passed over and smaller ones further down fill the rest.
Optional district floors (``DISTRICT_MIN_SHARE``) are served first — each
district's best cells until that share of its cells (or people) is
enrolled — and caps (``DISTRICT_MAX_SHARE``) are never exceeded.

Definitions (n = people of a cell, or 1 without POPULATION; p = prob_mean):
expected poor of a cell ``e = p × n``; expected coverage = Σ e over the
selected cells / Σ e over all predicted cells; expected inclusion error =
share of the enrolled who are not poor = 1 − Σ_sel e / Σ_sel n; expected
exclusion error = share of the poor left out = 1 − coverage. With TRUTH
(a labelled grid matched by the cells' id), the same with the observed label
instead of p, on the cells the truth covers.

Cells are known by their id field: ``cell_id`` on povmap's grids, an own
grid's id (``id_field``, ID_FIELD) otherwise — by default the one Predict
poverty recorded in the layer's metadata (``povmap_id_field``). It breaks
ties, matches TRUTH and is kept in the outputs. People are summed over each
cell's polygon (not its chip's bounding box), so neighbouring polygons of an
own grid share no one.

Which ranking: with a budget in people, enrolling by probability covers the
most expected poor people per person enrolled (greedy on e / n = p); with a
budget in cells, ranking by expected poor does (greedy on e per cell), which
favours crowded cells.

Edge cases: cells without a prediction (empty prob_mean) are kept in the
output, never ranked nor selected; with POPULATION, cells with no people
are never ranked nor selected (nobody to enrol); ``SKIP_OUT_OF_RANGE``
leaves cells flagged ``out_of_range = 1`` out (a warning when the layer has
no such field); a budget larger than what can be enrolled selects every
rankable cell and says so; caps that leave the budget unreachable select what
they allow and say so. Ties are broken by the other ranking quantity, then
by the cell id (ascending).

The arithmetic (ranking, selection, allocation, curves) is in ``selection.py``;
the report (figure and HTML document, also built inside QGIS after QGIS has
rendered the map) in ``targeting_report.py``; the prediction layer is read by
``prediction_layer.py`` and the outputs are written by ``targeting_outputs.py``.
"""

from __future__ import annotations  # imported inside QGIS too (report_document), maybe Python 3.9

import dataclasses
import datetime
import math
import os
import time
from typing import TYPE_CHECKING, Any

from ..atomic import check_output_path, check_outputs_are_not_inputs, file_part
from ..errors import PovmapInputError
from ..names import CELL_ID
from ..progress import Reporter
from ..report.step_end import end_step
from .prediction_layer import (
    district_names,
    interval_bounds,
    prediction_polygons,
    prob_mean_calibrated,
    read_predictions,
)
from .selection import (
    NO_DISTRICT,
    allocation_rows,
    coverage_rates,
    expected_curves,
    expected_intervals,
    measured_outcome,
    ranking,
    select_cells,
    selection_warnings,
)
from .targeting_outputs import settings_record, write_figures, write_outputs
from .targeting_report import headline, report_document

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


# The prediction layer's fields targeting reads for every cell (besides the id and prob_mean);
# OUTPUT carries all of them, read again window by window.
TARGETING_READS = (
    "district",
    "prob_raw",
    "prob_low",
    "prob_high",
    "prob_baseline",
    "out_of_range",
)
BUDGET_UNITS = ("cells", "people", "share_of_cells", "share_of_people")
RANK_BY = ("probability", "expected_poor")
TARGETING_FORMAT_VERSION = "1.0"


@dataclasses.dataclass
class TargetOptions:
    predictions_path: str
    output_path: (
        str  # GeoPackage of one layer: every cell + rank, selected, population, expected_poor
    )
    allocation_path: str  # CSV of the allocation per district
    budget: float
    budget_unit: str = "share_of_cells"  # one of BUDGET_UNITS
    rank_by: str = "probability"  # one of RANK_BY
    predictions_layer: str | None = None
    population_path: str | None = None  # raster of people per pixel, any CRS
    district_min_share: float | None = None
    district_max_share: float | None = None
    skip_out_of_range: bool = False
    truth_path: str | None = None
    truth_layer: str | None = None
    figures_folder: str | None = None  # targeting curve PNG, district outlines for the map
    report_path: str | None = (
        None  # write the HTML report here (without a map); None: the caller does
    )
    style_qml_path: str | None = None  # resources/styles/targeting_selection.qml
    # the cells' id (ID_FIELD); None: the one Predict poverty recorded in PREDICTIONS, else cell_id
    id_field: str | None = None
    # PREDICTIONS' name in the user's project (e.g. "Predictions — Kotlani (demo_compact)") for
    # the report; None: the layer's name in its file
    predictions_name: str | None = None


@dataclasses.dataclass
class _Area:
    """The prediction layer's cells as targeting sees them: one array entry per cell."""

    cells: Any  # the prediction layer (a GeoDataFrame)
    id_field: str  # the cells' id field (ID_FIELD)
    ids: Any  # each cell's id
    probability: Any  # prob_mean (NaN: no prediction)
    predicted: Any  # has a prediction
    population: Any  # people (POPULATION summed per cell); None without POPULATION
    heads: Any  # people, or 1 a cell without POPULATION
    cost: Any  # what enrolling the cell costs in the budget's units
    expected: Any  # expected poor: probability x heads (NaN without a prediction)
    eligible: Any  # may be ranked and selected
    names: list  # the districts, sorted (NO_DISTRICT for cells without one)
    codes: Any  # each cell's index in names
    counts: dict  # zero_population, skipped_out_of_range: cells left out and why
    bounds: Any = None  # (prob_low, prob_high, nominal) where the layer has them, else None


def target(options: TargetOptions, reporter: Reporter | None = None) -> dict[str, Any]:
    """Rank, select, write the outputs; return a summary (every number of the report)."""
    reporter = reporter or Reporter()
    started = time.monotonic()
    _check_options(options)
    # the cells' fields; their polygons are read window by window where needed (memory)
    cells, layer, metadata, id_field = read_predictions(
        options, geometry=False, columns=TARGETING_READS
    )
    if id_field != CELL_ID:
        reporter.info(f"Cells of '{layer}' identified by {id_field} (ID_FIELD)")
    reporter.progress(5)
    truth = _read_truth(options, id_field, reporter) if options.truth_path else None
    notes = []
    calibrated = prob_mean_calibrated(cells, metadata)
    if not calibrated:
        message = (
            "PREDICTIONS: prob_mean is not calibrated (a model package without calibration); the "
            "expected numbers take it as the share of such cells that are poor, which an "
            "uncalibrated probability need not be."
        )
        reporter.warning(message)
        notes.append(message)
    area = _area(options, (cells, id_field), layer, reporter, notes)
    area.bounds = interval_bounds(cells, metadata)
    budget, selection = _select(options, area, reporter, notes)
    outcome = _outcome(options, area, budget, selection, truth, notes)
    reporter.progress(80)
    _mark_cells(area, selection)
    summary = {
        "format_version": TARGETING_FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "settings": settings_record(options, metadata, id_field),
        "data": dict(_data_record(area, layer, calibrated), name=options.predictions_name or layer),
        **outcome,
    }
    summary["figures"] = (
        write_figures(options.figures_folder, summary, options, (cells, id_field))
        if options.figures_folder
        else {}
    )
    reporter.progress(90)
    reporter.check_canceled()
    write_outputs(options, cells, summary["allocation"], summary, id_field)
    return end_step(
        summary,
        {"output": options.output_path, "allocation_csv": options.allocation_path},
        started,
        options.report_path,
        report_document,
        headline,
        reporter,
    )


def _area(
    options: TargetOptions,
    identified: tuple[pd.DataFrame, str],
    layer: str,
    reporter: Reporter,
    notes: list[str],
) -> _Area:
    """The cells' probabilities, people, costs and expected poor, and which may be selected.
    ``identified``: (the prediction layer's cells, their id field)."""
    import numpy as np

    cells, id_field = identified

    probability = cells["prob_mean"].to_numpy(dtype="float64")
    predicted = np.isfinite(probability)  # some are (prediction_layer.read_predictions)
    if (~predicted).any():
        notes.append(
            f"{int((~predicted).sum())} cells have no prediction (empty prob_mean): kept in OUTPUT, "
            "never ranked nor selected, left out of the expected numbers."
        )
    population = _population(options, identified, reporter, notes)
    reporter.progress(60)
    reporter.check_canceled()
    heads = population if population is not None else np.ones(len(cells))
    people_units = options.budget_unit in ("people", "share_of_people")
    cost = heads if people_units else np.ones(len(cells))
    expected = np.where(predicted, np.nan_to_num(probability) * heads, np.nan)
    eligible = predicted.copy()
    zero_population = int((predicted & (heads <= 0)).sum()) if population is not None else 0
    if population is not None:
        eligible &= heads > 0
        if zero_population:
            notes.append(
                f"{zero_population} predicted cells have no people in POPULATION: never selected "
                "(nobody to enrol)."
            )
    skipped = _skip_out_of_range(options, cells, eligible, reporter, notes)
    districts = district_names(cells)
    names = sorted(set(districts))
    return _Area(
        cells,
        id_field,
        cells[id_field].to_numpy(),
        probability,
        predicted,
        population,
        heads,
        cost,
        expected,
        eligible,
        names,
        np.searchsorted(names, districts),
        {"zero_population": zero_population, "skipped_out_of_range": skipped},
    )


def _population(
    options: TargetOptions,
    identified: tuple[pd.DataFrame, str],
    reporter: Reporter,
    notes: list[str],
) -> np.ndarray | None:
    """People per cell from POPULATION (None without it); cells partly outside it noted.
    ``identified``: (the prediction layer's cells, their id field)."""
    if not options.population_path:
        return None
    cells, id_field = identified
    reporter.info("Summing the population raster per cell…")
    from ..grid.population import windowed_cell_population

    population, inside = windowed_cell_population(
        prediction_polygons(options, id_field, len(cells)),
        len(cells),
        options.population_path,
        "POPULATION",
        reporter.stage(5, 60),
    )
    if not float(population.sum()) > 0:  # cell_population counts NaN and negatives as 0
        raise PovmapInputError(
            "POPULATION",
            f"the raster '{options.population_path}' has no people in any predicted cell (its "
            "pixels there are nodata, NaN, zero or negative, which count as no one): check its "
            "values, nodata value and extent, or choose the population raster of this area.",
        )
    partly = int((inside < 0.95).sum())  # sub-pixel counting is exact to about 1 %
    if partly:
        notes.append(
            f"{partly} cells lie partly or wholly outside the POPULATION raster: people are counted "
            "only where the raster is."
        )
    return population


def _skip_out_of_range(
    options: TargetOptions,
    cells: pd.DataFrame,
    eligible: np.ndarray,
    reporter: Reporter,
    notes: list[str],
) -> int:
    """With SKIP_OUT_OF_RANGE, cells outside the training range made ineligible (in place);
    returns how many eligible cells that left out."""
    if not options.skip_out_of_range:
        return 0
    if "out_of_range" not in cells:
        reporter.warning(
            "SKIP_OUT_OF_RANGE: the prediction layer has no out_of_range field "
            "(predicted by an older model package); no cell is left out."
        )
        notes.append("SKIP_OUT_OF_RANGE was asked for, but the layer has no out_of_range field.")
        return 0
    flagged = cells["out_of_range"].fillna(0).to_numpy(dtype="float64") > 0
    skipped = int((flagged & eligible).sum())
    eligible &= ~flagged
    notes.append(f"SKIP_OUT_OF_RANGE: {skipped} cells outside the model's training range left out.")
    return skipped


def _select(
    options: TargetOptions, area: _Area, reporter: Reporter, notes: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ranking and the cells the budget enrols: (the summary's ``budget``,
    ``select_cells``'s dict with ``order`` and ``rank``, 1 = first, 0 = not ranked)."""
    import numpy as np

    order = ranking(
        area.probability,
        area.expected,
        area.ids,
        area.eligible,
        options.rank_by,
    )
    rank = np.zeros(len(area.cells), dtype="int64")
    rank[order] = np.arange(1, len(order) + 1)
    budget = _budget_in_units(options, float(area.cost.sum()))
    selection = select_cells(
        order,
        area.cost,
        area.codes,
        [name == NO_DISTRICT for name in area.names],
        budget,
        options.district_min_share,
        options.district_max_share,
    )
    people_units = options.budget_unit in ("people", "share_of_people")
    warnings = selection_warnings(
        selection, options, budget, area.cost, area.eligible, people_units
    )
    for message in warnings:
        reporter.warning(message)
        notes.append(message)
    reporter.progress(70)
    reporter.check_canceled()
    spent = {
        "unit": options.budget_unit,
        "value": float(options.budget),
        "units": "people" if people_units else "cells",
        "in_units": budget,
        "spent": float(area.cost[selection["selected"]].sum()),
        "area_total": float(area.cost.sum()),
        "reachable": bool(selection["reachable"]),
    }
    return spent, dict(selection, order=order, rank=rank)


def _outcome(
    options: TargetOptions,
    area: _Area,
    budget: dict[str, Any],
    selection: dict[str, Any],
    truth: pd.DataFrame | None,
    notes: list[str],
) -> dict[str, Any]:
    """The budget spent, the selection, its expected (and, with TRUTH, measured) coverage and
    errors, the allocation per district and the targeting curves: the summary's numbers."""
    import numpy as np

    selected = selection["selected"]
    population, expected = area.population, area.expected
    poor_total = float(np.nansum(expected))
    poor_covered = float(np.nansum(expected[selected]))
    enrolled_heads = float(area.heads[selected].sum())
    expected_numbers = coverage_rates(poor_covered, poor_total, enrolled_heads)
    allocation = allocation_rows(
        area.names,
        area.codes,
        area.predicted,
        area.heads if population is not None else None,
        area.cost,
        expected,
        selected,
        bounds=None if area.bounds is None else (area.probability, area.heads) + area.bounds,
    )
    curves = {
        "expected": expected_curves(
            area.probability,
            expected,
            area.heads,
            area.cost,
            area.cells,
            area.id_field,
            area.codes,
            area.predicted,
            options.rank_by,
        )
    }
    predicted_units = float(area.cost[area.predicted].sum())
    measured = None
    if truth is not None:
        measured, curves["measured"] = measured_outcome(truth, area, selected, options)
        notes += measured.pop("notes")
    return {
        "budget": budget,
        "selected_cells": int(selected.sum()),
        "selected_people": enrolled_heads if population is not None else None,
        "expected": dict(
            expected_numbers,
            poor_total=poor_total,
            poor_covered=poor_covered,
            **expected_intervals(
                area.probability, area.heads, area.predicted, selected, area.bounds
            ),
        ),
        "measured": measured,
        "curves": curves,
        "budget_point": {
            "x": budget["spent"] / predicted_units if predicted_units else None,
            "y": expected_numbers["coverage"],
        },
        "allocation": allocation,
        "notes": notes,
    }


def _data_record(area: _Area, layer: str, calibrated: bool) -> dict[str, Any]:
    """The summary's ``data``: the layer's cells, which could be ranked, the districts."""
    predicted, population = area.predicted, area.population
    return {
        "layer": layer,
        "cells": int(len(area.cells)),
        "predicted": int(predicted.sum()),
        "without_prediction": int((~predicted).sum()),
        **area.counts,
        "rankable": int(area.eligible.sum()),
        "districts": [name for name in area.names if name != NO_DISTRICT],
        "population_total": float(population.sum()) if population is not None else None,
        "has_baseline": "prob_baseline" in area.cells,
        "calibrated": calibrated,
    }


def _mark_cells(area: _Area, selection: dict[str, Any]) -> None:
    """OUTPUT's added fields: rank (empty when not ranked), selected, population, expected_poor."""
    import numpy as np
    import pandas

    cells, rank = area.cells, selection["rank"]
    cells["rank"] = pandas.array(np.where(rank > 0, rank, 0), dtype="Int64")
    cells.loc[rank == 0, "rank"] = pandas.NA  # not ranked: no prediction, nobody, or skipped
    cells["selected"] = selection["selected"].astype("int32")
    if area.population is not None:
        cells["population"] = area.population
    cells["expected_poor"] = area.expected


# --- inputs -------------------------------------------------------------------------------------------


def _check_options(options: TargetOptions) -> None:
    if options.budget_unit not in BUDGET_UNITS:
        raise PovmapInputError(
            "BUDGET_UNIT",
            f"'{options.budget_unit}' is not a budget unit; use one of {', '.join(BUDGET_UNITS)}.",
        )
    if options.rank_by not in RANK_BY:
        raise PovmapInputError(
            "RANK_BY", f"'{options.rank_by}' is not a ranking; use one of {', '.join(RANK_BY)}."
        )
    budget = _number(options.budget, "BUDGET")
    if budget is None or budget <= 0:
        raise PovmapInputError(
            "BUDGET",
            f"{options.budget}: a budget of 0 or less enrols no cell; give a budget above 0.",
        )
    if options.budget_unit == "cells" and budget != int(budget):
        raise PovmapInputError(
            "BUDGET",
            f"{budget:g} is not a whole number of cells (BUDGET_UNIT cells): a cell is enrolled "
            "whole; give a whole number, or a share with BUDGET_UNIT share_of_cells.",
        )
    if options.budget_unit.startswith("share_") and budget > 1:
        raise PovmapInputError(
            "BUDGET",
            f"{budget:g} is a share above 1; with BUDGET_UNIT {options.budget_unit} give a share "
            "between 0 and 1 (0.3 = 30 %).",
        )
    shares = {}
    for parameter, value in (
        ("DISTRICT_MIN_SHARE", options.district_min_share),
        ("DISTRICT_MAX_SHARE", options.district_max_share),
    ):
        share = _number(value, parameter)
        if share is not None and not 0 <= share <= 1:
            raise PovmapInputError(
                parameter, f"{share:g}: give a share between 0 and 1 (0.1 = 10 % of each district)."
            )
        shares[parameter] = share
    low, high = shares["DISTRICT_MIN_SHARE"], shares["DISTRICT_MAX_SHARE"]
    if low is not None and high is not None and high < low:
        raise PovmapInputError(
            "DISTRICT_MAX_SHARE",
            f"the cap {high:g} is below the floor DISTRICT_MIN_SHARE {low:g}; a cap must be at least the floor.",
        )
    needs_population = options.budget_unit in ("people", "share_of_people")
    if (needs_population or options.rank_by == "expected_poor") and not options.population_path:
        what = f"BUDGET_UNIT {options.budget_unit}" if needs_population else "RANK_BY expected_poor"
        raise PovmapInputError(
            "POPULATION", f"{what} needs a population raster (people per pixel, e.g. WorldPop)."
        )
    for path, parameter in (
        (options.predictions_path, "PREDICTIONS"),
        (options.population_path, "POPULATION"),
        (options.truth_path, "TRUTH"),
    ):
        if path is not None and not os.path.exists(file_part(path)):
            raise PovmapInputError(parameter, f"the file '{path}' does not exist.")
    check_output_path(options.output_path, "OUTPUT", (".gpkg",))
    check_output_path(options.allocation_path, "ALLOCATION", (".csv",))
    if options.report_path:
        check_output_path(options.report_path, "REPORT", (".html", ".htm"))
    check_outputs_are_not_inputs(
        (options.predictions_path, options.population_path, options.truth_path),
        (
            (options.output_path, "OUTPUT"),
            (options.allocation_path, "ALLOCATION"),
            (options.report_path, "REPORT"),
        ),
    )


def _number(value: Any, parameter: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise PovmapInputError(parameter, f"'{value}' is not a number.") from None
    if not math.isfinite(number):
        raise PovmapInputError(parameter, f"'{value}' is not a finite number.")
    return number


def _read_truth(options: TargetOptions, id_field: str, reporter: Reporter) -> pd.DataFrame:
    """Cell id (``id_field``, the predictions') and label of the labelled cells of TRUTH, read
    as evaluate reads them (core/grid/labelled_grid.py)."""
    from ..grid.labelled_grid import read_labelled_grid

    frame = read_labelled_grid(
        options.truth_path,  # type: ignore[arg-type]  # called with TRUTH only
        options.truth_layer,
        id_field,
        reporter,
    )["frame"]
    return frame[[id_field, "label"]].astype({id_field: "int64", "label": "int64"})


def _budget_in_units(options: TargetOptions, total_units: float) -> float:
    budget = float(options.budget)
    if options.budget_unit.startswith("share_"):
        budget *= total_units
    if options.budget_unit in ("cells", "share_of_cells"):
        budget = math.floor(budget + 1e-9)  # whole cells
    return budget
