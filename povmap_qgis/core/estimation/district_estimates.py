"""District poverty a statistics office can publish (pipeline step 9, runs in the worker).

Per district (any admin level): the survey's direct estimate (weighted share of
poor households, the labelling rule of ``labels.py`` applied to each
household's score) with its design-based variance, combined with the map's
district mean (the population-weighted mean of the calibrated ``prob_mean`` of
the district's cells, out of fold where a cross-validation grid covers them) in
a Fay–Herriot model: estimate, MSE, CV, 95 % interval, publishable flag, people
in poverty. The statistics are in ``small_areas.py``; this module reads the
inputs, assembles the districts and writes the outputs.

Privacy: household points are read here and never written: outputs hold
district aggregates only.
"""

from __future__ import annotations  # the Processing adapter imports names from here inside QGIS

import dataclasses
import datetime
import json
import math
import os
import time
import types

from ..atomic import (
    atomic_output,
    check_output_path,
    check_outputs_are_not_inputs,
    file_part,
)
from ..errors import PovmapInputError
from ..grid.training_grid import MIN_OBS_FLOOR
from ..names import DEFAULT_CELL_SIZE
from ..progress import Reporter
from .district_estimates_report import headline

TRANSFORMS = ("none", "arcsin")
MSE_METHODS = ("analytical", "bootstrap")
BENCHMARKS = ("none", "national")
VARIANCES = ("direct", "smoothed")  # each district's own design variance, or the GVF's for all
MIN_SAMPLED_DISTRICTS = 5  # below this σ²_u cannot be estimated with any stability
DISTRICT_ESTIMATES_FORMAT_VERSION = "1.0"
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


@dataclasses.dataclass
class DistrictEstimatesOptions:
    survey_path: str  # household points (SURVEY)
    score_field: str
    districts_path: str  # polygons to estimate (DISTRICTS)
    district_field: str
    predictions_path: str  # prediction layer (PREDICTIONS)
    output_path: str  # GeoPackage of the districts (OUTPUT)
    table_path: str  # CSV (TABLE)
    survey_layer: str | None = None
    districts_layer: str | None = None
    predictions_layer: str | None = None
    cutoff: float = 19.0
    poor_below: bool = True
    weight_field: str | None = None
    cluster_field: str | None = None
    stratum_field: str | None = None
    # clusters without CLUSTER_FIELD: households of one grid cell
    cell_size: float = DEFAULT_CELL_SIZE
    out_of_fold_path: str | None = None  # crossvalidate OUTPUT_GRID
    out_of_fold_layer: str | None = None
    population_path: str | None = None
    transform: str = "none"  # one of TRANSFORMS
    mse: str = "analytical"  # one of MSE_METHODS
    bootstrap_draws: int = 200
    seed: int = 42
    benchmark: str = "none"  # one of BENCHMARKS
    variances: str = "direct"  # one of VARIANCES
    cv_threshold: float = 0.20
    figures_folder: str | None = None
    report_path: str | None = None  # write the HTML report here (without a map); None: the caller
    style_qml_path: str | None = None


