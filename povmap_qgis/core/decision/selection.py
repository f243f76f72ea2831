"""The arithmetic of targeting: ranking, budgeted selection with district floors and caps,
the allocation per district, coverage and errors, and the targeting curves (``target``'s
science, numpy only; ``targeting.py`` reads the inputs and writes the outputs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import PovmapInputError
from ..names import CELL_ID

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


ALLOCATION_COLUMNS = (
    "district",
    "cells",
    "cells_predicted",
    "people",
    "cells_selected",
    "people_selected",
    "expected_poor",
    "expected_poor_covered",
    "share_of_district_selected",
    "share_of_budget",
    # the intervals of expected_poor and expected_poor_covered (from prob_low/prob_high; empty
    # without them): core/model/intervals.total_interval
    "expected_poor_low",
    "expected_poor_high",
    "expected_poor_covered_low",
    "expected_poor_covered_high",
)
INTERVAL_COLUMNS = ALLOCATION_COLUMNS[-4:]

NO_DISTRICT = "(no district)"

CURVE_POINTS = 400


# --- ranking and selection ----------------------------------------------------------------------------


def ranking(
    probability: np.ndarray,
    expected: np.ndarray,
    cell_ids: np.ndarray,
    eligible: np.ndarray,
    rank_by: str,
) -> np.ndarray:
    """Indexes of the eligible cells, best first: by RANK_BY, then the other quantity, then the cell id."""
    import numpy as np

    first, second = (probability, expected) if rank_by == "probability" else (expected, probability)
    index = np.flatnonzero(eligible)
    keys = (cell_ids[index], -np.nan_to_num(second[index]), -np.nan_to_num(first[index]))
    return index[np.lexsort(keys)]


def select_cells(
    order: np.ndarray,
    cost: np.ndarray,
    codes: np.ndarray,
    unconstrained: Sequence[bool] | np.ndarray,
    budget: float,
    min_share: float | None = None,
    max_share: float | None = None,
) -> dict[str, Any]:
    """Enrol cells down ``order`` within ``budget`` (same units as ``cost``); floors first, caps never exceeded.

    ``codes``: district index of each cell; ``unconstrained[code]``: True for
    the group of cells without a district (no floor, no cap). Returns
    selected (bool array), the floors not met and whether the budget was reachable (False: caps left
    part of it unspent although cells that fit it were left).
    """
    import numpy as np

    selected = np.zeros(len(cost), dtype=bool)
    tolerance = 1e-9 * max(1.0, budget)
    n_districts = len(unconstrained)
    totals = np.bincount(codes, weights=cost, minlength=n_districts)
    free = np.asarray(unconstrained, dtype=bool)
    floor = np.where(free, 0.0, (min_share or 0.0) * totals)
    cap = np.where(free | (max_share is None), np.inf, (max_share or 0.0) * totals)
    spent_in = np.zeros(n_districts)
    spent = 0.0
    if min_share:
        for i in order:
            d = codes[i]
            if spent_in[d] >= floor[d] - tolerance:
                continue
            if spent_in[d] + cost[i] > cap[d] + tolerance or spent + cost[i] > budget + tolerance:
                continue
            selected[i] = True
            spent_in[d] += cost[i]
            spent += cost[i]
    if max_share is None and not min_share:
        ordered = cost[order]
        within = np.cumsum(ordered) <= budget + tolerance
        prefix = int(np.argmin(within)) if not within.all() else len(order)
        selected[order[:prefix]] = True
        spent = float(ordered[:prefix].sum())
        rest = order[prefix:]
        if len(rest):
            smallest_after = np.minimum.accumulate(cost[rest][::-1])[::-1]
            for position, i in enumerate(rest):
                if budget - spent < smallest_after[position] - tolerance:
                    break
                if spent + cost[i] <= budget + tolerance:
                    selected[i] = True
                    spent += cost[i]
    else:
        for i in order:
            if selected[i]:
                continue
            if budget - spent <= tolerance:
                break
            d = codes[i]
            if spent_in[d] + cost[i] > cap[d] + tolerance:
                continue
            if spent + cost[i] > budget + tolerance:
                continue
            selected[i] = True
            spent_in[d] += cost[i]
            spent += cost[i]
    floors_unmet = [
        int(d)
        for d in range(n_districts)
        if min_share and not free[d] and spent_in[d] < floor[d] - tolerance
    ]
    return {
        "selected": selected,
        "spent": spent,
        "floors_unmet": floors_unmet,
        # a cell left out that fits what is left of the budget was left out by its district's cap
        "reachable": not (cost[order][~selected[order]] <= budget - spent + tolerance).any(),
    }


def selection_warnings(
    selection: dict[str, Any],
    options: Any,
    budget: float,
    cost: np.ndarray,
    eligible: np.ndarray,
    people_units: bool,
) -> list[str]:
    unit = "people" if people_units else "cells"
    enrollable = float(cost[eligible].sum())
    messages = []
    if budget >= enrollable - 1e-9 and enrollable > 0:
        messages.append(
            f"BUDGET: {budget:,.0f} {unit} is at least all that can be enrolled ({enrollable:,.0f} {unit} "
            f"in {int(eligible.sum())} rankable cells): every rankable cell is selected."
        )
    elif not selection["reachable"]:
        messages.append(
            f"DISTRICT_MAX_SHARE: the district caps make the budget unreachable: {selection['spent']:,.0f} "
            f"of {budget:,.0f} {unit} enrolled, every cell the caps allow."
        )
    if selection["floors_unmet"]:
        messages.append(
            f"DISTRICT_MIN_SHARE: the floor of {len(selection['floors_unmet'])} district(s) is not met: the "
            "budget (or their cap, or their rankable cells) did not allow it."
        )
    return messages


def coverage_rates(
    poor_covered: float, poor_total: float, enrolled: float
) -> dict[str, float | None]:
    coverage = poor_covered / poor_total if poor_total > 0 else None
    return {
        "coverage": coverage,
        "inclusion_error": 1 - poor_covered / enrolled if enrolled > 0 else None,
        "exclusion_error": 1 - coverage if coverage is not None else None,
    }


# --- allocation and curves ----------------------------------------------------------------------------


def allocation_rows(
    names: Sequence[str],
    codes: np.ndarray,
    predicted: np.ndarray,
    population: np.ndarray | None,
    cost: np.ndarray,
    expected: np.ndarray,
    selected: np.ndarray,
    bounds: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float] | None = None,
) -> list[dict[str, Any]]:
    """One dict per district (ALLOCATION_COLUMNS); people columns None without POPULATION.

    ``bounds``: (probability, heads, prob_low, prob_high, nominal) of the cells for the
    intervals of each district's expected poor (covered): its cells' calibration error fully
    correlated, the labels' sampling error added (``intervals.total_interval``); None: empty.
    """
    import numpy as np

    from ..model import intervals

    count = len(names)

    def per(values: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        weights = values if mask is None else np.where(mask, values, 0.0)
        return np.bincount(codes, weights=weights, minlength=count)

    ones = np.ones(len(codes))
    total_spent = float(cost[selected].sum())
    expected_filled = np.nan_to_num(expected)
    cells, cells_predicted, cells_selected = per(ones), per(ones, predicted), per(ones, selected)
    units, units_selected = per(cost), per(cost, selected)
    poor, poor_covered = per(expected_filled), per(expected_filled, selected)
    people = per(population) if population is not None else None
    people_selected = per(population, selected) if population is not None else None
    rows = []
    for d, name in enumerate(names):
        rows.append(
            {
                "district": name,
                "cells": int(cells[d]),
                "cells_predicted": int(cells_predicted[d]),
                "people": float(people[d]) if people is not None else None,
                "cells_selected": int(cells_selected[d]),
                "people_selected": float(people_selected[d])  # type: ignore[index]  # with people
                if people is not None
                else None,
                "expected_poor": float(poor[d]),
                "expected_poor_covered": float(poor_covered[d]),
                "share_of_district_selected": float(units_selected[d] / units[d])
                if units[d] > 0
                else None,
                "share_of_budget": float(units_selected[d] / total_spent) if total_spent else None,
            }
            | dict.fromkeys(INTERVAL_COLUMNS)
        )
        if bounds is not None:
            probability, heads, low, high, nominal = bounds
            for key, mask in (
                ("expected_poor", (codes == d) & predicted),
                ("expected_poor_covered", (codes == d) & predicted & selected),
            ):
                _, lower, upper = intervals.total_interval(
                    probability[mask], low[mask], high[mask], heads[mask], nominal
                )
                rows[-1][f"{key}_low"], rows[-1][f"{key}_high"] = lower, upper
    return rows


def expected_intervals(
    probability: np.ndarray,
    heads: np.ndarray,
    predicted: np.ndarray,
    selected: np.ndarray,
    bounds: tuple[np.ndarray, np.ndarray, float] | None,
) -> dict[str, Any]:
    """The intervals of the expected poor covered and in all, and of the expected coverage
    (``intervals.total_interval`` / ``ratio_interval``); {} without ``bounds`` (prob_low,
    prob_high, nominal)."""
    if bounds is None:
        return {}
    from ..model import intervals

    low, high, nominal = bounds
    parts = {}
    for name, mask in (
        ("selected", selected & predicted),
        ("rest", predicted & ~selected),
        ("all", predicted),
    ):
        parts[name] = intervals.total_interval(
            probability[mask], low[mask], high[mask], heads[mask], nominal
        )
    return {
        "interval_nominal": nominal,
        "poor_covered_interval": list(parts["selected"][1:]),
        "poor_total_interval": list(parts["all"][1:]),
        "coverage_interval": list(intervals.ratio_interval(parts["selected"], parts["rest"])),
    }


def curve(order: np.ndarray, x_weights: np.ndarray, y_weights: np.ndarray) -> list[list[float]]:
    """Cumulative (share of x, share of y) down ``order``, from (0, 0), at most CURVE_POINTS points."""
    import numpy as np

    x = np.concatenate([[0.0], np.cumsum(x_weights[order])])
    y = np.concatenate([[0.0], np.cumsum(y_weights[order])])
    x = x / x[-1] if x[-1] > 0 else x
    y = y / y[-1] if y[-1] > 0 else y
    if len(x) > CURVE_POINTS:
        keep = np.unique(np.linspace(0, len(x) - 1, CURVE_POINTS).round().astype(int))
        x, y = x[keep], y[keep]
    return [[round(float(a), 6) for a in x], [round(float(b), 6) for b in y]]


def district_order(
    codes: np.ndarray,
    probability: np.ndarray,
    heads: np.ndarray,
    rate_mask: np.ndarray,
    cells_mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cells of ``cells_mask`` (default ``rate_mask``) grouped by district, best district first.

    A district's rate is the mean of ``probability`` over its cells in
    ``rate_mask``, weighted by people: its mean predicted probability, or with
    observed labels for ``probability`` its poverty rate from a survey.
    """
    import numpy as np

    p = np.nan_to_num(probability)
    count = int(codes.max()) + 1 if len(codes) else 0
    numerator = np.bincount(codes[rate_mask], weights=(p * heads)[rate_mask], minlength=count)
    denominator = np.bincount(codes[rate_mask], weights=heads[rate_mask], minlength=count)
    rate = np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), 0.0)
    index = np.flatnonzero(rate_mask if cells_mask is None else cells_mask)
    return index[np.lexsort((index, -rate[codes[index]]))], rate


