"""The HTML report and figures of District estimates (``district_estimates.py`` computes the numbers).

``report_document`` is plain Python: the Processing algorithm calls it inside
QGIS after rendering the maps. ``draw_figures`` runs in the worker (matplotlib).
"""

from __future__ import annotations  # imported inside QGIS (report_document)

import math
import os
import types
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


def _percent(value: float | None, digits: int = 0) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{100 * value:.{digits}f} %"


def _number(value: float | None, digits: int = 4) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.{digits}g}"


def headline(summary: dict[str, Any]) -> str:
    """The plain summary sentence atop the report and in the log."""
    surveyed = summary["sampled_districts"]
    total = summary["districts"]
    threshold = _percent(summary["cv_threshold"])
    return (
        f"{surveyed} of {total} districts surveyed; median CV {_percent(summary['median_cv_direct'])} "
        f"with the survey alone, {_percent(summary['median_cv_estimate_sampled'])} with the map "
        f"(surveyed districts); {summary['publishable_estimate']} publishable at CV ≤ {threshold} "
        f"against {summary['publishable_direct']} from the survey alone."
    )


def report_document(
    summary: dict[str, Any], maps: Iterable[tuple[str, str]] = ()
) -> dict[str, Any]:
    """Title, subtitle, notices and sections; ``maps``: [(png path, caption)]."""
    from ..report import page as report

    sections = [
        _summary_section(summary, report),
        _comparison_section(summary, report),
        _model_section(summary, report),
        _table_section(summary, report),
    ]
    if maps:
        sections.append(
            report.Section(
                "Maps", [report.Figure(path, caption, caption) for path, caption in maps]
            )
        )
    sections.append(_method_section(summary, report))
    if summary["notes"]:
        sections.append(report.Section("Warnings and notes", [report.BulletList(summary["notes"])]))
    notices = []
    if not summary["map"]["out_of_fold"]:
        notices.append(
            "No out-of-fold grid (OUT_OF_FOLD): the map's values on the surveyed cells come from a "
            "model that was trained on them, so the model trusts the map more than it deserves."
        )
    return {
        "title": "District poverty estimates (small area estimation)",
        "subtitle": headline(summary),
        "notices": notices,
        "sections": sections,
    }


def _summary_section(summary: dict[str, Any], report: types.ModuleType) -> Any:
    threshold = _percent(summary["cv_threshold"])
    model = summary["model"]
    plain = (
        f"{summary['sampled_districts']} of {summary['districts']} districts have survey households "
        f"({summary['households']:,} households). With the survey alone the median coefficient of "
        f"variation (CV) of the district poverty rates is {_percent(summary['median_cv_direct'])}; "
        "combined with the poverty map in a Fay–Herriot model it is "
        f"{_percent(summary['median_cv_estimate_sampled'])} for the same districts. "
        f"{summary['publishable_estimate']} districts can be published at CV ≤ {threshold}, against "
        f"{summary['publishable_direct']} with the survey alone. "
        f"The survey's national poverty rate is {_percent(summary['national_direct'], 1)} "
        f"(standard error {_percent(summary['national_direct_se'], 1)})."
    )
    if summary["sampled_districts"] < summary["districts"]:
        plain += (
            f" The {summary['districts'] - summary['sampled_districts']} districts without survey "
            "households get the map's (synthetic) estimate, whose error is usually larger."
        )
    explained = model["r2"]
    if explained is not None:
        plain += (
            f" The map explains {_percent(explained)} of the variation in poverty between districts "
            "that the survey sees."
        )
    items = [
        ("Districts", summary["districts"]),
        ("Surveyed districts", summary["sampled_districts"]),
        ("Districts with an estimate", summary["estimated_districts"]),
        ("Median CV, survey alone (direct)", _percent(summary["median_cv_direct"])),
        (
            "Median CV, survey + map (surveyed districts)",
            _percent(summary["median_cv_estimate_sampled"]),
        ),
        ("Median CV, survey + map (all districts)", _percent(summary["median_cv_estimate"])),
        (f"Publishable at CV ≤ {threshold}, direct", summary["publishable_direct"]),
        (f"Publishable at CV ≤ {threshold}, estimate", summary["publishable_estimate"]),
        ("National direct estimate", _percent(summary["national_direct"], 1)),
        (
            "Benchmarking factor",
            _number(summary["benchmark_factor"])
            if summary["benchmark_factor"]
            else "not benchmarked",
        ),
    ]
    return report.Section("Summary", [report.Paragraph(plain, "notice"), report.KeyValues(items)])


