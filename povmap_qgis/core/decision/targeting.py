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
rendered the map) in ``targeting_report.py``.
"""

from __future__ import annotations  # imported inside QGIS too (report_document), maybe Python 3.9

import dataclasses
import datetime
import json
import math
import os
import time
from typing import Any

from ..atomic import (
    atomic_output,
    check_output_path,
    check_outputs_are_not_inputs,
    file_part,
)
from ..errors import PovmapInputError
from ..names import CELL_ID, ID_FIELD_METADATA, ID_FIELD_RECORDED
from ..progress import Reporter
from .selection import (
    ALLOCATION_COLUMNS,
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
from .targeting_report import headline, report_document, targeting_curve_figure

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


def target(options, reporter=None):
    """Rank, select, write the outputs; return a summary (every number of the report)."""
    reporter = reporter or Reporter()
    started = time.monotonic()
    _check_options(options)
    cells, layer, metadata, id_field = read_predictions(options)
    if id_field != CELL_ID:
        reporter.info(f"Cells of '{layer}' identified by {id_field} (ID_FIELD)")
    reporter.progress(5)
    truth = _read_truth(options, id_field, reporter) if options.truth_path else None
    notes = []
    calibrated = _calibrated(cells, metadata)
    if not calibrated:
        message = (
            "PREDICTIONS: prob_mean is not calibrated (a model package without calibration); the "
            "expected numbers take it as the share of such cells that are poor, which an "
            "uncalibrated probability need not be."
        )
        reporter.warning(message)
        notes.append(message)
    area = _area(options, (cells, id_field), layer, reporter, notes)
    area.bounds = _bounds(cells, metadata)
    budget, selection = _select(options, area, reporter, notes)
    outcome = _outcome(options, area, budget, selection, truth, notes)
    reporter.progress(80)
    _mark_cells(area, selection)
    summary = {
        "format_version": TARGETING_FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "settings": _settings(options, metadata, id_field),
        "data": dict(_data_record(area, layer, calibrated), name=options.predictions_name or layer),
        **outcome,
    }
    summary["figures"] = (
        _write_figures(options.figures_folder, summary, cells) if options.figures_folder else {}
    )
    reporter.progress(90)
    reporter.check_canceled()
    _write_outputs(options, cells, summary["allocation"], summary, id_field)
    summary.update(
        output=os.path.abspath(options.output_path),
        allocation_csv=os.path.abspath(options.allocation_path),
        seconds=round(time.monotonic() - started, 2),
    )
    if options.report_path:
        from ..report.page import write_report

        write_report(options.report_path, **report_document(summary))
        summary["report"] = os.path.abspath(options.report_path)
    reporter.progress(100)
    reporter.info(headline(summary))
    return summary


def _area(options, identified, layer, reporter, notes):
    """The cells' probabilities, people, costs and expected poor, and which may be selected.
    ``identified``: (the prediction layer's cells, their id field)."""
    import numpy as np

    cells, id_field = identified

    probability = cells["prob_mean"].to_numpy(dtype="float64")
    predicted = np.isfinite(probability)
    if not predicted.any():
        raise PovmapInputError(
            "PREDICTIONS",
            f"prob_mean is empty in every cell of '{layer}'; predict the cells first.",
        )
    if (~predicted).any():
        notes.append(
            f"{int((~predicted).sum())} cells have no prediction (empty prob_mean): kept in OUTPUT, "
            "never ranked nor selected, left out of the expected numbers."
        )
    population = _population(options, cells, reporter, notes)
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
    districts = _district_names(cells)
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


def _population(options, cells, reporter, notes):
    """People per cell from POPULATION (None without it); cells partly outside it noted."""
    if not options.population_path:
        return None
    reporter.info("Summing the population raster per cell…")
    from ..grid.population import cell_population

    population, inside = cell_population(
        cells.geometry, options.population_path, "POPULATION", reporter.stage(5, 60)
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


def _skip_out_of_range(options, cells, eligible, reporter, notes):
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


def _select(options, area, reporter, notes):
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


def _outcome(options, area, budget, selection, truth, notes):
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


def _bounds(cells, metadata):
    """(prob_low, prob_high, nominal) of the cells, or None without both fields. The nominal
    level is the interval rule's (layer metadata povmap:interval), else the members'-spread
    interval's."""
    import numpy as np

    from ..model.calibration import NOMINAL_LEVEL

    if "prob_low" not in cells or "prob_high" not in cells:
        return None
    try:
        rule = json.loads(metadata.get("povmap:interval") or "{}")
    except ValueError:
        rule = {}
    nominal = rule.get("nominal") if isinstance(rule, dict) else None
    probability = cells["prob_mean"].to_numpy(dtype="float64")
    low, high = (cells[field].to_numpy(dtype="float64") for field in ("prob_low", "prob_high"))
    low = np.where(np.isfinite(low), low, probability)
    high = np.where(np.isfinite(high), high, probability)
    return low, high, float(nominal) if isinstance(nominal, (int, float)) else NOMINAL_LEVEL


def _data_record(area, layer, calibrated):
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


def _mark_cells(area, selection):
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


def _check_options(options):
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


def _number(value, parameter):
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise PovmapInputError(parameter, f"'{value}' is not a number.") from None
    if not math.isfinite(number):
        raise PovmapInputError(parameter, f"'{value}' is not a finite number.")
    return number


def read_predictions(options, keep_targeting_fields=False):
    """(cells, layer name, layer metadata, id field) of PREDICTIONS, checked.

    ``options``: its predictions_path, predictions_layer and id_field. The fields an
    earlier targeting wrote (rank, selected, …) are dropped unless ``keep_targeting_fields``
    (the verification sample stratifies by ``selected``)."""
    import geopandas

    from ..chips.grid_cells import read_cell_ids
    from ..geopackage import povmap_layer_metadata
    from ..vectors import layer_info, spatial_layer

    path = options.predictions_path
    layer = spatial_layer(path, options.predictions_layer, "PREDICTIONS")
    info = layer_info(path, layer, "PREDICTIONS")
    fields = list(info["fields"])
    name = layer or os.path.basename(path)
    if not info.get("geometry_type") or info["geometry_type"].replace(" Z", "") not in (
        "Polygon",
        "MultiPolygon",
    ):
        raise PovmapInputError(
            "PREDICTIONS",
            f"the layer '{name}' has no polygons; use the prediction layer written by Predict poverty.",
        )
    if "prob_mean" not in fields:
        raise PovmapInputError(
            "PREDICTIONS",
            f"the layer '{name}' is not a prediction layer: it has no prob_mean field; "
            "use the layer written by Predict poverty (its cell id, district, prob_mean, …). "
            f"Its fields: {', '.join(fields) or 'none'}.",
        )
    metadata = povmap_layer_metadata(path, layer)
    recorded = metadata.get(ID_FIELD_RECORDED)
    id_field = options.id_field or recorded or CELL_ID
    if id_field not in fields and id_field != info.get("fid_column"):
        if options.id_field:
            hint = (
                "choose the id field the predictions carry (the grid's ID_FIELD in Predict poverty)"
            )
        elif recorded:
            hint = (
                f"Predict poverty recorded {recorded} as the cells' id, but the field is gone; "
                "choose the cells' id field in Cell id field (ID_FIELD)"
            )
        else:
            hint = (
                "predictions on a grid of your own: choose its id field in Cell id field (ID_FIELD)"
            )
        raise PovmapInputError(
            "ID_FIELD",
            f"the layer '{name}' (PREDICTIONS) has no {id_field} field (its fields: "
            f"{', '.join(fields) or 'none'}); {hint}.",
        )
    read_cell_ids(path, layer, id_field, info, "PREDICTIONS")  # NULL, fractional, repeated ids
    frame = geopandas.read_file(path, layer=layer, engine="pyogrio")
    if frame.empty:
        raise PovmapInputError("PREDICTIONS", f"the layer '{name}' has no features.")
    frame[id_field] = frame[id_field].astype("int64")
    for field in ("rank", "selected", "population", "expected_poor"):
        if field in frame and not keep_targeting_fields:
            frame = frame.drop(columns=[field])  # an earlier targeting's output used as input
    values = frame["prob_mean"].astype("float64")
    if (values.dropna() < 0).any() or (values.dropna() > 1).any():
        raise PovmapInputError(
            "PREDICTIONS", f"prob_mean of '{name}' must hold probabilities between 0 and 1."
        )
    frame["prob_mean"] = values
    return frame, name, metadata, id_field


def _read_truth(options, id_field, reporter):
    """Cell id (``id_field``, the predictions') and label of the labelled cells of TRUTH, read
    as evaluate reads them (core/grid/labelled_grid.py)."""
    from ..grid.labelled_grid import read_labelled_grid

    frame = read_labelled_grid(options.truth_path, options.truth_layer, id_field, reporter)["frame"]
    return frame[[id_field, "label"]].astype({id_field: "int64", "label": "int64"})


def _calibrated(cells, metadata):
    """Whether prob_mean was calibrated by predict: prob_raw beside it, and a calibration recorded."""
    if "prob_raw" not in cells:
        return False
    try:
        fitted = json.loads(metadata.get("povmap:calibration") or "{}")
    except ValueError:
        fitted = {}
    return not (isinstance(fitted, dict) and fitted.get("method") == "none")


def _district_names(cells):
    import numpy as np

    if "district" not in cells:
        return np.full(len(cells), NO_DISTRICT, dtype=object)
    names = cells["district"].astype(object).where(cells["district"].notna(), NO_DISTRICT)
    return names.astype(str).replace("", NO_DISTRICT).to_numpy(dtype=object)


def _budget_in_units(options, total_units):
    budget = float(options.budget)
    if options.budget_unit.startswith("share_"):
        budget *= total_units
    if options.budget_unit in ("cells", "share_of_cells"):
        budget = math.floor(budget + 1e-9)  # whole cells
    return budget


# --- outputs ------------------------------------------------------------------------------------------


# How the ALLOCATION CSV writes each column: people as whole people, expected poor to a tenth,
# shares to four decimals (the summary and the report keep the exact numbers).
CSV_DECIMALS = {
    "people": 0,
    "people_selected": 0,
    "expected_poor": 1,
    "expected_poor_covered": 1,
    "expected_poor_low": 1,
    "expected_poor_high": 1,
    "expected_poor_covered_low": 1,
    "expected_poor_covered_high": 1,
    "share_of_district_selected": 4,
    "share_of_budget": 4,
}


def allocation_csv_value(column, value):
    """One ALLOCATION CSV cell: empty for None, rounded as CSV_DECIMALS says."""
    if value is None:
        return ""
    decimals = CSV_DECIMALS.get(column)
    if decimals is None or not isinstance(value, float) or not math.isfinite(value):
        return value
    return int(round(value)) if decimals == 0 else round(value, decimals)


def _write_outputs(options, cells, allocation, summary, id_field):
    """OUTPUT (one layer: the cells) and the ALLOCATION CSV: both appear, or neither.

    The allocation is not a second table in OUTPUT's GeoPackage: QGIS asks which layers to
    add for a GeoPackage of two (drop, Browser, Data Source Manager)."""
    import csv

    import pyogrio

    from ..geopackage import layer_name_for, read_styles, styled_output, styles_metadata

    layer = layer_name_for(options.output_path)
    metadata = {
        "povmap_targeting": json.dumps(
            {
                "budget": summary["budget"],
                "rank_by": options.rank_by,
                "selected_cells": summary["selected_cells"],
                "selected_people": summary["selected_people"],
                "expected": summary["expected"],
                "measured": (summary["measured"] or {}).get("measured"),
            }
        ),
        "povmap_predictions": os.path.abspath(options.predictions_path),
        "povmap_allocation": os.path.abspath(options.allocation_path),
        ID_FIELD_METADATA: id_field,
        "povmap_population": os.path.abspath(options.population_path)
        if options.population_path
        else "",
    }
    styles = read_styles(options.style_qml_path, "povmap selection")
    metadata.update(styles_metadata(styles))
    with (
        styled_output(options.output_path, styles) as gpkg_partial,
        atomic_output(options.allocation_path) as csv_partial,
    ):
        pyogrio.write_dataframe(
            cells, gpkg_partial, layer=layer, driver="GPKG", layer_metadata=metadata
        )
        with open(csv_partial, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(ALLOCATION_COLUMNS)
            for row in allocation:
                writer.writerow([allocation_csv_value(key, row[key]) for key in ALLOCATION_COLUMNS])


def _write_figures(folder, summary, cells):
    """The targeting curve PNG and the district outlines (GeoPackage) for the map; {name: path}."""
    from ..report import figures as drawing

    os.makedirs(folder, exist_ok=True)
    units = summary["budget"]["units"]
    panels = [
        (
            "Expected (the model's probabilities)",
            summary["curves"]["expected"],
            summary["budget_point"],
        )
    ]
    if summary["measured"]:
        panels.append(
            (
                f"Measured on the {summary['measured']['truth_cells']} TRUTH cells",
                summary["curves"]["measured"],
                summary["measured"]["budget_point"],
            )
        )
    poor = "poor people" if summary["selected_people"] is not None else "poor cells"
    figures = {
        "curve": drawing.save(
            targeting_curve_figure(
                panels, f"share of {units} enrolled", f"share of the {poor} covered"
            ),
            os.path.join(folder, "targeting_curve.png"),
        )
    }
    if "district" in cells:
        outlines = cells[["district", "geometry"]].copy()
        outlines["district"] = _district_names(cells)
        dissolved = outlines.dissolve(by="district", as_index=False)
        path = os.path.join(folder, "districts.gpkg")
        dissolved.to_file(path, engine="pyogrio")
        figures["districts"] = os.path.abspath(path)
    return figures


def _settings(options, metadata, id_field):
    from ..version import plugin_version

    return {
        "predictions": os.path.abspath(options.predictions_path),
        "predictions_layer": options.predictions_layer,
        "id_field": id_field,
        "population": os.path.abspath(options.population_path) if options.population_path else None,
        "truth": os.path.abspath(options.truth_path) if options.truth_path else None,
        "budget_unit": options.budget_unit,
        "budget": float(options.budget),
        "rank_by": options.rank_by,
        "district_min_share": options.district_min_share,
        "district_max_share": options.district_max_share,
        "skip_out_of_range": bool(options.skip_out_of_range),
        "model": metadata.get("povmap:model"),
        "povmap_qgis": plugin_version(),
    }
