"""Accuracy from the verification (pipeline step 10b, runs in the worker).

The sample drawn by ``verification_sample`` plus what came back from the field
(``returns.py``) → design-based estimates with 95 % intervals
(``estimators.py``): overall accuracy, user's and producer's accuracy of
"poor" (precision and recall), the share of poor cells and, with people per
cell, of poor people, the map's bias (its own share of poor cells minus the
estimated one); for a sample of a targeting output, the inclusion and exclusion
errors. Beside them, what a random choice of cells would do: its cells would be
poor as often as cells are (the estimated poor share), and it would find the
share of the poor equal to the share of cells it picks (the map's share called
poor).

The sample layer must be as drawn: its design (strata, N_h, n_h, the sampled
cells and their weights) is read from the layer's metadata and checked
(``design.check_design``). Missing visits are listed; the estimates use the
visited cells of each stratum, weighted ``N_h / m_h`` (m_h visited of n_h drawn:
visits assumed missing at random within a stratum — the report says so); a
stratum with fewer than two visits is refused, naming the cells to visit.

``RECALIBRATE``: Platt scaling (``core.model.calibration.fit_platt``) refitted
on the visited cells' ``prob_raw`` and observed class, each cell weighted by
its design weight, written into a **new** model package (the input is never
changed) whose manifest records the lineage (parent package and its
manifest_sha256, the sample, the visits, when). It needs at least
``MIN_RECALIBRATION_VISITS`` visited cells with ``MIN_RECALIBRATION_PER_CLASS``
of each class.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import time
from typing import TYPE_CHECKING, Any

from ..atomic import check_output_path
from ..errors import PovmapInputError
from ..progress import Reporter
from . import design
from .estimators import accuracy_estimates, error_matrix, targeting_estimates

if TYPE_CHECKING:
    import geopandas
    import numpy as np
    import pandas as pd

    from .estimators import Estimate


MIN_RECALIBRATION_VISITS = 30
MIN_RECALIBRATION_PER_CLASS = 5
METRIC_KEYS = (
    "overall_accuracy",
    "users_accuracy_poor",
    "producers_accuracy_poor",
    "poor_share",
    "poor_people_share",
    "map_bias",
    "inclusion_error",
    "exclusion_error",
)
NOT_VISITED = "not_visited"
RESULTS_FORMAT_VERSION = "1.0"


@dataclasses.dataclass
class VerificationResultsOptions:
    sample_path: str
    output_path: str  # GeoPackage: the sample with outcomes (hit/miss/…/not_visited)
    metrics_path: str  # JSON (+ CSV beside it)
    sample_layer: str | None = None
    returns_path: str | None = None  # CSV/XLSX of ODK/KoBo, or an edited GeoPackage; None: SAMPLE
    id_field: str | None = None  # in the returns; None: the sample's cell id
    observed_field: str = "observed_poor"
    population_path: str | None = None
    recalibrate_path: str | None = None  # a model package
    new_model_path: str | None = None
    report_path: str | None = None  # HTML without a map; None: the caller writes it
    style_qml_path: str | None = None


def verification_results(
    options: VerificationResultsOptions, reporter: Reporter | None = None
) -> dict[str, Any]:
    import numpy as np

    reporter = reporter or Reporter()
    started = time.monotonic()
    _check_options(options)
    sample, layer, record = read_sample(options.sample_path, options.sample_layer)
    id_field = record["id_field"]
    reporter.progress(10)
    found = _observations(options, sample, layer, id_field)
    ids = sample[id_field].to_numpy(dtype="int64")
    visited = np.array([cell in found for cell in ids])
    observed = np.array([found[cell][0] if cell in found else -1 for cell in ids])
    missing = [int(cell) for cell in ids[~visited]]
    notes = []
    if missing:
        notes.append(
            f"{len(missing)} of {len(ids)} sampled cells were not visited (no usable return): "
            f"{', '.join(map(str, missing[:20]))}{' …' if len(missing) > 20 else ''}. The estimates "
            "weight the visited cells of each stratum up to the stratum's size, which assumes the "
            "missed cells are like the visited ones of their stratum."
        )
    strata = sample["stratum"].to_numpy().astype(str)
    sizes = {row["stratum"]: row["cells"] for row in record["strata"]}
    _require_two_visits(strata, visited, ids, sizes)
    people = _people(options, sample, reporter)
    reporter.progress(40)
    predicted = sample["pred"].to_numpy(dtype="int64")
    use = visited
    estimates = accuracy_estimates(
        strata[use],
        sizes,
        predicted[use],
        observed[use],
        people=people[use] if people is not None else None,
        map_poor_share=record.get("map_poor_share"),
    )
    if record.get("kind") == "targeting":
        estimates.update(
            targeting_estimates(
                strata[use], sizes, sample["selected"].to_numpy(dtype="int64")[use], observed[use]
            )
        )
    matrix = error_matrix(strata[use], sizes, predicted[use], observed[use])
    table = _strata_rows(record, strata, visited, observed, predicted)
    reporter.progress(60)
    new_model = None
    reporter.check_canceled()
    if options.recalibrate_path:
        new_model = recalibrate(options, sample[use], observed[use], options.sample_path, reporter)
    summary = {
        "format_version": RESULTS_FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        **{key: estimates[key].as_dict() for key in METRIC_KEYS if key in estimates},
        "random": _beside_random(estimates, record.get("map_poor_share")),
        "map_poor_share": record.get("map_poor_share"),
        "error_matrix": {
            "classes": ["poor", "not poor"],
            "rows": "map",
            "columns": "observed",
            "shares": matrix,
        },
        "strata": table,
        "visits": {
            "sampled": int(len(ids)),
            "visited": int(visited.sum()),
            "missing": missing,
        },
        "design": {
            key: record.get(key)
            for key in (
                "kind",
                "seed",
                "cells",
                "sampled",
                "left_out",
                "minimum_per_stratum",
                "min_distance",
                "predictions",
                "created",
            )
        },
        "sample": os.path.abspath(options.sample_path),
        "returns": os.path.abspath(options.returns_path) if options.returns_path else None,
        "id_field": id_field,
        "new_model": new_model,
        "notes": notes,
    }
    for note in notes:
        reporter.warning(note)
    reporter.check_canceled()
    _write_outputs(options, sample, layer, observed, visited, predicted, summary)
    from ..report.step_end import end_step
    from .verification_report import headline, report_document

    return end_step(
        summary,
        {"output": options.output_path, "metrics": options.metrics_path},
        started,
        options.report_path,
        report_document,
        headline,
        reporter,
    )


def _beside_random(estimates: dict[str, Estimate], map_share: float | None) -> dict[str, Any]:
    """What a random choice of cells would do, and the map's margin over it with its interval.

    Random picks are poor as often as cells are (the poor share); a random choice of as many
    cells as the map calls poor finds that share (known exactly) of the poor cells.
    """
    recall = estimates["producers_accuracy_poor"]
    return {
        "users_accuracy_poor": estimates["poor_share"].estimate,
        "producers_accuracy_poor": map_share,
        "precision_minus_random": estimates["precision_minus_random"].as_dict(),
        "recall_minus_random": (
            dict.fromkeys(("estimate", "se", "low", "high"))
            if recall.estimate is None or map_share is None
            else {
                "estimate": recall.estimate - map_share,
                "se": recall.se,
                "low": recall.low - map_share,  # type: ignore[operator]  # set with estimate
                "high": recall.high - map_share,  # type: ignore[operator]
            }
        ),
    }


def _check_options(options: VerificationResultsOptions) -> None:
    check_output_path(options.output_path, "OUTPUT")
    check_output_path(options.metrics_path, "METRICS", (".json",))
    if options.recalibrate_path and not options.new_model_path:
        raise PovmapInputError(
            "NEW_MODEL", "RECALIBRATE is given: name the new model package to write (.povmodel)."
        )
    if options.new_model_path and not options.recalibrate_path:
        raise PovmapInputError(
            "RECALIBRATE", "NEW_MODEL is given: choose the model package to recalibrate."
        )
    if options.recalibrate_path:
        from ..model.model_package import check_package_path

        check_package_path(options.new_model_path, "NEW_MODEL")
        same = os.path.realpath(
            options.new_model_path.rstrip("/")  # type: ignore[union-attr]  # both given here
        ) == os.path.realpath(options.recalibrate_path.rstrip("/"))
        if same:
            raise PovmapInputError(
                "NEW_MODEL",
                "is the package to recalibrate (RECALIBRATE); a recalibration is written as a new "
                "package, never over its parent. Choose another name.",
            )


def read_sample(
    path: str, layer: str | None = None, parameter: str = "SAMPLE"
) -> tuple[geopandas.GeoDataFrame, str | None, dict[str, Any]]:
    """(sample cells, layer name, design) of a verification sample, checked against its design."""
    import geopandas

    from ..geopackage import povmap_layer_metadata
    from ..vectors import spatial_layer

    layer = spatial_layer(path, layer, parameter)
    record = design.read_design(povmap_layer_metadata(path, layer), layer or path, parameter)
    frame = geopandas.read_file(path, layer=layer, engine="pyogrio")
    id_field = record["id_field"]
    missing = [f for f in (id_field, "stratum", "weight", "pred") if f not in frame]
    if missing:
        raise PovmapInputError(
            parameter,
            f"the sample '{layer}' has lost its field(s) {', '.join(missing)}; use the layer as "
            "Draw a verification sample wrote it.",
        )
    design.check_design(
        record,
        frame[id_field].astype("int64"),
        frame["stratum"].astype(str),
        frame["weight"].astype("float64"),
        layer,
        parameter,
        frame["inclusion_probability"].astype("float64")
        if "inclusion_probability" in frame
        else None,
    )
    return frame, layer, record


def _observations(
    options: VerificationResultsOptions, sample: pd.DataFrame, layer: str | None, id_field: str
) -> dict[int, tuple[int, int | None, int | None]]:
    from .returns import observations, read_returns

    if options.returns_path:
        frame = read_returns(options.returns_path)
        return observations(
            frame, sample[id_field], options.id_field or id_field, options.observed_field
        )
    frame = sample.drop(columns="geometry").astype(object)
    frame = frame.where(frame.notna(), "").astype(str)
    return observations(
        frame, sample[id_field], id_field, options.observed_field, parameter="SAMPLE"
    )


def _require_two_visits(
    strata: np.ndarray, visited: np.ndarray, ids: np.ndarray, sizes: dict[str, int]
) -> None:
    import numpy as np

    short = []
    for name in sorted(set(strata)):
        inside = strata == name
        count = int((inside & visited).sum())
        if count < min(2, sizes[name]):
            waiting = [str(cell) for cell in ids[inside & ~visited]]
            short.append(
                f"{name}: {count} visited, at least 2 needed (still to visit: {', '.join(waiting[:10])})"
            )
    if short:
        raise PovmapInputError(
            "RETURNS",
            "too few visits for an interval in stratum " + "; ".join(short) + ". Visit these "
            "cells, or draw a new sample. Nothing was written.",
        )
    del np


def _people(
    options: VerificationResultsOptions, sample: pd.DataFrame, reporter: Reporter
) -> np.ndarray | None:
    if options.population_path:
        import numpy as np

        from ..grid.population import cell_population

        reporter.info("Summing the population raster per sampled cell…")
        people, _ = cell_population(sample.geometry, options.population_path, "POPULATION")
        return np.asarray(people, dtype="float64")
    if "population" in sample:
        return sample["population"].to_numpy(dtype="float64")
    return None


def _strata_rows(
    record: dict[str, Any],
    strata: np.ndarray,
    visited: np.ndarray,
    observed: np.ndarray,
    predicted: np.ndarray,
) -> list[dict[str, Any]]:
    import numpy as np

    rows = []
    for row in record["strata"]:
        inside = (strata == row["stratum"]) & visited
        count = int(inside.sum())
        rows.append(
            {
                "stratum": row["stratum"],
                "cells": row["cells"],
                "sampled": row["sampled"],
                "visited": count,
                "weight": row["cells"] / count if count else None,
                "observed_poor": int((observed[inside] == 1).sum()),
                "agree": int((observed[inside] == predicted[inside]).sum()),
                "poor_share": float(np.mean(observed[inside] == 1)) if count else None,
            }
        )
    return rows


def recalibrate(
    options: VerificationResultsOptions,
    visited_cells: pd.DataFrame,
    observed: np.ndarray,
    sample_path: str,
    reporter: Reporter,
) -> dict[str, Any]:
    """Refit Platt scaling on the visited cells (design-weighted); write NEW_MODEL; its summary."""
    import json
    import shutil

    import numpy as np

    from ..atomic import partial_path, publish_folder
    from ..model import model_package
    from ..model.calibration import fit_platt

    count = len(observed)
    classes = [int((observed == value).sum()) for value in (1, 0)]
    if count < MIN_RECALIBRATION_VISITS or min(classes) < MIN_RECALIBRATION_PER_CLASS:
        raise PovmapInputError(
            "RECALIBRATE",
            f"{count} visited cells ({classes[0]} poor, {classes[1]} not poor); a recalibration "
            f"needs at least {MIN_RECALIBRATION_VISITS} with {MIN_RECALIBRATION_PER_CLASS} of each "
            f"class — {max(MIN_RECALIBRATION_VISITS - count, 0)} more visits at least. Nothing was written.",
        )
    if "prob_raw" not in visited_cells or visited_cells["prob_raw"].isna().any():
        raise PovmapInputError(
            "RECALIBRATE",
            "the sample has no prob_raw (the probability before calibration) for every visited "
            "cell; draw the sample from predictions of a model package of format 1.1.",
        )
    parent = model_package.read_package(options.recalibrate_path, "RECALIBRATE")  # type: ignore[arg-type]  # given
    weights = visited_cells["weight"].to_numpy(dtype="float64")
    fitted = fit_platt(visited_cells["prob_raw"].to_numpy(dtype="float64"), observed, weights)
    if fitted.get("method") != "platt":
        raise PovmapInputError(
            "RECALIBRATE", f"the visits cannot recalibrate the model: {fitted.get('note')}."
        )
    fitted.update(weighted="design weights of the verification sample", source="field verification")
    manifest = {key: value for key, value in parent.items() if key != "path"}
    manifest["calibration"] = fitted
    manifest["lineage"] = {
        "recalibrated_from": parent["path"],
        "parent_manifest_sha256": parent.get("manifest_sha256"),
        "previous_calibration": parent.get("calibration"),
        "verification_sample": os.path.abspath(sample_path),
        "returns": os.path.abspath(options.returns_path) if options.returns_path else None,
        "visited_cells": count,
        "observed_poor_share_weighted": float(np.average(observed, weights=weights)),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    partial = partial_path(options.new_model_path)  # type: ignore[arg-type]  # given: it runs
    try:
        shutil.copytree(parent["path"], partial)
        os.remove(os.path.join(partial, model_package.MANIFEST))
        model_package.write_manifest(partial, json.loads(json.dumps(manifest)))
        publish_folder(partial, options.new_model_path)  # type: ignore[arg-type]
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    model_package.read_package(options.new_model_path, "NEW_MODEL")  # type: ignore[arg-type]  # loads as any package does
    reporter.info(
        f"New model package {options.new_model_path}: calibration refitted on {count} visited cells"
    )
    return {
        "path": os.path.abspath(options.new_model_path),  # type: ignore[type-var]
        "calibration": fitted,
        "parent": parent["path"],
        "visited_cells": count,
    }


def _write_outputs(
    options: VerificationResultsOptions,
    sample: pd.DataFrame,
    layer: str | None,
    observed: np.ndarray,
    visited: np.ndarray,
    predicted: np.ndarray,
    summary: dict[str, Any],
) -> None:
    """OUTPUT (sample + observed + outcome) and METRICS (JSON + CSV): all appear, or none."""
    import numpy as np
    import pyogrio

    from ..geopackage import layer_name_for, read_styles, styled_output, styles_metadata
    from ..names import ID_FIELD_METADATA
    from ..validation.validation_outputs import metrics_files, outcomes

    frame = sample.copy()
    frame["observed_poor"] = np.where(visited, observed, np.nan)
    frame["observed_poor"] = frame["observed_poor"].astype("Int32")
    frame["outcome"] = np.where(visited, outcomes(observed, predicted), NOT_VISITED)
    styles = read_styles(options.style_qml_path, "povmap verification outcome")
    metadata = {ID_FIELD_METADATA: summary["id_field"], **styles_metadata(styles)}
    rows = [
        [key, value["estimate"], value["se"], value["low"], value["high"]]
        for key, value in summary.items()
        if key in METRIC_KEYS
    ]
    with (
        styled_output(options.output_path, styles) as partial,
        metrics_files(
            options.metrics_path, summary, ["metric", "estimate", "se", "low", "high"], rows
        ),
    ):
        pyogrio.write_dataframe(
            frame,
            partial,
            layer=layer_name_for(options.output_path),
            driver="GPKG",
            layer_metadata=metadata,
        )
