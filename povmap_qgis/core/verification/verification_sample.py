"""Draw a verification sample (pipeline step 10a, runs in the worker).

From a prediction layer (or a targeting output), a stratified random sample of
cells to visit (``design.py``: strata, allocation, the draw, its record), written
as a GeoPackage of the sampled cells with their stratum, inclusion probability,
weight, the map's ``prob_mean``/``pred``, the centre's latitude/longitude and
empty visit fields (``observed_poor``, ``households_visited``,
``households_poor``, ``visit_date``, ``notes``) — one layer, so QGIS opens it
without asking which; the table of strata (cells, drawn, inclusion probability,
weight) travels inside the same GeoPackage in the layer's design metadata — and an XLSForm for ODK Collect / KoBoToolbox
(``xlsform.py``). The QField project is built by the Processing adapter (QGIS).

Cells never drawn: without a prediction (empty ``prob_mean`` or ``pred``),
flagged for too much nodata (``chip_flagged = 1``), and, with POPULATION, cells
where nobody lives. They are not part of the sampled population: the estimates
describe the other cells, and the report says how many were left out.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
from typing import TYPE_CHECKING, Any

from ..atomic import atomic_output, check_output_path
from ..errors import PovmapInputError
from ..progress import Reporter
from . import design

if TYPE_CHECKING:
    import geopandas
    import numpy as np
    import pandas as pd


VISIT_FIELDS = ("observed_poor", "households_visited", "households_poor", "visit_date", "notes")
DEFAULT_HALF_WIDTH = 0.08


@dataclasses.dataclass
class VerificationSampleOptions:
    predictions_path: str
    output_path: str  # GeoPackage: the sampled cells + the strata table
    form_path: str | None = None  # XLSForm (.xlsx)
    predictions_layer: str | None = None
    id_field: str | None = None  # None: the one Predict poverty recorded, else cell_id
    population_path: str | None = None
    sample_size: int | None = None
    target_half_width: float | None = None  # of the overall accuracy's 95 % interval
    min_distance: float | None = None  # between the centres of drawn cells, metres
    seed: int = 0
    style_qml_path: str | None = None


def verification_sample(
    options: VerificationSampleOptions, reporter: Reporter | None = None
) -> dict[str, Any]:
    """Draw the sample and write OUTPUT (and FORM); return a summary."""
    import numpy as np

    from ..decision.prediction_layer import read_predictions

    reporter = reporter or Reporter()
    _check_options(options)
    # no ID_FIELD parameter in this step (options.id_field is for scripts)
    cells, layer, _, id_field = read_predictions(
        options, keep_targeting_fields=True, id_parameter=None
    )
    reporter.progress(10)
    if "pred" not in cells:
        raise PovmapInputError(
            "PREDICTIONS",
            f"the layer '{layer}' has no pred field (the predicted class); use the layer written "
            "by Predict poverty or by Target a budget.",
        )
    eligible, left_out, people = _eligible(options, cells, reporter)
    pool = cells[eligible].reset_index(drop=True)
    if people is not None:
        people = people[eligible]
    targeting = "selected" in pool
    width = (
        (pool["prob_high"] - pool["prob_low"]).to_numpy(dtype="float64")
        if {"prob_low", "prob_high"} <= set(pool.columns) and not targeting
        else None
    )
    predicted = pool["pred"].to_numpy(dtype="int64")
    strata = design.strata_labels(
        predicted, width, pool["selected"].to_numpy(dtype="int64") if targeting else None
    )
    sizes = {str(name): int(np.sum(strata == name)) for name in np.unique(strata)}
    size, size_note = _sample_size(options, pool, predicted)
    allocation = design.allocate(sizes, size)
    centres = _centres(pool)
    reporter.progress(30)
    chosen, drawn = design.draw(strata, allocation, options.seed, centres, options.min_distance)
    reporter.check_canceled()
    notes = list(left_out["notes"]) + ([size_note] if size_note else [])
    for name in sorted(drawn):
        if drawn[name] < allocation[name]:
            notes.append(
                f"Stratum {name}: {drawn[name]} of {allocation[name]} cells drawn; the others lie "
                f"closer than MIN_DISTANCE ({options.min_distance:g}) to a drawn cell."
            )
    if sum(allocation.values()) > size:
        notes.append(
            f"{sum(allocation.values())} cells drawn instead of {size}: every stratum gets at "
            f"least {design.MIN_PER_STRATUM} cells (or all of its cells)."
        )
    for note in notes:
        reporter.warning(note)
    table = _strata_table(sizes, drawn, strata, people)
    sample = _sample_frame(pool, chosen, strata, table, id_field, people)
    reporter.progress(60)
    record = design.design_record(
        table,
        options.seed,
        id_field,
        {
            "kind": "targeting"
            if targeting
            else ("class_uncertainty" if width is not None else "class"),
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "predictions": os.path.abspath(options.predictions_path),
            "population": os.path.abspath(options.population_path)
            if options.population_path
            else "",
            "cells": int(len(pool)),
            "sampled": int(len(sample)),
            "left_out": left_out["counts"],
            "map_poor_share": float(np.mean(predicted == 1)),
            "map_poor_people_share": (
                float(np.sum(people * (predicted == 1)) / np.sum(people))
                if people is not None
                else None
            ),
            "map_selected_share": float(pool["selected"].mean()) if targeting else None,
            "requested_sample_size": options.sample_size,
            "target_half_width": options.target_half_width,
            "min_distance": options.min_distance,
            "minimum_per_stratum": design.MIN_PER_STRATUM,
            "sample_sha256": design.sample_digest(
                sample[id_field], sample["stratum"], sample["weight"]
            ),
        },
    )
    _write_outputs(options, sample, table, record, id_field, layer)
    reporter.progress(100)
    summary = {
        "output": os.path.abspath(options.output_path),
        "form": os.path.abspath(options.form_path) if options.form_path else None,
        "id_field": id_field,
        "cells": int(len(pool)),
        "sampled": int(len(sample)),
        "strata": table,
        "kind": record["kind"],
        "notes": notes,
    }
    for row in table:
        reporter.info(
            f"Stratum {row['stratum']}: {row['sampled']} of {row['cells']} cells drawn "
            f"(weight {row['weight']:.3g})"
        )
    reporter.info(
        f"{summary['sampled']} cells drawn from {summary['cells']} in {len(table)} strata"
        + (f"; form: {summary['form']}" if summary["form"] else "")
    )
    return summary


def _check_options(options: VerificationSampleOptions) -> None:
    check_output_path(options.output_path, "OUTPUT")
    if options.form_path:
        check_output_path(options.form_path, "FORM", (".xlsx",))
    if options.sample_size is not None and options.sample_size < 2:
        raise PovmapInputError(
            "SAMPLE_SIZE", f"{options.sample_size} cells cannot give an interval; give at least 2."
        )
    if options.target_half_width is not None and not 0 < options.target_half_width < 0.5:
        raise PovmapInputError(
            "TARGET_HALF_WIDTH",
            f"{options.target_half_width} is not a half-width of a 95 % interval of an accuracy; "
            "give a number between 0 and 0.5 (0.05 = ± 5 points).",
        )
    if options.min_distance is not None and options.min_distance < 0:
        raise PovmapInputError("MIN_DISTANCE", "give a distance of 0 or more (metres).")


def _eligible(
    options: VerificationSampleOptions, cells: geopandas.GeoDataFrame, reporter: Reporter
) -> tuple[np.ndarray, dict[str, Any], np.ndarray | None]:
    """(mask of the cells that may be drawn, {"counts", "notes"}, people per cell or None)."""
    import numpy as np

    mask = cells["prob_mean"].notna().to_numpy() & cells["pred"].notna().to_numpy()
    counts = {"no_prediction": int((~mask).sum())}
    notes = []
    if counts["no_prediction"]:
        notes.append(f"{counts['no_prediction']} cells without a prediction are never drawn.")
    if "chip_flagged" in cells:
        flagged = cells["chip_flagged"].fillna(0).to_numpy() == 1
        counts["flagged_nodata"] = int((flagged & mask).sum())
        mask &= ~flagged
        if counts["flagged_nodata"]:
            notes.append(
                f"{counts['flagged_nodata']} cells flagged for too much nodata (chip_flagged) "
                "are never drawn."
            )
    people = None
    if options.population_path:
        from ..grid.population import cell_population

        reporter.info("Summing the population raster per cell…")
        people, _ = cell_population(
            cells.geometry, options.population_path, "POPULATION", reporter.stage(10, 25)
        )
        empty = ~(people > 0)
        counts["nobody"] = int((empty & mask).sum())
        mask &= ~empty
        if counts["nobody"]:
            notes.append(
                f"{counts['nobody']} cells where nobody lives (POPULATION) are never drawn."
            )
    if mask.sum() < 2:
        raise PovmapInputError(
            "PREDICTIONS",
            f"only {int(mask.sum())} cells can be drawn (predicted, not flagged"
            + (", with people" if options.population_path else "")
            + "); a sample needs more.",
        )
    return (
        mask,
        {"counts": counts, "notes": notes},
        (np.asarray(people) if people is not None else None),
    )


def _sample_size(
    options: VerificationSampleOptions, pool: pd.DataFrame, predicted: np.ndarray
) -> tuple[int, str | None]:
    """(cells to draw, a note or None)."""
    if options.sample_size is not None:
        if options.target_half_width is not None:
            return options.sample_size, ("SAMPLE_SIZE is given: TARGET_HALF_WIDTH is not used.")
        return min(options.sample_size, len(pool)), None
    half_width = options.target_half_width or DEFAULT_HALF_WIDTH
    expected = design.expected_accuracy(pool["prob_mean"].to_numpy(), predicted)
    size = design.sample_size_for_half_width(half_width, expected, len(pool))
    return size, (
        f"{size} cells for a 95 % interval of ± {half_width:g} on an overall accuracy near "
        f"{expected:.2f} (what the calibrated probabilities expect)."
    )


def _centres(pool: geopandas.GeoDataFrame) -> np.ndarray:
    """Cell centres in metres ([n, 2]): the layer's CRS, or its UTM zone when it is geographic."""
    import numpy as np

    frame = pool
    if frame.crs is not None and frame.crs.is_geographic:
        frame = frame.to_crs(frame.estimate_utm_crs())
    centroids = frame.geometry.centroid
    return np.column_stack([centroids.x.to_numpy(), centroids.y.to_numpy()])