def _district_curve(
    order: np.ndarray, codes: np.ndarray, x_weights: np.ndarray, y_weights: np.ndarray
) -> list[list[float]]:
    """Whole districts in turn: a straight line across each (cells of a district enrolled in random order)."""
    import numpy as np

    x = np.cumsum(x_weights[order])
    y = np.cumsum(y_weights[order])
    ends = np.flatnonzero(np.append(codes[order][1:] != codes[order][:-1], True))
    xs = np.concatenate([[0.0], x[ends]])
    ys = np.concatenate([[0.0], y[ends]])
    xs = xs / xs[-1] if xs[-1] > 0 else xs
    ys = ys / ys[-1] if ys[-1] > 0 else ys
    return [[round(float(a), 6) for a in xs], [round(float(b), 6) for b in ys]]


def expected_curves(
    probability: np.ndarray,
    expected: np.ndarray,
    heads: np.ndarray,
    cost: np.ndarray,
    cells: pd.DataFrame,
    id_field: str,
    codes: np.ndarray,
    predicted: np.ndarray,
    rank_by: str,
) -> dict[str, Any]:
    """Targeting curves judged by the expected poor of every predicted cell (``id_field``: the cells' id)."""
    import numpy as np

    ids = cells[id_field].to_numpy()
    y = np.nan_to_num(expected)
    curves = {
        "model": curve(ranking(probability, expected, ids, predicted, rank_by), cost, y),
        "random": [[0.0, 1.0], [0.0, 1.0]],
        "district": _district_curve(
            district_order(codes, probability, heads, predicted)[0], codes, cost, y
        ),
    }
    if "prob_baseline" in cells:
        baseline = cells["prob_baseline"].to_numpy(dtype="float64")
        usable = predicted & np.isfinite(baseline)
        curves["baseline"] = curve(
            ranking(baseline, baseline * heads, ids, usable, rank_by), cost, y
        )
    return curves