def district_estimates(options, reporter=None):
    """Estimate every district; write OUTPUT and TABLE; return the summary (every number of the report)."""
    import numpy as np

    from . import small_areas as sa

    reporter = reporter or Reporter()
    started = time.monotonic()
    _check_options(options)
    notes = []
    districts = _read_districts(options, reporter)
    reporter.progress(5)
    survey = _read_survey(options, districts, reporter, notes)
    reporter.progress(20)
    reporter.check_canceled()
    count = len(districts)
    direct = sa.direct_estimates(
        survey["poor"],
        survey["weights"],
        survey["district"],
        count,
        survey["psu"],
        survey["stratum"],
    )
    inside = survey["district"] >= 0
    national = sa.direct_estimates(
        survey["poor"],
        survey["weights"],
        np.where(inside, 0, -1),
        1,
        survey["psu"],
        survey["stratum"],
    )
    if direct.single_psu_strata:
        notes.append(
            f"{direct.single_psu_strata} strata of STRATUM_FIELD hold a single cluster: they add "
            "nothing to the direct variances (combine them with a neighbouring stratum for a "
            "design-consistent variance)."
        )
    map_part = _map_covariate(options, districts, reporter, notes)
    reporter.progress(60)
    reporter.check_canceled()

    # privacy: below MIN_OBS_FLOOR households a district's share (or the estimate built from it, with
    # the published gamma and β) would give a household's poverty away: such districts count as not
    # surveyed (their households stay in the design: clusters, strata, the national estimate)
    too_few = (direct.households > 0) & (direct.households < MIN_OBS_FLOOR)
    sampled = direct.households >= MIN_OBS_FLOOR
    if too_few.any():
        notes.append(
            f"{int(too_few.sum())} districts hold fewer than {MIN_OBS_FLOOR} surveyed households: for "
            "privacy their direct estimate is neither published nor used (synthetic estimate, "
            "in_sample = 0); their households still count in the design and the national estimate."
        )
    covered = np.isfinite(map_part["covariate"])
    usable = sampled & (direct.clusters >= 2) & (direct.variance > 1e-12)
    # VARIANCES smoothed: every district takes the GVF's variance (its own only feeds the design effect)
    reliable = usable & (options.variances == "direct")
    smoothed = sampled & ~reliable
    transform = options.transform
    share = float(national.estimate[0])
    smoothed_variance, deff = sa.gvf_design_effect(
        direct.estimate, direct.variance, direct.households, usable, share
    )
    gvf = {"kind": "design effect", "deff": deff, "national_share": share}
    direct_variance = np.where(reliable, direct.variance, smoothed_variance)
    if transform == "arcsin":
        y = sa.arcsin_sqrt(direct.estimate)
        with np.errstate(invalid="ignore", divide="ignore"):
            psi = np.where(
                reliable,
                direct.variance / (4 * direct.estimate * (1 - direct.estimate)),
                deff / (4 * direct.households),
            )
        x = sa.arcsin_sqrt(map_part["covariate"])
    else:
        y = direct.estimate
        psi = direct_variance
        x = map_part["covariate"]
    if smoothed.any() and options.variances == "smoothed":
        notes.append(
            "VARIANCES smoothed: every surveyed district's variance comes from the generalised "
            f"variance function (design effect {deff:.2f}), not from its own few clusters."
        )
    elif smoothed.any():
        notes.append(
            f"{int(smoothed.sum())} sampled districts have a zero direct variance (all or none of "
            "their households poor) or fewer than two clusters: their variance is smoothed by a "
            "generalised variance function (variance_smoothed = 1)."
        )
    modelled = sampled & covered & np.isfinite(psi) & (psi > 0)
    if int(modelled.sum()) < MIN_SAMPLED_DISTRICTS:
        raise PovmapInputError(
            "SURVEY",
            f"only {int(modelled.sum())} districts of DISTRICTS hold surveyed households and "
            f"predicted cells; the Fay–Herriot model needs at least {MIN_SAMPLED_DISTRICTS} to "
            "estimate the variance between districts (σ²u) — use a coarser DISTRICTS layer, or "
            "publish the direct estimates with their errors.",
        )
    design = np.column_stack([np.ones(count), np.nan_to_num(x)])
    fit = sa.fit_fay_herriot(y[modelled], design[modelled], psi[modelled])
    if not fit.converged:
        notes.append(
            f"REML did not converge in {fit.iterations} iterations; σ²u is its last value."
        )
    if fit.at_zero:
        notes.append(
            "σ²u is estimated at 0: the map explains all the variation between districts that "
            "the survey can see; every estimate is the map's (synthetic) value, and its MSE may "
            "be too small (few districts, or noisy direct estimates)."
        )
    predictions = sa.predict_fay_herriot(
        fit, np.where(modelled, y, 0), design, np.where(modelled, psi, 1), modelled
    )
    estimate = np.where(covered, sa.back_transform(predictions, transform), np.nan)
    use_bootstrap = options.mse == "bootstrap" or transform == "arcsin"
    if transform == "arcsin" and options.mse == "analytical":
        notes.append(
            "TRANSFORM arcsin: the MSE on the share scale comes from the parametric bootstrap "
            f"({options.bootstrap_draws} draws); the analytical formula holds on the arcsin scale only."
        )
    reporter.progress(65)
    if use_bootstrap:
        reporter.info(f"Bootstrap MSE ({options.bootstrap_draws} draws)…")
        mse = np.full(count, np.nan)
        mse[covered] = sa.bootstrap_mse(
            fit,
            design[covered],
            psi[covered],
            modelled[covered],
            int(options.bootstrap_draws),
            int(options.seed),
            transform,
            reporter.stage(65, 85),
        )
    else:
        mse = np.where(covered, predictions.mse, np.nan)
    reporter.progress(85)
    reporter.check_canceled()
    gamma = np.where(modelled, predictions.gamma, np.where(sampled & ~covered, 1.0, 0.0))
    # sampled but not covered by the map: the direct estimate stands alone
    alone = sampled & ~covered
    if alone.any():
        estimate = np.where(alone, direct.estimate, estimate)
        mse = np.where(alone, direct_variance, mse)
        notes.append(
            f"{int(alone.sum())} surveyed districts have no predicted cell: their estimate is the "
            "direct estimate alone (gamma = 1). Predict their cells to use the map."
        )
    uncovered = ~sampled & ~covered
    if uncovered.any():
        names = ", ".join(districts["name"][uncovered][:5])
        notes.append(
            f"{int(uncovered.sum())} districts have neither survey households nor predicted cells "
            f"({names}{'…' if uncovered.sum() > 5 else ''}): no estimate."
        )
    for message in notes:
        reporter.warning(message)

    national_estimate = float(national.estimate[0])
    national_se = float(math.sqrt(national.variance[0]))
    sizes = map_part["population"] if map_part["population"] is not None else map_part["cells"]
    factor = None
    if options.benchmark == "national":
        factor = sa.ratio_benchmark(estimate, sizes, national_estimate)
        if factor is None:
            notes.append("BENCHMARK national: the estimates add up to 0; not benchmarked.")
        else:
            estimate = estimate * factor
            mse = mse * factor**2
    estimate = np.clip(estimate, 0.0, 1.0)
    se = np.sqrt(mse)
    with np.errstate(invalid="ignore", divide="ignore"):
        cv = np.where(estimate > 0, se / estimate, np.inf)
        direct_se = np.sqrt(direct_variance)
        direct_cv = np.where(
            sampled, np.where(direct.estimate > 0, direct_se / direct.estimate, np.inf), np.nan
        )
    cv = np.where(np.isfinite(estimate), cv, np.nan)
    low = np.clip(estimate - sa.Z95 * se, 0.0, 1.0)
    high = np.clip(estimate + sa.Z95 * se, 0.0, 1.0)
    threshold = float(options.cv_threshold)
    publishable = np.isfinite(cv) & (cv <= threshold)
    publishable_direct = sampled & np.isfinite(direct_cv) & (direct_cv <= threshold)
    population = map_part["population"]
    effects, standardised = sa.random_effects(fit, y[modelled], design[modelled], psi[modelled])
    normality = sa.normality_test(standardised)
    table = {
        "district": list(districts["name"]),
        "households": direct.households,
        "clusters": direct.clusters,
        "direct": np.where(sampled, direct.estimate, np.nan),
        "direct_se": np.where(sampled, direct_se, np.nan),
        "direct_cv": direct_cv,
        "variance_smoothed": smoothed.astype("int32"),
        "covariate": map_part["covariate"],
        "estimate": estimate,
        "mse": mse,
        "se": se,
        "cv": cv,
        "low": low,
        "high": high,
        "gamma": np.where(np.isfinite(estimate), gamma, np.nan),
        "in_sample": sampled.astype("int32"),
        "publishable": publishable.astype("int32"),
        "population": population if population is not None else np.full(count, np.nan),
        "poor_people": estimate * population if population is not None else np.full(count, np.nan),
        "poor_people_low": low * population if population is not None else np.full(count, np.nan),
        "poor_people_high": high * population if population is not None else np.full(count, np.nan),
    }
    rows = _rows(table)
    finite_cv = cv[np.isfinite(estimate)]
    summary = {
        "format_version": DISTRICT_ESTIMATES_FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "settings": _settings(options),
        "districts": count,
        "sampled_districts": int(sampled.sum()),
        "modelled_districts": int(modelled.sum()),
        "estimated_districts": int(np.isfinite(estimate).sum()),
        "households": int(direct.households.sum()),
        "households_outside": int((~inside).sum()),
        "median_cv_direct": _median(direct_cv[sampled]),
        "median_cv_estimate": _median(finite_cv),
        "median_cv_estimate_sampled": _median(cv[sampled & np.isfinite(estimate)]),
        "publishable_direct": int(publishable_direct.sum()),
        "publishable_estimate": int(publishable.sum()),
        "cv_threshold": threshold,
        "national_direct": national_estimate,
        "national_direct_se": national_se,
        "benchmark_factor": factor,
        "model": {
            "sigma2_u": fit.sigma2_u,
            "beta": [float(value) for value in fit.beta],
            "beta_se": [float(math.sqrt(value)) for value in np.diag(fit.beta_cov)],
            "iterations": fit.iterations,
            "converged": bool(fit.converged),
            "at_zero": bool(fit.at_zero),
            "r2": sa.explained_share(fit.sigma2_u, y[modelled], psi[modelled]),
            "gamma_median": _median(predictions.gamma[modelled]),
            "normality_statistic": normality[0],
            "normality_p": normality[1],
            "random_effects_sd": float(np.std(effects)) if len(effects) else None,
            "scale": "arcsin square root" if transform == "arcsin" else "share",
        },
        "gvf": gvf,
        "smoothed_districts": int(smoothed.sum()),
        "mse_method": "bootstrap" if use_bootstrap else "analytical",
        "map": {
            "cells": map_part["cells_total"],
            "out_of_fold_cells": map_part["out_of_fold_cells"],
            "out_of_fold": bool(options.out_of_fold_path),
            "population_total": float(np.nansum(population)) if population is not None else None,
        },
        "rows": rows,
        "notes": notes,
    }
    summary["figures"] = (
        _write_figures(options.figures_folder, summary) if options.figures_folder else {}
    )
    reporter.progress(90)
    reporter.check_canceled()
    _write_outputs(options, districts, table, rows, summary)
    summary.update(
        output=os.path.abspath(options.output_path),
        table=os.path.abspath(options.table_path),
        seconds=round(time.monotonic() - started, 2),
    )
    if options.report_path:
        from ..report.page import write_report
        from .district_estimates_report import report_document

        write_report(options.report_path, **report_document(summary))
        summary["report"] = os.path.abspath(options.report_path)
    reporter.progress(100)
    reporter.info(headline(summary))
    return summary


