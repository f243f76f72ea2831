"""District poverty a statistics office can publish (pipeline step 9, runs in the worker).

Per district (any admin level): the survey's direct estimate (weighted share of
poor households, the labelling rule of ``labels.py`` applied to each
household's score) with its design-based variance, combined with the map's
district mean (the population-weighted mean of the calibrated ``prob_mean`` of
the district's cells, out of fold where a cross-validation grid covers them) in
a Fay–Herriot model: estimate, MSE, CV, 95 % interval, publishable flag, people
in poverty. The statistics are in ``small_areas.py``; this module checks the
options and assembles the districts; ``district_inputs.py`` reads the inputs and
``district_outputs.py`` writes the outputs.

Privacy: household points are read here and never written: outputs hold
district aggregates only.
"""

from __future__ import annotations  # the Processing adapter imports names from here inside QGIS

import dataclasses
import datetime
import math
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..atomic import check_output_path, check_outputs_are_not_inputs, file_part
from ..errors import PovmapInputError
from ..grid.training_grid import MIN_OBS_FLOOR
from ..names import DEFAULT_CELL_SIZE
from ..progress import Reporter
from ..report.step_end import end_step
from .district_estimates_report import headline, report_document
from .district_inputs import map_covariate, read_districts, read_survey
from .district_outputs import district_rows, settings_record, write_figures, write_outputs

if TYPE_CHECKING:
    import numpy as np


TRANSFORMS = ("none", "arcsin")
MSE_METHODS = ("analytical", "bootstrap")
BENCHMARKS = ("none", "national")
VARIANCES = ("direct", "smoothed")  # each district's own design variance, or the GVF's for all
MIN_SAMPLED_DISTRICTS = 5  # below this σ²_u cannot be estimated with any stability
DISTRICT_ESTIMATES_FORMAT_VERSION = "1.0"


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


def district_estimates(
    options: DistrictEstimatesOptions, reporter: Reporter | None = None
) -> dict[str, Any]:
    """Estimate every district; write OUTPUT and TABLE; return the summary (every number of the report)."""
    import numpy as np

    from . import small_areas as sa

    reporter = reporter or Reporter()
    started = time.monotonic()
    _check_options(options)
    notes: list[str] = []
    districts = read_districts(options, reporter)
    reporter.progress(5)
    survey = read_survey(options, districts, reporter, notes)
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
    map_part = map_covariate(options, districts, reporter, notes)
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
    rows = district_rows(table)
    finite_cv = cv[np.isfinite(estimate)]
    summary = {
        "format_version": DISTRICT_ESTIMATES_FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "settings": settings_record(options),
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
        write_figures(options.figures_folder, summary) if options.figures_folder else {}
    )
    reporter.progress(90)
    reporter.check_canceled()
    write_outputs(options, districts, table, rows, summary)
    return end_step(
        summary,
        {"output": options.output_path, "table": options.table_path},
        started,
        options.report_path,
        report_document,
        headline,
        reporter,
    )


def _median(values: Sequence[float] | np.ndarray) -> float | None:
    import numpy as np

    values = np.asarray(values, dtype="float64")
    values = values[~np.isnan(values)]  # an infinite CV (a share of 0) counts
    return float(np.median(values)) if len(values) else None


# --- the options, checked ----------------------------------------------------------------------------


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


def _check_options(options: DistrictEstimatesOptions) -> None:
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
