"""The outputs of district estimates: OUTPUT (the districts with their estimates), TABLE (CSV),
the figures, and the settings the summary records (pipeline step 9, runs in the worker)."""

from __future__ import annotations

import json
import math
import os
from typing import TYPE_CHECKING, Any

from ..atomic import file_part

if TYPE_CHECKING:
    import geopandas
    import pandas as pd

    from .district_estimates import DistrictEstimatesOptions


OUTPUT_COLUMNS = (
    "district",
    "households",
    "clusters",
    "direct",
    "direct_se",
    "direct_cv",
    "variance_smoothed",
    "covariate",
    "estimate",
    "mse",
    "se",
    "cv",
    "low",
    "high",
    "gamma",
    "in_sample",
    "publishable",
    "population",
    "poor_people",
    "poor_people_low",
    "poor_people_high",
)


def district_rows(table: pd.DataFrame) -> list[dict[str, Any]]:
    """One dict per district of the output's columns (None for empty values)."""
    rows = []
    for index, name in enumerate(table["district"]):
        row = {"district": name}
        for column in OUTPUT_COLUMNS[1:]:
            value = table[column][index]
            if isinstance(value, (float, int)) or hasattr(value, "dtype"):
                value = float(value)
                if not math.isfinite(value):
                    value = None
                elif column in (
                    "households",
                    "clusters",
                    "variance_smoothed",
                    "in_sample",
                    "publishable",
                ):
                    value = int(value)
            row[column] = value
        rows.append(row)
    return rows


def settings_record(options: DistrictEstimatesOptions) -> dict[str, Any]:
    from ..labels import label_sentence
    from ..version import plugin_version

    return {
        "survey": os.path.abspath(file_part(options.survey_path)),
        "districts": os.path.abspath(file_part(options.districts_path)),
        "district_field": options.district_field,
        "predictions": os.path.abspath(file_part(options.predictions_path)),
        "out_of_fold": os.path.abspath(file_part(options.out_of_fold_path))
        if options.out_of_fold_path
        else None,
        "population": os.path.abspath(options.population_path) if options.population_path else None,
        "rule": label_sentence(options.cutoff, options.poor_below).replace(
            "cell's median", "household's"
        ),
        "weight_field": options.weight_field,
        "cluster_field": options.cluster_field,
        "stratum_field": options.stratum_field,
        "cell_size": options.cell_size,
        "transform": options.transform,
        "mse": options.mse,
        "bootstrap_draws": int(options.bootstrap_draws),
        "seed": int(options.seed),
        "benchmark": options.benchmark,
        "variances": options.variances,
        "cv_threshold": float(options.cv_threshold),
        "plugin_version": plugin_version(),
    }


def write_outputs(
    options: DistrictEstimatesOptions,
    districts: geopandas.GeoDataFrame,
    table: pd.DataFrame,
    rows: list[dict[str, Any]],
    summary: dict[str, Any],
) -> None:
    """OUTPUT (districts + fields) and TABLE (CSV): both appear, or neither."""
    from ..geopackage import write_layer_with_table

    frame = districts[["geometry"]].copy()
    for column in OUTPUT_COLUMNS:
        frame[column] = table[column]
    frame = frame[["district", *OUTPUT_COLUMNS[1:], "geometry"]]
    metadata = {
        "povmap_district_estimates": json.dumps(
            {
                key: summary[key]
                for key in (
                    "districts",
                    "sampled_districts",
                    "median_cv_direct",
                    "median_cv_estimate",
                    "publishable_direct",
                    "publishable_estimate",
                    "national_direct",
                    "benchmark_factor",
                    "cv_threshold",
                )
            }
            | {"sigma2_u": summary["model"]["sigma2_u"]}
        ),
        "povmap_settings": json.dumps(summary["settings"]),
    }
    write_layer_with_table(
        frame,
        options.output_path,
        options.style_qml_path,
        "povmap district estimates",
        metadata,
        options.table_path,
        OUTPUT_COLUMNS,
        (["" if row[key] is None else row[key] for key in OUTPUT_COLUMNS] for row in rows),
    )


def write_figures(folder: str, summary: dict[str, Any]) -> dict[str, str]:
    """Direct vs estimate with intervals, CV before/after, shrinkage; {name: path}."""
    from .district_estimates_report import draw_figures

    os.makedirs(folder, exist_ok=True)
    return draw_figures(folder, summary)