def _median(values):
    import numpy as np

    values = np.asarray(values, dtype="float64")
    values = values[~np.isnan(values)]  # an infinite CV (a share of 0) counts
    return float(np.median(values)) if len(values) else None


def _rows(table):
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


# --- inputs -------------------------------------------------------------------------------------------


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


def _check_options(options):
    for value, allowed, parameter in (
        (options.transform, TRANSFORMS, "TRANSFORM"),
        (options.mse, MSE_METHODS, "MSE"),
        (options.benchmark, BENCHMARKS, "BENCHMARK"),
        (options.variances, VARIANCES, "VARIANCES"),
    ):
        if value not in allowed:
            raise PovmapInputError(
                parameter, f"'{value}' is not one of {', '.join(allowed)}; choose one of them."
            )
    threshold = _number(options.cv_threshold, "CV_THRESHOLD")
    if threshold is None or threshold <= 0:
        raise PovmapInputError(
            "CV_THRESHOLD", f"{options.cv_threshold}: give a positive CV, e.g. 0.2 for 20 %."
        )
    draws = _number(options.bootstrap_draws, "BOOTSTRAP_DRAWS")
    if draws is None or draws < 10 or int(draws) != draws:
        raise PovmapInputError(
            "BOOTSTRAP_DRAWS", f"{options.bootstrap_draws}: give a whole number of at least 10."
        )
    cell_size = _number(options.cell_size, "CELL_SIZE")
    if not options.cluster_field and (cell_size is None or cell_size <= 0):
        raise PovmapInputError(
            "CELL_SIZE", f"{options.cell_size}: give the cell size in metres (e.g. 1000)."
        )
    if _number(options.cutoff, "CUTOFF") is None:
        raise PovmapInputError("CUTOFF", "give the score cutoff (e.g. 19).")
    for path, parameter in (
        (options.survey_path, "SURVEY"),
        (options.districts_path, "DISTRICTS"),
        (options.predictions_path, "PREDICTIONS"),
        (options.out_of_fold_path, "OUT_OF_FOLD"),
        (options.population_path, "POPULATION"),
    ):
        if path is not None and not os.path.exists(file_part(path)):
            raise PovmapInputError(parameter, f"the file '{path}' does not exist.")
    check_output_path(options.output_path, "OUTPUT", (".gpkg",))
    check_output_path(options.table_path, "TABLE", (".csv",))
    if options.report_path:
        check_output_path(options.report_path, "REPORT", (".html", ".htm"))
    check_outputs_are_not_inputs(
        (
            options.survey_path,
            options.districts_path,
            options.predictions_path,
            options.out_of_fold_path,
            options.population_path,
        ),
        (
            (options.output_path, "OUTPUT"),
            (options.table_path, "TABLE"),
            (options.report_path, "REPORT"),
        ),
    )