def measured_outcome(
    truth: pd.DataFrame, area: Any, selected: np.ndarray, options: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Measured coverage and errors at the budget, and measured curves, on the predicted cells TRUTH labels."""
    import numpy as np

    cells, id_field, ids, expected = area.cells, area.id_field, area.ids, area.expected
    heads, cost, predicted = area.heads, area.cost, area.predicted
    labels = (
        cells[[id_field]].merge(truth, on=id_field, how="left")["label"].to_numpy(dtype="float64")
    )
    covered = predicted & np.isfinite(labels)
    if not covered.any():
        raise PovmapInputError(
            "TRUTH",
            f"no labelled cell of TRUTH has the {id_field} of a predicted cell; "
            + (
                "grid the ground truth in the CRS and cell size of the predicted grid (Build "
                "training grid)."
                if id_field == CELL_ID
                else f"label the polygons of the predicted grid, with their {id_field} (ID_FIELD)."
            ),
        )
    poor = np.where(covered, np.nan_to_num(labels) * heads, 0.0)
    in_truth_selected = selected & covered
    measured = coverage_rates(
        float(poor[in_truth_selected].sum()),
        float(poor.sum()),
        float(heads[in_truth_selected].sum()),
    )
    expected_here = coverage_rates(
        float(np.nansum(expected[in_truth_selected])),
        float(np.nansum(expected[covered])),
        float(heads[in_truth_selected].sum()),
    )
    curves = _measured_curves(area, labels, covered, poor, options.rank_by)
    notes = []
    if int((covered & ~selected).sum()) == 0 or int(in_truth_selected.sum()) == 0:
        notes.append(
            "TRUTH covers only selected or only unselected cells: one of the measured errors is "
            "undefined or trivial."
        )
    result = {
        "truth_cells": int(covered.sum()),
        "truth_cells_selected": int(in_truth_selected.sum()),
        "truth_poor_cells": int(np.nansum(labels[covered])),
        "truth_without_prediction": int((~truth[id_field].isin(ids[predicted])).sum()),
        "measured": measured,
        "expected_on_truth_cells": expected_here,
        "budget_point": {
            "x": float(cost[in_truth_selected].sum() / cost[covered].sum())
            if cost[covered].sum() > 0
            else None,
            "y": measured["coverage"],
        },
        "notes": notes,
    }
    return result, curves


def _measured_curves(
    area: Any, labels: pd.DataFrame, covered: np.ndarray, poor: np.ndarray, rank_by: str
) -> dict[str, Any]:
    """Targeting curves judged by the TRUTH labels (``poor``: the poor people or cells of
    each cell TRUTH ``covered``), with district targeting by the TRUTH survey's rates."""
    import numpy as np

    probability, expected, heads = area.probability, area.expected, area.heads
    cost, codes, predicted, ids = area.cost, area.codes, area.predicted, area.ids
    curves = {
        "model": curve(ranking(probability, expected, ids, covered, rank_by), cost, poor),
        "random": [[0.0, 1.0], [0.0, 1.0]],
        "district": _district_curve(
            district_order(codes, probability, heads, predicted, covered)[0], codes, cost, poor
        ),
        "district_survey": _district_curve(
            district_order(codes, np.nan_to_num(labels), heads, covered)[0], codes, cost, poor
        ),
    }
    if "prob_baseline" in area.cells:
        baseline = area.cells["prob_baseline"].to_numpy(dtype="float64")
        usable = covered & np.isfinite(baseline)
        curves["baseline"] = curve(
            ranking(baseline, baseline * heads, ids, usable, rank_by), cost, poor
        )
    return curves
