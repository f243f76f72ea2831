"""Survey points → labelled 1 km cells (pipeline step 1).

Cleaning follows the paper: drop score 0 (data-entry errors), GPS accuracy
worse than a threshold, surveys before a date, points in urban centres and
points outside the districts. Cells keep the median score of their
households; cells with fewer than ``min_obs`` households are dropped for
privacy, cells with ``max_obs`` or more as de-facto urban.

Household points never leave this module and ``survey_points.py`` (where they lie, in which
district, swapped coordinates): only cell aggregates are written.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import labels, vectors
from ..errors import PovmapInputError
from ..geopackage import GRID_FORMAT_VERSION, write_layer
from ..names import DEFAULT_CELL_SIZE
from ..progress import Reporter
from . import cells
from .survey_points import (
    check_axis_order,
    districts_of_points,
    lonlat,
    points_in_polygons,
    transform_points,
    warn_far_points,
)

if TYPE_CHECKING:
    import geopandas
    import pandas as pd


@dataclasses.dataclass
class TrainingGridOptions:
    points_path: str
    score_field: str
    output_path: str
    points_layer: str | None = None
    cell_size: float = DEFAULT_CELL_SIZE
    cutoff: float = 19.0
    poor_below: bool = True
    min_obs: int = 3
    max_obs: int = 300
    drop_zero: bool = True
    accuracy_field: str | None = None
    max_accuracy: float = 20.0
    date_field: str | None = None
    min_date: str | None = None
    urban_path: str | None = None
    urban_layer: str | None = None
    districts_path: str | None = None
    districts_layer: str | None = None
    district_field: str | None = None
    crs: str | None = None
    style_qml_path: str | None = None
    household_field: str | None = None  # each household's id: MIN_OBS counts distinct ids


MIN_OBS_FLOOR = 3  # below it one household's score could be read or derived (docs/privacy.md)


COUNT_KEYS = (
    "points_read",
    "dropped_no_geometry",
    "dropped_null_score",
    "dropped_zero",
    "dropped_inaccurate",
    "dropped_too_early",
    "dropped_urban",
    "dropped_outside_districts",
    "points_kept",
    "cells_under_min_obs",
    "cells_over_max_obs",
    "cells_kept",
    "poor_cells",
)


def build_training_grid(
    options: TrainingGridOptions, reporter: Reporter | None = None
) -> dict[str, Any]:
    """Build the labelled grid at ``options.output_path``; return the counts."""
    reporter = reporter or Reporter()
    started = time.monotonic()
    _check_options(options)
    counts: dict[str, Any] = dict.fromkeys(COUNT_KEYS, 0)

    info = vectors.layer_info(options.points_path, options.points_layer, "INPUT")
    if info.get("features") == 0:
        raise PovmapInputError(
            "INPUT", f"the layer '{options.points_layer or options.points_path}' is empty."
        )
    vectors.require_geometry(
        info, options.points_path, options.points_layer, "INPUT", ("Point", "MultiPoint")
    )
    columns = _checked_columns(info, options)

    reporter.info("Reading household points…")
    x, y, table, points_crs = vectors.read_points(
        options.points_path, options.points_layer, columns
    )
    counts["points_read"] = len(x)
    if not len(x):
        raise PovmapInputError(
            "INPUT", f"the layer '{options.points_layer or options.points_path}' is empty."
        )
    reporter.progress(20)
    reporter.check_canceled()

    keep = _clean_attributes(x, table, options, counts, reporter)
    lon, lat = lonlat(x[keep], y[keep], points_crs)
    far = cells.far_points(lon, lat) if len(lon) else np.zeros(0, dtype=bool)
    centre = cells.robust_centre(lon, lat) if len(lon) else (0.0, 0.0)
    if far.any():
        warn_far_points(np.flatnonzero(keep)[far], lon[far], lat[far], centre, reporter)
    near = ~far
    bounds = (
        (lon[near].min(), lat[near].min(), lon[near].max(), lat[near].max())
        if near.any()
        else (0.0, 0.0, 0.0, 0.0)
    )
    grid_crs, crs_note = cells.working_crs(options.crs, bounds, centre=centre)
    reporter.info(crs_note)
    gx, gy = transform_points(x[keep], y[keep], points_crs, grid_crs)
    reporter.progress(35)
    reporter.check_canceled()

    kept_index = np.flatnonzero(keep)
    inside_urban, _ = points_in_polygons(
        gx, gy, options.urban_path, options.urban_layer, "URBAN", grid_crs, None, reporter
    )
    if inside_urban is not None:
        outside = inside_urban < 0
        counts["dropped_urban"] = int((~outside).sum())
        kept_index, gx, gy = kept_index[outside], gx[outside], gy[outside]
    reporter.progress(55)
    reporter.check_canceled()

    districts, district_polygons = districts_of_points(gx, gy, options, grid_crs, reporter)
    check_axis_order(x[keep], y[keep], points_crs, district_polygons, options, reporter)
    if options.crs and len(lon):
        cells.check_crs_suits(grid_crs, centre, options.cell_size, reporter.warning)
    if districts is not None:
        inside = districts != None  # noqa: E711 (element-wise on an object array)
        counts["dropped_outside_districts"] = int((~inside).sum())
        if counts["dropped_outside_districts"]:
            reporter.warning(
                f"{counts['dropped_outside_districts']} household(s) fall outside every polygon of DISTRICTS and were dropped."
            )
        kept_index, gx, gy, districts = (
            kept_index[inside],
            gx[inside],
            gy[inside],
            districts[inside],
        )
    counts["points_kept"] = len(kept_index)
    if not len(kept_index):
        raise PovmapInputError(
            "INPUT",
            "no household is left after cleaning ("
            + _cleaning_sentence(counts)
            + "); check the cleaning parameters (MAX_ACCURACY, MIN_DATE, URBAN, DISTRICTS).",
        )
    reporter.progress(70)
    reporter.check_canceled()

    first = _first_row_of_each_household(x, y, table, kept_index, options)
    if len(first) < len(kept_index):
        by = (
            f"the same HOUSEHOLD_FIELD '{options.household_field}'"
            if options.household_field
            else "identical coordinates and score"
        )
        reporter.warning(
            f"INPUT: {len(kept_index) - len(first)} row(s) repeat a household already read ({by}) "
            "and were counted once: MIN_OBS and MAX_OBS count households, not rows."
        )
        kept_index, gx, gy = kept_index[first], gx[first], gy[first]
        districts = districts[first] if districts is not None else None
    scores = np.asarray(table[options.score_field], dtype="float64")[kept_index]
    grid = _aggregate_cells(gx, gy, scores, districts, options, counts)
    if grid.empty:
        raise PovmapInputError(
            "MIN_OBS",
            f"no cell has at least {options.min_obs} and fewer than {options.max_obs or 'unlimited'} households ({counts['cells_under_min_obs']} cells under MIN_OBS, {counts['cells_over_max_obs']} at or over MAX_OBS); lower MIN_OBS only if privacy allows, or use a larger CELL_SIZE.",
        )
    reporter.progress(85)
    reporter.check_canceled()

    frame = _cells_frame(grid, options.cell_size, grid_crs)
    write_layer(
        frame,
        options.output_path,
        options.style_qml_path,
        "povmap training grid",
        metadata={
            "povmap_grid_kind": "training",
            "povmap_grid_format": GRID_FORMAT_VERSION,
            "cell_size": options.cell_size,
            "cutoff": options.cutoff,
            "poor_below": options.poor_below,
            "min_obs": options.min_obs,
            "max_obs": options.max_obs,
        },
    )
    reporter.progress(100)
    counts["crs"] = cells.crs_to_string(grid_crs)
    counts["seconds"] = round(time.monotonic() - started, 3)
    reporter.info(f"Cleaning: {_cleaning_sentence(counts)}.")
    reporter.info(
        f"Cells: {counts['cells_kept']} kept ({counts['poor_cells']} poor), {counts['cells_under_min_obs']} under MIN_OBS={options.min_obs} and {counts['cells_over_max_obs']} at or over MAX_OBS={options.max_obs} dropped."
    )
    return counts


def _check_options(options: TrainingGridOptions) -> None:
    cells.check_cell_size(options.cell_size)
    if (
        options.min_obs is None
        or options.min_obs < MIN_OBS_FLOOR
        or int(options.min_obs) != options.min_obs
    ):
        raise PovmapInputError(
            "MIN_OBS",
            f"the minimum number of households per cell must be a whole number of at least "
            f"{MIN_OBS_FLOOR} (got {options.min_obs}): in a cell of one household its label is "
            "that household's poverty, and in a cell of two each household can work out the "
            "other's score from the cell's median and its own. Use 3 or more.",
        )
    if options.max_obs and options.max_obs <= options.min_obs:
        raise PovmapInputError(
            "MAX_OBS",
            f"MAX_OBS ({options.max_obs}) must be larger than MIN_OBS ({options.min_obs}), or 0 for no maximum.",
        )
    if options.max_obs is not None and options.max_obs < 0:
        raise PovmapInputError("MAX_OBS", "MAX_OBS must be 0 (no maximum) or a positive number.")
    if options.district_field and not options.districts_path:
        raise PovmapInputError("DISTRICTS", "DISTRICT_FIELD was given without a DISTRICTS layer.")
    if options.districts_path and not options.district_field:
        raise PovmapInputError(
            "DISTRICT_FIELD", "choose the field of DISTRICTS that holds the district name."
        )
    if options.cutoff is None or not np.isfinite(options.cutoff):
        raise PovmapInputError(
            "CUTOFF",
            f"the poverty line must be a finite number (got {options.cutoff}): with it every "
            "cell would be labelled not poor.",
        )
    if options.min_date and not options.date_field:
        raise PovmapInputError(
            "MIN_DATE",
            f"MIN_DATE ({options.min_date}) needs DATE_FIELD, the field holding each "
            "household's survey date; choose it, or clear MIN_DATE.",
        )
    if options.min_date:
        _parse_min_date(options.min_date)


def _checked_columns(info: dict[str, Any], options: TrainingGridOptions) -> list[str]:
    path, layer = options.points_path, options.points_layer
    columns = [options.score_field]
    vectors.require_field(info, options.score_field, path, layer, "SCORE_FIELD", numeric=True)
    if options.accuracy_field:
        vectors.require_field(
            info, options.accuracy_field, path, layer, "ACCURACY_FIELD", numeric=True
        )
        columns.append(options.accuracy_field)
    if options.date_field:
        dtype = vectors.require_field(info, options.date_field, path, layer, "DATE_FIELD")
        if dtype.startswith(vectors.NUMERIC_DTYPES):
            raise PovmapInputError(
                "DATE_FIELD",
                f"the field '{options.date_field}' is {dtype}, not a date; choose a date or text (YYYY-MM-DD) field.",
            )
        columns.append(options.date_field)
    if options.household_field:
        vectors.require_field(info, options.household_field, path, layer, "HOUSEHOLD_FIELD")
        columns.append(options.household_field)
    return list(dict.fromkeys(columns))


ODD_SCORE_SPREADS = 20.0  # beyond this many robust spreads from the median: not a score


def _warn_odd_scores(scores: np.ndarray, options: TrainingGridOptions, reporter: Reporter) -> None:
    """Warn, naming SCORE_FIELD, about scores far outside the others (more than 20 robust
    spreads from the median, e.g. 1e308 among poverty scores of 0 to 100) or negative among
    scores that are otherwise not (under 5 % of them, e.g. -50 or -99): typing errors or
    missing-value codes counted as scores."""
    if len(scores) < 3:
        return
    centre = float(np.median(scores))
    spread = 1.4826 * float(np.median(np.abs(scores - centre)))
    reach = ODD_SCORE_SPREADS * max(spread, 1e-9 * max(1.0, abs(centre)))
    odd = np.abs(scores - centre) > reach
    negative = scores < 0
    if negative.mean() < 0.05:  # a few negatives among scores that are otherwise never below 0
        odd |= negative
    if not odd.any():
        return
    values = ", ".join(f"{value:g}" for value in np.unique(scores[odd])[:5])
    reporter.warning(
        f"SCORE_FIELD: {int(odd.sum())} household(s) have scores far outside the others "
        f"(median {centre:g}; e.g. {values}): typing errors or missing-value codes (-99, 9999) "
        "read as scores? They are used as scores and move their cells' medians: correct them "
        "or set them to NULL (then they are skipped)."
    )


def _parse_min_date(text: Any) -> pd.Timestamp:
    import pandas

    try:
        return pandas.Timestamp(str(text)[:10])
    except (ValueError, TypeError):
        raise PovmapInputError(
            "MIN_DATE", f"'{text}' is not a date; write it as YYYY-MM-DD."
        ) from None


def _clean_attributes(
    x: np.ndarray,
    table: dict[str, np.ndarray],
    options: TrainingGridOptions,
    counts: dict[str, Any],
    reporter: Reporter,
) -> np.ndarray:
    """Mask of points kept by the attribute rules; each drop counted once."""
    import pandas

    keep = np.isfinite(x)
    counts["dropped_no_geometry"] = int((~keep).sum())

    scores = pandas.to_numeric(pandas.Series(table[options.score_field]), errors="coerce").to_numpy(
        dtype="float64"
    )
    null_score = keep & ~np.isfinite(scores)
    counts["dropped_null_score"] = int(null_score.sum())
    keep &= ~null_score
    if counts["dropped_null_score"]:
        reporter.warning(
            f"{counts['dropped_null_score']} household(s) have no value in SCORE_FIELD '{options.score_field}' and were skipped."
        )

    _warn_odd_scores(scores[keep], options, reporter)
    if options.drop_zero:
        zero = keep & (scores == 0)
        counts["dropped_zero"] = int(zero.sum())
        keep &= ~zero

    if options.accuracy_field:
        accuracy = pandas.to_numeric(
            pandas.Series(table[options.accuracy_field]), errors="coerce"
        ).to_numpy(dtype="float64")
        # Unknown accuracy cannot be shown to be good enough: dropped with the inaccurate.
        inaccurate = keep & ~(accuracy <= options.max_accuracy)
        counts["dropped_inaccurate"] = int(inaccurate.sum())
        keep &= ~inaccurate

    if options.date_field and options.min_date:
        minimum = _parse_min_date(options.min_date)
        dates = pandas.to_datetime(pandas.Series(table[options.date_field]), errors="coerce")
        early = keep & ~(dates >= minimum).to_numpy()
        counts["dropped_too_early"] = int(early.sum())
        keep &= ~early
        undated = int((keep | early)[dates.isna().to_numpy()].sum())
        if undated:
            reporter.warning(
                f"{undated} household(s) have no readable date in DATE_FIELD '{options.date_field}'; they were dropped with those surveyed before MIN_DATE."
            )
    return keep


def _first_row_of_each_household(
    x: np.ndarray,
    y: np.ndarray,
    table: dict[str, np.ndarray],
    kept_index: np.ndarray,
    options: TrainingGridOptions,
) -> np.ndarray:
    """Positions (into ``kept_index``) of each household's first row.

    A household is its ``household_field`` value when one is given (rows without one count
    as their own households); otherwise rows with identical coordinates *and* score are one
    household read twice (a duplicated row). Coordinates alone would merge the different
    households of a survey that records one position per cluster (DHS-style displaced
    cluster coordinates).
    """
    import pandas

    if options.household_field:
        ids = pandas.Series(table[options.household_field]).iloc[kept_index].reset_index(drop=True)
        keys = ids.astype(str).where(ids.notna(), other=[f"\0row{i}" for i in range(len(ids))])
        repeated = keys.duplicated().to_numpy()
    else:
        # Only rows whose x is shared can repeat a household (GPS positions rarely share one):
        # one hash of x, then the three columns of those few rows.
        xs = x[kept_index]
        candidates = np.flatnonzero(pandas.Series(xs).duplicated(keep=False).to_numpy())
        repeated = np.zeros(len(kept_index), dtype="bool")
        if len(candidates):
            scores = np.asarray(table[options.score_field], dtype="float64")[kept_index]
            repeated[candidates] = (
                pandas.DataFrame(
                    {
                        "x": xs[candidates],
                        "y": y[kept_index][candidates],
                        "score": scores[candidates],
                    }
                )
                .duplicated()
                .to_numpy()
            )
    return np.flatnonzero(~repeated)


def _aggregate_cells(
    x: np.ndarray,
    y: np.ndarray,
    scores: np.ndarray,
    districts: np.ndarray | None,
    options: TrainingGridOptions,
    counts: dict[str, Any],
) -> pd.DataFrame:
    """Per cell: household count, median score, majority district, label."""
    import pandas

    rows, cols = cells.cell_rows_cols(x, y, options.cell_size)
    households = pandas.DataFrame({"cell_id": cells.encode_cell_ids(rows, cols), "score": scores})
    grouped = households.groupby("cell_id", sort=True)["score"]
    grid = pandas.DataFrame({"n_obs": grouped.size(), "median_score": grouped.median()})
    if districts is not None:
        households["district"] = districts
        # The district where most of the cell's households live (ties: alphabetical).
        per_district = (
            households.groupby(["cell_id", "district"]).size().rename("households").reset_index()
        )
        per_district = per_district.sort_values(
            ["cell_id", "households", "district"], ascending=[True, False, True]
        )
        grid["district"] = per_district.drop_duplicates("cell_id").set_index("cell_id")["district"]
    else:
        grid["district"] = None

    under = grid["n_obs"] < options.min_obs
    over = (
        (grid["n_obs"] >= options.max_obs) if options.max_obs else np.zeros(len(grid), dtype=bool)
    )
    counts["cells_under_min_obs"] = int(under.sum())
    counts["cells_over_max_obs"] = int((over & ~under).sum())
    grid = grid[~under & ~over]
    grid = grid.assign(
        label=labels.poor_labels(grid["median_score"], options.cutoff, options.poor_below)
    )
    counts["cells_kept"] = len(grid)
    counts["poor_cells"] = int(grid["label"].sum())
    return grid


def _cells_frame(grid: pd.DataFrame, cell_size: float, grid_crs: Any) -> geopandas.GeoDataFrame:
    import geopandas

    rows, cols = cells.decode_cell_ids(grid.index.to_numpy())
    return geopandas.GeoDataFrame(
        {
            "cell_id": grid.index.to_numpy(dtype="int64"),
            "district": grid["district"].to_numpy(dtype=object),
            "n_obs": grid["n_obs"].to_numpy(dtype="int32"),
            "median_score": grid["median_score"].to_numpy(dtype="float64"),
            "label": grid["label"].to_numpy(dtype="int32"),
        },
        geometry=cells.cell_boxes(rows, cols, cell_size),
        crs=grid_crs,
    )


def _cleaning_sentence(counts: dict[str, Any]) -> str:
    return (
        f"{counts['points_read']} households read; dropped {counts['dropped_no_geometry']} without geometry, "
        f"{counts['dropped_null_score']} with no score, {counts['dropped_zero']} with score 0, "
        f"{counts['dropped_inaccurate']} with poor GPS accuracy, {counts['dropped_too_early']} surveyed too early, "
        f"{counts['dropped_urban']} in urban centres, {counts['dropped_outside_districts']} outside the districts; "
        f"{counts['points_kept']} kept"
    )