def _read_districts(options, reporter):
    """The districts (GeoDataFrame with ``name``), one row per name (parts of a name dissolved)."""
    from .. import vectors

    frame = vectors.read_polygons(
        options.districts_path,
        options.districts_layer,
        "DISTRICTS",
        field=options.district_field,
        reporter=reporter,
    )
    names = frame[options.district_field]
    if names.isna().any():
        reporter.warning(
            f"DISTRICTS: {int(names.isna().sum())} polygons have no {options.district_field} "
            "(DISTRICT_FIELD) and are left out."
        )
        frame = frame[~names.isna()]
    if frame.empty:
        raise PovmapInputError(
            "DISTRICT_FIELD", f"no polygon of DISTRICTS has a value in '{options.district_field}'."
        )
    frame = frame.assign(name=frame[options.district_field].astype(str))[["name", "geometry"]]
    if frame["name"].duplicated().any():
        frame = frame.dissolve(by="name", as_index=False)
    return frame.sort_values("name").reset_index(drop=True)


def _read_survey(options, districts, reporter, notes):
    """Households as arrays: poor (the labelling rule), weights, district code, PSU, stratum.

    Household points stay in this function's arrays; nothing of them is written.
    """
    import numpy as np
    import pandas
    import pyproj
    import shapely

    from .. import labels, vectors
    from ..grid import cells

    path, layer = options.survey_path, options.survey_layer
    info = vectors.layer_info(path, layer, "SURVEY")
    vectors.require_geometry(info, path, layer, "SURVEY", ("Point", "MultiPoint"))
    columns = [options.score_field]
    vectors.require_field(info, options.score_field, path, layer, "SCORE_FIELD", numeric=True)
    if options.weight_field:
        vectors.require_field(info, options.weight_field, path, layer, "WEIGHT_FIELD", numeric=True)
        columns.append(options.weight_field)
    for field, parameter in (
        (options.cluster_field, "CLUSTER_FIELD"),
        (options.stratum_field, "STRATUM_FIELD"),
    ):
        if field:
            vectors.require_field(info, field, path, layer, parameter)
            columns.append(field)
    x, y, table, crs = vectors.read_points(path, layer, list(dict.fromkeys(columns)), "SURVEY")
    scores = pandas.to_numeric(pandas.Series(table[options.score_field]), errors="coerce").to_numpy(
        dtype="float64"
    )
    keep = np.isfinite(x) & np.isfinite(scores)
    dropped = int((~keep).sum())
    if dropped:
        notes.append(
            f"{dropped} households without a location or a score (SCORE_FIELD) were left out."
        )
    if not keep.any():
        raise PovmapInputError("SURVEY", "no household has a location and a score.")
    if options.weight_field:
        weights = pandas.to_numeric(
            pandas.Series(table[options.weight_field]), errors="coerce"
        ).to_numpy(dtype="float64")
        bad = keep & ~(np.isfinite(weights) & (weights > 0))
        if bad.any():
            raise PovmapInputError(
                "WEIGHT_FIELD",
                f"{int(bad.sum())} households have an empty, zero or negative weight in "
                f"'{options.weight_field}'; every household needs a positive sampling weight.",
            )
    else:
        weights = np.ones(len(x))
    for field, parameter in (
        (options.cluster_field, "CLUSTER_FIELD"),
        (options.stratum_field, "STRATUM_FIELD"),
    ):
        if field:
            values = pandas.Series(table[field])
            if (values.isna().to_numpy() & keep).any():
                raise PovmapInputError(
                    parameter,
                    f"{int((values.isna().to_numpy() & keep).sum())} households have no value in "
                    f"'{field}'; every household needs one.",
                )
    x, y, scores, weights = x[keep], y[keep], scores[keep], weights[keep]
    poor = labels.poor_labels(scores, float(options.cutoff), bool(options.poor_below))
    source = pyproj.CRS.from_user_input(crs)
    target = pyproj.CRS.from_user_input(districts.crs)
    px, py = (
        (x, y)
        if source == target
        else pyproj.Transformer.from_crs(source, target, always_xy=True).transform(x, y)
    )
    tree = shapely.STRtree(districts.geometry.values)
    point_index, polygon_index = tree.query(shapely.points(px, py), predicate="intersects")
    district = np.full(len(x), -1, dtype="int64")
    district[point_index[::-1]] = polygon_index[::-1]
    outside = int((district < 0).sum())
    if outside == len(x):
        raise PovmapInputError(
            "SURVEY",
            "no household lies inside a polygon of DISTRICTS; check that the survey and the "
            "districts cover the same area (and their CRS).",
        )
    if outside:
        notes.append(
            f"{outside} households lie outside every district: they count in the design (their "
            "clusters and strata) and in no district's estimate."
        )
    if options.cluster_field:
        psu = _codes(table[options.cluster_field], keep)
    else:
        wgs84 = pyproj.Transformer.from_crs(source, "EPSG:4326", always_xy=True)
        lon, lat = wgs84.transform(x, y)
        grid_crs, _ = cells.working_crs(
            None,
            (lon.min(), lat.min(), lon.max(), lat.max()),
            centre=(float(np.median(lon)), float(np.median(lat))),
        )
        gx, gy = pyproj.Transformer.from_crs(source, grid_crs, always_xy=True).transform(x, y)
        rows, cols = cells.cell_rows_cols(gx, gy, float(options.cell_size))
        psu = cells.encode_cell_ids(rows, cols)
        notes.append(
            f"No CLUSTER_FIELD: the households of one {options.cell_size:g} m grid cell form a "
            "cluster (PSU); give the survey's primary sampling unit for design-based variances."
        )
    stratum = _codes(table[options.stratum_field], keep) if options.stratum_field else None
    return {"poor": poor, "weights": weights, "district": district, "psu": psu, "stratum": stratum}