def _strata_table(
    sizes: dict[str, int], drawn: dict[str, int], strata: np.ndarray, people: np.ndarray | None
) -> list[dict[str, Any]]:
    import numpy as np

    table = []
    for name in sorted(sizes):
        row = {
            "stratum": name,
            "cells": sizes[name],
            "sampled": drawn[name],
            "inclusion_probability": drawn[name] / sizes[name],
            "weight": sizes[name] / drawn[name] if drawn[name] else None,
        }
        if people is not None:
            row["people"] = float(np.sum(people[strata == name]))
        table.append(row)
    return table


def _sample_frame(
    pool: geopandas.GeoDataFrame,
    chosen: np.ndarray,
    strata: np.ndarray,
    table: list[dict[str, Any]],
    id_field: str,
    people: np.ndarray | None,
) -> geopandas.GeoDataFrame:
    import pandas

    rows = {row["stratum"]: row for row in table}
    sample = pool.iloc[chosen].copy()
    sample["stratum"] = strata[chosen].astype(str)
    sample["inclusion_probability"] = [
        rows[name]["inclusion_probability"] for name in sample["stratum"]
    ]
    sample["weight"] = [rows[name]["weight"] for name in sample["stratum"]]
    if people is not None:
        sample["population"] = people[chosen]
    centres = (
        sample.geometry.centroid.to_crs("EPSG:4326") if sample.crs else sample.geometry.centroid
    )
    sample["lat"], sample["lon"] = centres.y.round(7), centres.x.round(7)
    keep = [id_field] + [
        field
        for field in (
            "district",
            "prob_mean",
            "prob_raw",
            "prob_low",
            "prob_high",
            "pred",
            "selected",
            "population",
        )
        if field in sample and field != id_field
    ]
    sample = sample[keep + ["stratum", "inclusion_probability", "weight", "lat", "lon", "geometry"]]
    for field in ("observed_poor", "households_visited", "households_poor"):
        sample[field] = pandas.array([None] * len(sample), dtype="Int32")
    for field in ("visit_date", "notes"):
        sample[field] = pandas.array([None] * len(sample), dtype="string")
    return sample.sort_values(["stratum", id_field]).reset_index(drop=True)


