"""What target writes: OUTPUT (the cells with rank, selected, population, expected_poor), the
ALLOCATION CSV, the figures, and the settings the summary records (runs in the worker)."""

from __future__ import annotations  # imported inside QGIS too (with targeting.py)

import json
import math
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..names import ID_FIELD_METADATA
from .prediction_layer import (
    TARGETING_FIELDS,
    district_names,
    prediction_geometry_type,
    prediction_windows,
)
from .selection import ALLOCATION_COLUMNS
from .targeting_report import targeting_curve_figure

if TYPE_CHECKING:
    import pandas as pd

    from .targeting import TargetOptions


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


def allocation_csv_value(column: str, value: Any) -> Any:
    """One ALLOCATION CSV cell: empty for None, rounded as CSV_DECIMALS says."""
    if value is None:
        return ""
    decimals = CSV_DECIMALS.get(column)
    if decimals is None or not isinstance(value, float) or not math.isfinite(value):
        return value
    return int(round(value)) if decimals == 0 else round(value, decimals)


def write_outputs(
    options: TargetOptions,
    cells: pd.DataFrame,
    allocation: list[dict[str, Any]],
    summary: dict[str, Any],
    id_field: str,
) -> None:
    """OUTPUT (one layer: the cells) and the ALLOCATION CSV: both appear, or neither.

    ``cells``: the prediction layer's fields (no polygons) with targeting's added
    (``TARGETING_FIELDS``, ``targeting._mark_cells``); the layer is read again window by window for its polygons and
    written window by window (``vectors.WINDOW_CELLS``: memory holds one window).
    The allocation is not a second table in OUTPUT's GeoPackage: QGIS asks which layers to
    add for a GeoPackage of two (drop, Browser, Data Source Manager)."""
    import numpy as np

    from ..geopackage import write_layer_with_table

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
    added = [field for field in TARGETING_FIELDS if field in cells]
    ids = cells[id_field].to_numpy(dtype="int64")

    def windows() -> Iterator[pd.DataFrame]:
        for start, frame in prediction_windows(options, id_field, len(cells)):
            stop = start + len(frame)
            if not np.array_equal(frame[id_field].to_numpy(dtype="int64"), ids[start:stop]):
                raise RuntimeError("PREDICTIONS changed while targeting; run again")
            for field in added:
                frame[field] = cells[field].iloc[start:stop].array  # Int64 rank: empty stays empty
            yield frame
            del frame  # one window in memory at a time

    write_layer_with_table(
        windows(),
        options.output_path,
        options.style_qml_path,
        "povmap selection",
        metadata,
        options.allocation_path,
        ALLOCATION_COLUMNS,
        ([allocation_csv_value(key, row[key]) for key in ALLOCATION_COLUMNS] for row in allocation),
        geometry_type=prediction_geometry_type(options),
    )


def write_figures(
    folder: str,
    summary: dict[str, Any],
    options: TargetOptions,
    identified: tuple[pd.DataFrame, str],
) -> dict[str, str]:
    """The targeting curve PNG and the district outlines (GeoPackage) for the map; {name: path}.

    ``identified``: (the prediction layer's cells, their id field); the outlines dissolve the
    cells' polygons window by window, then the windows' pieces of each district."""
    import pandas

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
    cells, id_field = identified
    if "district" in cells:
        pieces = []
        for _, frame in prediction_windows(options, id_field, len(cells), columns=["district"]):
            frame["district"] = district_names(frame)
            pieces.append(frame.dissolve(by="district", as_index=False))
        dissolved = pandas.concat(pieces).dissolve(by="district", as_index=False)
        path = os.path.join(folder, "districts.gpkg")
        dissolved.to_file(path, engine="pyogrio")
        figures["districts"] = os.path.abspath(path)
    return figures


def settings_record(
    options: TargetOptions, metadata: dict[str, Any], id_field: str
) -> dict[str, Any]:
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