def _codes(values, keep):
    import numpy as np
    import pandas

    return pandas.factorize(pandas.Series(values)[keep].astype(str))[0].astype(np.int64)


def _map_covariate(options, districts, reporter, notes):
    """The map's district means (population-weighted with POPULATION), people and cells per district."""
    import numpy as np
    import pyogrio
    import shapely

    from ..decision.targeting import read_predictions

    cells, layer, _, id_field = read_predictions(
        types.SimpleNamespace(
            predictions_path=options.predictions_path,
            predictions_layer=options.predictions_layer,
            id_field=None,  # the one Predict poverty recorded, else cell_id
        )
    )
    probability = cells["prob_mean"].to_numpy(dtype="float64")
    out_of_fold_cells = 0
    if options.out_of_fold_path:
        from ..chips.grid_cells import read_cell_ids
        from ..vectors import layer_info, spatial_layer

        oof_layer = spatial_layer(
            options.out_of_fold_path, options.out_of_fold_layer, "OUT_OF_FOLD"
        )
        info = layer_info(options.out_of_fold_path, oof_layer, "OUT_OF_FOLD")
        if id_field not in info["fields"] or "prob_mean" not in info["fields"]:
            raise PovmapInputError(
                "OUT_OF_FOLD",
                f"the layer '{oof_layer}' has no {id_field} and prob_mean fields; use the grid "
                "written by Cross-validate by district (OUTPUT_GRID).",
            )
        read_cell_ids(options.out_of_fold_path, oof_layer, id_field, info, "OUT_OF_FOLD")
        grid = pyogrio.read_dataframe(
            options.out_of_fold_path,
            layer=oof_layer,
            columns=[id_field, "prob_mean"],
            read_geometry=False,
        )
        grid = grid[np.isfinite(grid["prob_mean"].to_numpy(dtype="float64"))]
        lookup = dict(
            zip(
                grid[id_field].astype("int64").tolist(),
                grid["prob_mean"].astype("float64").tolist(),
                strict=True,
            )
        )
        ids = cells[id_field].to_numpy(dtype="int64")
        replaced = np.array([lookup.get(int(cell), np.nan) for cell in ids])
        found = np.isfinite(replaced)
        probability = np.where(found, replaced, probability)
        out_of_fold_cells = int(found.sum())
        reporter.info(f"OUT_OF_FOLD: {out_of_fold_cells} cells take their out-of-fold probability.")
    else:
        notes.append(
            "No OUT_OF_FOLD grid: the map's probabilities of the surveyed cells come from a model "
            "trained on those very cells, so the map looks more accurate there than it is and the "
            "model over-trusts it. Give the OUTPUT_GRID of Cross-validate by district."
        )
    population = None
    if options.population_path:
        reporter.info("Summing the population raster per cell…")
        from ..grid.population import cell_population

        population, inside = cell_population(
            cells.geometry, options.population_path, "POPULATION", reporter.stage(20, 55)
        )
        partly = int((inside < 0.95).sum())
        if partly:
            notes.append(
                f"{partly} cells lie partly or wholly outside the POPULATION raster: people are "
                "counted only where the raster is."
            )
    points = shapely.point_on_surface(cells.geometry.to_crs(districts.crs).values)
    tree = shapely.STRtree(districts.geometry.values)
    cell_index, district_index = tree.query(points, predicate="intersects")
    owner = np.full(len(cells), -1, dtype="int64")
    owner[cell_index[::-1]] = district_index[::-1]
    usable = (owner >= 0) & np.isfinite(probability)
    count = len(districts)
    heads = population if population is not None else np.ones(len(cells))
    weight = np.where(usable, heads, 0.0)
    total = np.bincount(owner[usable], weights=weight[usable], minlength=count)
    weighted = np.bincount(
        owner[usable], weights=(weight * np.nan_to_num(probability))[usable], minlength=count
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        covariate = np.where(total > 0, weighted / total, np.nan)
    cells_per_district = np.bincount(owner[usable], minlength=count).astype("float64")
    district_population = None
    if population is not None:
        inside_districts = owner >= 0
        district_population = np.bincount(
            owner[inside_districts], weights=population[inside_districts], minlength=count
        )
    outside = int((owner < 0).sum())
    if outside:
        notes.append(f"{outside} predicted cells of '{layer}' lie outside every district.")
    return {
        "covariate": covariate,
        "population": district_population,
        "cells": cells_per_district,
        "cells_total": int(usable.sum()),
        "out_of_fold_cells": out_of_fold_cells,
    }


# --- outputs ------------------------------------------------------------------------------------------


def _settings(options):
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


def _write_outputs(options, districts, table, rows, summary):
    """OUTPUT (districts + fields) and TABLE (CSV): both appear, or neither."""
    import csv

    import pyogrio

    from ..geopackage import layer_name_for, read_styles, styled_output, styles_metadata

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
    styles = read_styles(options.style_qml_path, "povmap district estimates")
    metadata.update(styles_metadata(styles))
    with (
        styled_output(options.output_path, styles) as gpkg_partial,
        atomic_output(options.table_path) as csv_partial,
    ):
        pyogrio.write_dataframe(
            frame,
            gpkg_partial,
            layer=layer_name_for(options.output_path),
            driver="GPKG",
            layer_metadata=metadata,
        )
        with open(csv_partial, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(OUTPUT_COLUMNS)
            for row in rows:
                writer.writerow(["" if row[key] is None else row[key] for key in OUTPUT_COLUMNS])


def _write_figures(folder, summary):
    """Direct vs estimate with intervals, CV before/after, shrinkage; {name: path}."""
    from .district_estimates_report import draw_figures

    os.makedirs(folder, exist_ok=True)
    return draw_figures(folder, summary)
