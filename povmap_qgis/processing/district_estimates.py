"""povmap:districtestimates — survey + map → district poverty a statistics office can publish (Fay–Herriot)."""

import os
import shutil

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterVectorDestination,
    QgsVectorLayer,
)

from ..core.estimation.district_estimates import BENCHMARKS, MSE_METHODS, TRANSFORMS, VARIANCES
from ..core.estimation.district_estimates_report import report_document
from ..core.names import DEFAULT_CELL_SIZE
from ..core.report.page import write_report
from ..core.run_folders import make_run_folder
from ..paths import style_path
from .base import POINT_SOURCES, POLYGON_SOURCES, PovmapAlgorithm

MAP_WIDTH = 1100
MAP_MAX_HEIGHT = 900
TRANSFORM_OPTIONS = (
    "None: model the shares as they are",
    "Arcsin square root (variance-stabilising, bias-corrected back-transformation)",
)
MSE_OPTIONS = (
    "Analytical (Prasad–Rao / Datta–Lahiri)",
    "Parametric bootstrap (BOOTSTRAP_DRAWS, seeded)",
)
VARIANCE_OPTIONS = (
    "Direct: each district's own design variance (smoothed only where it has none)",
    "Smoothed: every district's variance from the generalised variance function",
)
BENCHMARK_OPTIONS = (
    "None",
    "National: scale the estimates to the survey's national direct estimate",
)
# output key -> (label, the worker summary's key)
NUMBER_OUTPUTS = {
    "DISTRICTS": ("Districts", "districts"),
    "SAMPLED_DISTRICTS": ("Districts with survey households", "sampled_districts"),
    "MEDIAN_CV_DIRECT": ("Median CV of the direct estimates", "median_cv_direct"),
    "MEDIAN_CV_ESTIMATE": ("Median CV of the estimates", "median_cv_estimate"),
    "PUBLISHABLE_DIRECT": ("Districts publishable from the survey alone", "publishable_direct"),
    "PUBLISHABLE_ESTIMATE": ("Districts publishable with the map", "publishable_estimate"),
    "SIGMA2_U": ("Variance between districts (σ²u)", ("model", "sigma2_u")),
    "NATIONAL_DIRECT": ("National direct estimate", "national_direct"),
}


