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

    def initAlgorithm(self, config=None):
        self.add_parameter(
            QgsProcessingParameterFeatureSource(
                self.SURVEY, self.tr("Survey households (points)"), POINT_SOURCES
            ),
        )
        self.add_parameter(
            QgsProcessingParameterField(
                self.SCORE_FIELD,
                self.tr("Poverty score field"),
                "score",
                self.SURVEY,
                QgsProcessingParameterField.DataType.Numeric,
            ),
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.CUTOFF,
                self.tr("Poverty cutoff"),
                QgsProcessingParameterNumber.Type.Double,
                19.0,
            ),
        )
        self.add_parameter(
            QgsProcessingParameterBoolean(
                self.POOR_BELOW, self.tr("Poor when the score is below the cutoff"), True
            ),
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
        )
        self.add_parameter(
            QgsProcessingParameterField(
                self.CLUSTER_FIELD,
                self.tr("Cluster (PSU) field"),
                None,
                self.SURVEY,
                optional=True,
            ),
        )
        self.add_parameter(
            QgsProcessingParameterField(
                self.STRATUM_FIELD,
                self.tr("Stratum field"),
                None,
                self.SURVEY,
                optional=True,
            ),
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
            advanced=True,
        )
        self.add_parameter(
            QgsProcessingParameterFeatureSource(
                self.DISTRICTS, self.tr("Districts to estimate (polygons)"), POLYGON_SOURCES
            ),
        )
        self.add_parameter(
            QgsProcessingParameterField(
                self.DISTRICT_FIELD, self.tr("District name field"), None, self.DISTRICTS
            ),
        )
        self.add_parameter(
            QgsProcessingParameterFeatureSource(
                self.PREDICTIONS, self.tr("Predictions"), POLYGON_SOURCES
            ),
        )
        self.add_parameter(
            QgsProcessingParameterFeatureSource(
                self.OUT_OF_FOLD,
                self.tr("Out-of-fold grid (recommended)"),
                POLYGON_SOURCES,
                optional=True,
            ),
        )
        self.add_parameter(
            QgsProcessingParameterRasterLayer(
                self.POPULATION,
                self.tr("Population raster (people per pixel)"),
                optional=True,
            ),
        )
        self.add_parameter(
            QgsProcessingParameterEnum(
                self.TRANSFORM, self.tr("Transformation"), list(TRANSFORM_OPTIONS), defaultValue=0
            ),
            names=TRANSFORMS,
        )
        self.add_parameter(
            QgsProcessingParameterEnum(
                self.MSE, self.tr("MSE method"), list(MSE_OPTIONS), defaultValue=0
            ),
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
            advanced=True,
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.SEED, self.tr("Random seed"), QgsProcessingParameterNumber.Type.Integer, 42
            ),
            advanced=True,
        )
        self.add_parameter(
            QgsProcessingParameterEnum(
                self.BENCHMARK, self.tr("Benchmarking"), list(BENCHMARK_OPTIONS), defaultValue=0
            ),
            names=BENCHMARKS,
        )
        self.add_parameter(
            QgsProcessingParameterEnum(
                self.VARIANCES, self.tr("Direct variances"), list(VARIANCE_OPTIONS), defaultValue=0
            ),
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
        )
        self.add_parameter(
            QgsProcessingParameterVectorDestination(
                self.OUTPUT,
                self.tr("District estimates"),
                QgsProcessing.SourceType.TypeVectorPolygon,
            ),
        )
        self.add_parameter(
            QgsProcessingParameterFileDestination(
                self.TABLE, self.tr("Estimates table (CSV)"), self.tr("CSV files (*.csv)")
            ),
        )
        self.add_parameter(
            QgsProcessingParameterFileDestination(
                self.REPORT, self.tr("Report (HTML)"), self.tr("HTML files (*.html)")
            ),
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