def _comparison_section(summary: dict[str, Any], report: types.ModuleType) -> Any:
    figures = summary.get("figures") or {}
    blocks = [
        report.Paragraph(
            "Each district's estimate lies between its survey (direct) estimate and the map's "
            "prediction, closer to the survey where the survey is precise (many households, "
            "gamma near 1) and closer to the map where it is not. Intervals are 95 %."
        )
    ]
    for key, caption in (
        (
            "direct_vs_estimate",
            "Direct estimate against the small area estimate, with 95 % intervals",
        ),
        ("cv", "Coefficient of variation: survey alone against survey + map"),
        ("shrinkage", "Shrinkage factor gamma against the number of households"),
    ):
        if key in figures:
            blocks.append(report.Figure(figures[key], caption, caption))
    return report.Section("Direct against estimate", blocks)


def _model_section(summary: dict[str, Any], report: types.ModuleType) -> Any:
    model = summary["model"]
    names = ["intercept", "map (district mean of prob_mean)"]
    rows = [
        [name, beta, se, beta / se if se else None]
        for name, beta, se in zip(names, model["beta"], model["beta_se"], strict=True)
    ]
    normality = (
        f"Shapiro–Wilk test of the standardised residuals: W = {model['normality_statistic']:.3f}, "
        f"p = {model['normality_p']:.3f}"
        + (
            " — the model's normality assumption is doubtful; prefer TRANSFORM arcsin."
            if model["normality_p"] < 0.05
            else " (no evidence against normality)."
        )
        if model["normality_p"] is not None
        else "Too few districts for a normality test."
    )
    items = [
        ("Scale of the model", model["scale"]),
        ("Variance between districts σ²u (REML)", _number(model["sigma2_u"])),
        ("Share of between-district variance explained by the map (R²)", _percent(model["r2"])),
        ("Median shrinkage factor gamma (surveyed districts)", _number(model["gamma_median"], 3)),
        (
            "REML iterations",
            f"{model['iterations']} ({'converged' if model['converged'] else 'NOT converged'})",
        ),
        ("MSE", summary["mse_method"]),
        ("Districts with a smoothed direct variance", summary["smoothed_districts"]),
    ]
    return report.Section(
        "Model fit",
        [
            report.KeyValues(items),
            report.Table(["coefficient", "estimate", "standard error", "t"], rows, digits=4),
            report.Paragraph(normality),
        ],
    )


def _table_section(summary: dict[str, Any], report: types.ModuleType) -> Any:
    columns = [
        "district",
        "households",
        "direct",
        "direct CV",
        "map",
        "estimate",
        "95 % interval",
        "CV",
        "gamma",
        "publishable",
    ]
    rows = []
    for row in summary["rows"]:
        interval = (
            f"{_percent(row['low'], 1)} – {_percent(row['high'], 1)}"
            if row["low"] is not None
            else None
        )
        rows.append(
            [
                row["district"],
                row["households"],
                _percent(row["direct"], 1) if row["direct"] is not None else None,
                _percent(row["direct_cv"]) if row["direct_cv"] is not None else None,
                _percent(row["covariate"], 1) if row["covariate"] is not None else None,
                _percent(row["estimate"], 1) if row["estimate"] is not None else None,
                interval,
                _percent(row["cv"]) if row["cv"] is not None else None,
                row["gamma"],
                "yes" if row["publishable"] else "no",
            ]
        )
    return report.Section(
        "Districts",
        [
            report.Table(
                columns, rows, caption="Every district (the TABLE CSV holds every field)", digits=2
            )
        ],
    )