class DistrictEstimates(PovmapAlgorithm):
    SURVEY = "SURVEY"
    SCORE_FIELD = "SCORE_FIELD"
    CUTOFF = "CUTOFF"
    POOR_BELOW = "POOR_BELOW"
    WEIGHT_FIELD = "WEIGHT_FIELD"
    CLUSTER_FIELD = "CLUSTER_FIELD"
    STRATUM_FIELD = "STRATUM_FIELD"
    CELL_SIZE = "CELL_SIZE"
    DISTRICTS = "DISTRICTS"
    DISTRICT_FIELD = "DISTRICT_FIELD"
    PREDICTIONS = "PREDICTIONS"
    OUT_OF_FOLD = "OUT_OF_FOLD"
    POPULATION = "POPULATION"
    TRANSFORM = "TRANSFORM"
    MSE = "MSE"
    BOOTSTRAP_DRAWS = "BOOTSTRAP_DRAWS"
    SEED = "SEED"
    BENCHMARK = "BENCHMARK"
    VARIANCES = "VARIANCES"
    CV_THRESHOLD = "CV_THRESHOLD"
    TABLE = "TABLE"
    REPORT = "REPORT"

    algorithm_id = "districtestimates"
    display_name = "Estimate district poverty (small areas)"
    group_id = "decisions"
    group_name = "5 · Decisions"
    summary = (
        "What a statistics office publishes: the poverty rate of every district (any admin level) with "
        "its error. The survey's own (direct) estimate of each district — the weighted share of poor "
        "households, with its design-based standard error — is combined with the poverty map's district "
        "mean in a Fay–Herriot small area model: each estimate lies between the survey and the map, "
        "weighted by how reliable each is. Districts without survey households get the map's (synthetic) "
        "estimate. Writes the districts with direct, estimate, MSE, standard error, CV, 95 % interval, "
        "shrinkage factor gamma, a publishable flag (CV at most CV_THRESHOLD) and people in poverty "
        "(styled: publishable districts by estimate, the others grey and hatched), the same as CSV, and an "
        "HTML report: the plain summary, direct against estimate, CV before and after, the model's fit "
        "and a map. Household points are never written."
    )

    def initAlgorithm(self, config=None):
        self.add_parameter(
            QgsProcessingParameterFeatureSource(
                self.SURVEY, self.tr("Survey households (points)"), POINT_SOURCES
            ),
            "The household survey points Build training grid takes (any CRS). Read for their score, "
            "weight, cluster and stratum; never written out.",
        )
        self.add_parameter(
            QgsProcessingParameterField(
                self.SCORE_FIELD,
                self.tr("Poverty score field"),
                "score",
                self.SURVEY,
                QgsProcessingParameterField.DataType.Numeric,
            ),
            "Numeric score of each household (e.g. the Simple Poverty Scorecard). Households without "
            "a score are left out and counted.",
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.CUTOFF,
                self.tr("Poverty cutoff"),
                QgsProcessingParameterNumber.Type.Double,
                19.0,
            ),
            "A household is poor when its score is below this value (the labelling rule of Build "
            "training grid, applied to each household).",
        )
        self.add_parameter(
            QgsProcessingParameterBoolean(
                self.POOR_BELOW, self.tr("Poor when the score is below the cutoff"), True
            ),
            "Checked: poor when the score is strictly below CUTOFF. Unchecked: poor when strictly "
            "above, for deprivation scores where higher means poorer.",
        )
        self.add_parameter(
            QgsProcessingParameterField(
                self.WEIGHT_FIELD,
                self.tr("Sampling weight field"),
                None,
                self.SURVEY,
                QgsProcessingParameterField.DataType.Numeric,
                optional=True,
            ),
            "Each household's sampling weight (households it represents). Empty: equal weights. "
            "Every weight must be positive.",
        )
        self.add_parameter(
            QgsProcessingParameterField(
                self.CLUSTER_FIELD,
                self.tr("Cluster (PSU) field"),
                None,
                self.SURVEY,
                optional=True,
            ),
            "The survey's primary sampling unit (enumeration area) of each household, for the "
            "design-based variance. Empty: the households of one grid cell of CELL_SIZE form a cluster.",
        )
        self.add_parameter(
            QgsProcessingParameterField(
                self.STRATUM_FIELD,
                self.tr("Stratum field"),
                None,
                self.SURVEY,
                optional=True,
            ),
            "The survey's stratum of each household; clusters are taken within their stratum. Empty: "
            "one stratum.",
            advanced=True,
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.CELL_SIZE,
                self.tr("Cell size for clusters without CLUSTER_FIELD (m)"),
                QgsProcessingParameterNumber.Type.Double,
                DEFAULT_CELL_SIZE,
                False,
                1.0,
            ),
            "Without CLUSTER_FIELD, households of one cell of this size (aligned as the training grid) "
            "form a cluster.",
            advanced=True,
        )
        self.add_parameter(
            QgsProcessingParameterFeatureSource(
                self.DISTRICTS, self.tr("Districts to estimate (polygons)"), POLYGON_SOURCES
            ),
            "The areas to publish, at any admin level (districts, sub-districts). Polygons sharing a "
            "name are one district.",
        )
        self.add_parameter(
            QgsProcessingParameterField(
                self.DISTRICT_FIELD, self.tr("District name field"), None, self.DISTRICTS
            ),
            "The field of DISTRICTS holding each district's name.",
        )
        self.add_parameter(
            QgsProcessingParameterFeatureSource(
                self.PREDICTIONS, self.tr("Predictions"), POLYGON_SOURCES
            ),
            "A prediction layer from Predict poverty (calibrated prob_mean) covering the districts. A "
            "cell belongs to the district holding its centre. Districts without predicted cells get no "
            "map value: the survey alone (or no estimate).",
        )
        self.add_parameter(
            QgsProcessingParameterFeatureSource(
                self.OUT_OF_FOLD,
                self.tr("Out-of-fold grid (recommended)"),
                POLYGON_SOURCES,
                optional=True,
            ),
            "The grid written by Cross-validate by district (OUTPUT_GRID): its out-of-fold prob_mean "
            "replaces the predictions of the cells it covers. The model was trained on the survey's own "
            "cells; a map value computed from in-sample predictions looks better there than it is and "
            "the model then trusts the map too much.",
        )
        self.add_parameter(
            QgsProcessingParameterRasterLayer(
                self.POPULATION,
                self.tr("Population raster (people per pixel)"),
                optional=True,
            ),
            "People per pixel, any CRS (e.g. WorldPop): summed per cell as Target a budget does; the "
            "map's district value is then the population-weighted mean of prob_mean, and population and "
            "poor_people are filled. Empty: every cell weighs the same.",
        )
        self.add_parameter(
            QgsProcessingParameterEnum(
                self.TRANSFORM, self.tr("Transformation"), list(TRANSFORM_OPTIONS), defaultValue=0
            ),
            "none: model the shares directly. arcsin: model arcsin(√share), whose variance depends only "
            "on the effective sample size (better for shares near 0 or 1, and for districts with few "
            "households), back-transformed with a bias correction; its MSE then comes from the bootstrap.",
            names=TRANSFORMS,
        )
        self.add_parameter(
            QgsProcessingParameterEnum(
                self.MSE, self.tr("MSE method"), list(MSE_OPTIONS), defaultValue=0
            ),
            "analytical: the Prasad–Rao formula (Datta–Lahiri's form for REML), fast. bootstrap: the "
            "parametric bootstrap (BOOTSTRAP_DRAWS draws, SEED), slower, also for arcsin.",
            names=MSE_METHODS,
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.BOOTSTRAP_DRAWS,
                self.tr("Bootstrap draws"),
                QgsProcessingParameterNumber.Type.Integer,
                200,
                False,
                10,
            ),
            "Draws of the parametric bootstrap (MSE bootstrap, or TRANSFORM arcsin). 200 is usual; more "
            "makes the MSE steadier.",
            advanced=True,
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.SEED, self.tr("Random seed"), QgsProcessingParameterNumber.Type.Integer, 42
            ),
            "Seed of the bootstrap draws: the same seed gives the same MSEs.",
            advanced=True,
        )
        self.add_parameter(
            QgsProcessingParameterEnum(
                self.BENCHMARK, self.tr("Benchmarking"), list(BENCHMARK_OPTIONS), defaultValue=0
            ),
            "national: multiply every estimate (and its error) by one factor so that their "
            "population-weighted mean (cell counts without POPULATION) equals the survey's national "
            "direct estimate, as published figures must add up. Estimates are held at most 1.",
            names=BENCHMARKS,
        )
        self.add_parameter(
            QgsProcessingParameterEnum(
                self.VARIANCES, self.tr("Direct variances"), list(VARIANCE_OPTIONS), defaultValue=0
            ),
            "direct: each district keeps its own design variance (the generalised variance function "
            "only where it has none: all or none poor, one cluster). smoothed: every district takes "
            "the variance its number of households implies (design effect × p̄(1 − p̄) / households): "
            "the model takes the variances as known, and a district's own variance from 2–5 clusters "
            "is itself noisy, sometimes far too small, which makes intervals too narrow.",
            advanced=True,
            names=VARIANCES,
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.CV_THRESHOLD,
                self.tr("Largest CV for publishing"),
                QgsProcessingParameterNumber.Type.Double,
                0.20,
                False,
                0.0,
            ),
            "A district is publishable when its coefficient of variation (standard error / estimate) is "
            "at most this (0.2 = 20 %, a common rule of statistics offices).",
        )
        self.add_parameter(
            QgsProcessingParameterVectorDestination(
                self.OUTPUT,
                self.tr("District estimates"),
                QgsProcessing.SourceType.TypeVectorPolygon,
            ),
            "GeoPackage of the districts with district, households, clusters, direct, direct_se, "
            "direct_cv, variance_smoothed, covariate (the map's value), estimate, mse, se, cv, low, high "
            "(95 %), gamma, in_sample, publishable, population, poor_people, poor_people_low and "
            "poor_people_high; styled by estimate, non-publishable districts grey and hatched.",
        )
        self.add_parameter(
            QgsProcessingParameterFileDestination(
                self.TABLE, self.tr("Estimates table (CSV)"), self.tr("CSV files (*.csv)")
            ),
            "The same fields as OUTPUT, one row per district, without geometries.",
        )
        self.add_parameter(
            QgsProcessingParameterFileDestination(
                self.REPORT, self.tr("Report (HTML)"), self.tr("HTML files (*.html)")
            ),
            "One self-contained HTML file: the plain summary first, direct against estimate with "
            "intervals, CV before and after, the model's fit, the districts and maps of the estimates "
            "and of the CV.",
        )
        for key, (label, _) in NUMBER_OUTPUTS.items():
            self.addOutput(QgsProcessingOutputNumber(key, self.tr(label)))

    def processAlgorithm(self, parameters, context, feedback):
        output = self.output_gpkg(parameters, self.OUTPUT, context)
        table = self.output_file(parameters, self.TABLE, context, (".csv",))
        report = self.output_file(parameters, self.REPORT, context, (".html", ".htm"))
        survey_path, survey_layer = self.vector_file(parameters, self.SURVEY, context, feedback)
        districts_path, districts_layer = self.vector_file(
            parameters, self.DISTRICTS, context, feedback
        )
        predictions_path, predictions_layer = self.vector_file(
            parameters, self.PREDICTIONS, context, feedback
        )
        oof_path, oof_layer = self.vector_file(parameters, self.OUT_OF_FOLD, context, feedback)
        figures = make_run_folder()  # removed after the run, or by the next if killed
        options = {
            "survey_path": survey_path,
            "survey_layer": survey_layer,
            "score_field": self.parameterAsString(parameters, self.SCORE_FIELD, context),
            "cutoff": self.parameterAsDouble(parameters, self.CUTOFF, context),
            "poor_below": self.parameterAsBoolean(parameters, self.POOR_BELOW, context),
            "weight_field": self.parameterAsString(parameters, self.WEIGHT_FIELD, context) or None,
            "cluster_field": self.parameterAsString(parameters, self.CLUSTER_FIELD, context)
            or None,
            "stratum_field": self.parameterAsString(parameters, self.STRATUM_FIELD, context)
            or None,
            "cell_size": self.parameterAsDouble(parameters, self.CELL_SIZE, context),
            "districts_path": districts_path,
            "districts_layer": districts_layer,
            "district_field": self.parameterAsString(parameters, self.DISTRICT_FIELD, context),
            "predictions_path": predictions_path,
            "predictions_layer": predictions_layer,
            "out_of_fold_path": oof_path,
            "out_of_fold_layer": oof_layer,
            "population_path": self.raster_file(parameters, self.POPULATION, context),
            "transform": TRANSFORMS[self.parameterAsEnum(parameters, self.TRANSFORM, context)],
            "mse": MSE_METHODS[self.parameterAsEnum(parameters, self.MSE, context)],
            "bootstrap_draws": self.parameterAsInt(parameters, self.BOOTSTRAP_DRAWS, context),
            "seed": self.parameterAsInt(parameters, self.SEED, context),
            "benchmark": BENCHMARKS[self.parameterAsEnum(parameters, self.BENCHMARK, context)],
            "variances": VARIANCES[self.parameterAsEnum(parameters, self.VARIANCES, context)],
            "cv_threshold": self.parameterAsDouble(parameters, self.CV_THRESHOLD, context),
            "output_path": output,
            "table_path": table,
            "figures_folder": figures,
            "style_qml_path": style_path("district_estimates"),
        }
        try:
            summary = self.run_core_step(
                "district_estimates", options, feedback, outputs=[output, table]
            )
            if feedback.isCanceled():
                raise QgsProcessingException(
                    self.tr(
                        "Cancelled: the estimates and the table are written, the report is not."
                    )
                )
            feedback.pushInfo("Rendering the maps and writing the report…")
            maps = self._render_maps(summary, figures, context, feedback)
            write_report(report, **report_document(summary, maps))
        finally:
            shutil.rmtree(figures, ignore_errors=True)
        feedback.pushInfo(f"Report: {report}")
        self.attach_to_run_history([report], feedback)
        results = {self.OUTPUT: output, self.TABLE: table, self.REPORT: report}
        for key, (_, where) in NUMBER_OUTPUTS.items():
            value = summary
            for part in (where,) if isinstance(where, str) else where:
                value = value.get(part) if isinstance(value, dict) else None
            results[key] = value
        return results

    def _render_maps(self, summary, folder, context, feedback):
        """The estimates (the layer's own style) and the CV; [(png path, caption)]."""
        from .rendering import RenderError, render_with_context

        layer_name = os.path.splitext(os.path.basename(summary["output"]))[0]
        maps = []
        for name, style, caption in (
            (
                "map_estimates.png",
                None,
                f"Estimated share of poor households; grey hatched: not publishable (CV above "
                f"{100 * summary['cv_threshold']:.0f} %) or no estimate",
            ),
            ("map_cv.png", style_path("district_cv"), "Coefficient of variation of the estimates"),
        ):
            try:
                layer = QgsVectorLayer(
                    f"{summary['output']}|layername={layer_name}", "districts", "ogr"
                )
                if not layer.isValid():
                    raise RenderError(f"cannot open {summary['output']}")
                if style:
                    layer.loadNamedStyle(style)
                path, fallback = render_with_context(
                    os.path.join(folder, name),
                    [layer],
                    MAP_WIDTH,
                    extent_layer=layer,
                    legend_layers=[layer],
                    transform_context=context.transformContext(),
                    max_height=MAP_MAX_HEIGHT,
                )
                if fallback:
                    feedback.pushWarning(f"Map drawn without a print layout ({fallback}).")
                maps.append((path, caption))
            except RenderError as error:
                feedback.reportError(
                    f"The map could not be rendered ({error}); the report lacks it.",
                    fatalError=False,
                )
        return maps