def _write_outputs(
    options: VerificationSampleOptions,
    sample: geopandas.GeoDataFrame,
    table: list[dict[str, Any]],
    record: dict[str, Any],
    id_field: str,
    layer: str,
) -> None:
    """OUTPUT (sample + strata) and FORM: both appear, or neither."""
    import contextlib

    import pyogrio

    from ..geopackage import layer_name_for, read_styles, styled_output, styles_metadata
    from ..names import ID_FIELD_METADATA
    from .xlsform import write_xlsform

    name = layer_name_for(options.output_path)
    styles = read_styles(options.style_qml_path, "povmap verification sample")
    metadata = {
        design.DESIGN_METADATA: json.dumps(record),
        ID_FIELD_METADATA: id_field,
        **styles_metadata(styles),
    }
    with contextlib.ExitStack() as stack:
        partial = stack.enter_context(styled_output(options.output_path, styles))
        form_partial = (
            stack.enter_context(atomic_output(options.form_path)) if options.form_path else None
        )
        pyogrio.write_dataframe(sample, partial, layer=name, driver="GPKG", layer_metadata=metadata)
        if form_partial:
            cells = [
                (
                    int(row[id_field]),
                    f"{int(row[id_field])}"
                    + (f" ({row['district']})" if "district" in sample and row["district"] else ""),
                    float(row["lat"]),
                    float(row["lon"]),
                )
                for _, row in sample.iterrows()
            ]
            write_xlsform(
                form_partial,
                cells,
                id_field,
                f"Verification visit ({layer})",
                f"povmap_verification_{record['sample_sha256'][:8]}",
                record["created"].replace("-", "").replace(":", "")[:13],
            )