def _method_section(summary: dict[str, Any], report: types.ModuleType) -> Any:
    settings = summary["settings"]
    gvf = summary["gvf"]
    smoothing = (
        f"design effect {gvf['deff']:.2f} × p̄(1 − p̄) / households, p̄ = the national share "
        f"{_percent(gvf['national_share'], 1)}"
        + (
            " (arcsin scale: design effect / (4 × households))"
            if settings["transform"] == "arcsin"
            else ""
        )
    )
    items = [
        ("Labelling rule (each household)", settings["rule"]),
        ("Weights (WEIGHT_FIELD)", settings["weight_field"] or "none: equal weights"),
        (
            "Clusters (CLUSTER_FIELD)",
            settings["cluster_field"]
            or f"none: households of one {settings['cell_size']:g} m cell",
        ),
        ("Strata (STRATUM_FIELD)", settings["stratum_field"] or "none: one stratum"),
        ("Generalised variance function", smoothing),
        (
            "Direct variances (VARIANCES)",
            "smoothed for every district"
            if settings.get("variances") == "smoothed"
            else "each district's own",
        ),
        ("Transformation", settings["transform"]),
        (
            "MSE",
            f"{summary['mse_method']}"
            + (
                f" ({settings['bootstrap_draws']} draws, seed {settings['seed']})"
                if summary["mse_method"] == "bootstrap"
                else ""
            ),
        ),
        ("Benchmarking", settings["benchmark"]),
        ("Out-of-fold grid", settings["out_of_fold"] or "none"),
        ("Population raster", settings["population"] or "none: cells weigh equally"),
        ("Predictions", settings["predictions"]),
        ("Districts", f"{settings['districts']} ({settings['district_field']})"),
        ("Plugin version", settings["plugin_version"]),
    ]
    return report.Section(
        "Method and settings",
        [
            report.Paragraph(
                "Direct estimate: the weighted share of poor households of the district, its variance "
                "by Taylor linearisation with the clusters as primary sampling units within strata. "
                "Fay–Herriot model: the direct estimate = the map's district mean × β + a district "
                "effect (variance σ²u) + the survey's error (its design variance); σ²u by REML; the "
                "estimate is the EBLUP, its MSE by Prasad–Rao (Datta–Lahiri for REML) or a "
                "parametric bootstrap. CV = √MSE / estimate; publishable when CV ≤ CV_THRESHOLD."
            ),
            report.KeyValues(items),
        ],
    )


def draw_figures(folder: str, summary: dict[str, Any]) -> dict[str, str]:
    """The report's PNGs in ``folder``; {name: path}."""
    import numpy as np
    from matplotlib.figure import Figure

    from ..report.figures import save

    rows = summary["rows"]
    sampled = [row for row in rows if row["in_sample"] and row["estimate"] is not None]
    figures: dict[str, str] = {}
    if not sampled:
        return figures

    def column(name: str, subset: list[dict[str, Any]]) -> np.ndarray:
        return np.array([np.nan if row[name] is None else row[name] for row in subset], dtype=float)

    direct, estimate = column("direct", sampled), column("estimate", sampled)
    direct_se, se = column("direct_se", sampled), column("se", sampled)
    figure = Figure(figsize=(6.4, 5.6))
    axes = figure.add_subplot()
    axes.errorbar(
        direct,
        estimate,
        xerr=1.96 * direct_se,
        yerr=1.96 * se,
        fmt="o",
        color="#0072B2",
        ecolor="#9ecae1",
        markersize=4,
        linewidth=0.8,
    )
    axes.plot([0, 1], [0, 1], color="#666666", linestyle="--", linewidth=1)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("Direct estimate (survey alone)")
    axes.set_ylabel("Estimate (survey + map)")
    axes.grid(alpha=0.3)
    figures["direct_vs_estimate"] = save(figure, os.path.join(folder, "direct_vs_estimate.png"))

    direct_cv, cv = column("direct_cv", sampled), column("cv", sampled)
    figure = Figure(figsize=(6.4, 5.6))
    axes = figure.add_subplot()
    finite = np.isfinite(direct_cv) & np.isfinite(cv)
    axes.scatter(direct_cv[finite], cv[finite], s=16, color="#D55E00")
    top = float(
        np.nanmax(np.concatenate([direct_cv[finite], cv[finite], [summary["cv_threshold"] * 1.5]]))
    )
    top = min(top, 2.0)
    axes.plot([0, top], [0, top], color="#666666", linestyle="--", linewidth=1)
    axes.axhline(summary["cv_threshold"], color="#009E73", linewidth=1, label="CV threshold")
    axes.axvline(summary["cv_threshold"], color="#009E73", linewidth=1)
    axes.set_xlim(0, top)
    axes.set_ylim(0, top)
    axes.set_xlabel("CV, survey alone")
    axes.set_ylabel("CV, survey + map")
    axes.legend(loc="upper left")
    axes.grid(alpha=0.3)
    figures["cv"] = save(figure, os.path.join(folder, "cv.png"))

    households, gamma = column("households", sampled), column("gamma", sampled)
    figure = Figure(figsize=(6.4, 4.2))
    axes = figure.add_subplot()
    axes.scatter(households, gamma, s=16, color="#009E73")
    axes.set_xscale("log")
    axes.set_ylim(0, 1)
    axes.set_xlabel("Households surveyed in the district")
    axes.set_ylabel("gamma (weight of the survey)")
    axes.grid(alpha=0.3)
    figures["shrinkage"] = save(figure, os.path.join(folder, "shrinkage.png"))
    return figures
