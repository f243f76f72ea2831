"""povmap:verificationresults — the returns of the field visits → design-based accuracy with 95 % intervals."""

import os
import shutil

from qgis.core import (
    QgsProcessing,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
)

from ..core.report.page import write_report
from ..core.run_folders import make_run_folder
from ..core.validation.validation_outputs import metrics_csv_path
from ..core.verification.verification_report import report_document
from ..paths import style_path
from .base import POLYGON_SOURCES, PovmapAlgorithm

MAP_WIDTH = 1000
MAP_MAX_HEIGHT = 900
# output key -> (label, metric, part)
NUMBER_OUTPUTS = {
    "OVERALL_ACCURACY": ("Overall accuracy", "overall_accuracy", "estimate"),
    "USERS_ACCURACY_POOR": (
        "User's accuracy of poor (precision)",
        "users_accuracy_poor",
        "estimate",
    ),
    "USERS_ACCURACY_POOR_LOW": ("User's accuracy of poor: 95 % low", "users_accuracy_poor", "low"),
    "USERS_ACCURACY_POOR_HIGH": (
        "User's accuracy of poor: 95 % high",
        "users_accuracy_poor",
        "high",
    ),
    "PRODUCERS_ACCURACY_POOR": (
        "Producer's accuracy of poor (recall)",
        "producers_accuracy_poor",
        "estimate",
    ),
    "POOR_SHARE": ("Estimated share of poor cells", "poor_share", "estimate"),
    "POOR_SHARE_LOW": ("Share of poor cells: 95 % low", "poor_share", "low"),
    "POOR_SHARE_HIGH": ("Share of poor cells: 95 % high", "poor_share", "high"),
}


class VerificationResults(PovmapAlgorithm):
    SAMPLE = "SAMPLE"
    RETURNS = "RETURNS"
    OBSERVED_FIELD = "OBSERVED_FIELD"
    POPULATION = "POPULATION"
    RECALIBRATE = "RECALIBRATE"
    METRICS = "METRICS"
    REPORT = "REPORT"
    NEW_MODEL = "NEW_MODEL"
    METRICS_CSV = "METRICS_CSV"
    VISITED = "VISITED"
    MISSING = "MISSING"

    algorithm_id = "verificationresults"
    display_name = "Accuracy from the verification"
    group_id = "verification"
    group_name = "6 · Field verification"

    def initAlgorithm(self, config=None):
        self.add_parameter(
            QgsProcessingParameterFeatureSource(
                self.SAMPLE, self.tr("Verification sample"), POLYGON_SOURCES
            ),
        )
        self.add_parameter(
            QgsProcessingParameterFile(
                self.RETURNS,
                self.tr("Returns (CSV/XLSX export or edited GeoPackage; empty: the sample itself)"),
                QgsProcessingParameterFile.Behavior.File,
                optional=True,
                fileFilter="Returns (*.csv *.xlsx *.gpkg);;All files (*.*)",
            ),
        )
        self.add_parameter(
            QgsProcessingParameterString(
                self.ID_FIELD, self.tr("Cell id column in the returns"), optional=True
            ),
        )
        self.add_parameter(
            QgsProcessingParameterString(
                self.OBSERVED_FIELD, self.tr("Observed class column"), "observed_poor"
            ),
            advanced=True,
        )
        self.add_parameter(
            QgsProcessingParameterRasterLayer(
                self.POPULATION,
                self.tr("Population raster (people per pixel)"),
                optional=True,
            ),
        )
        self.add_parameter(
            QgsProcessingParameterFile(
                self.RECALIBRATE,
                self.tr("Recalibrate this model package"),
                QgsProcessingParameterFile.Behavior.Folder,
                optional=True,
            ),
            advanced=True,
        )
        self.add_parameter(
            QgsProcessingParameterVectorDestination(
                self.OUTPUT,
                self.tr("Sample with outcomes"),
                QgsProcessing.SourceType.TypeVectorPolygon,
            ),
        )
        self.add_parameter(
            QgsProcessingParameterFileDestination(
                self.METRICS, self.tr("Metrics (JSON)"), self.tr("JSON files (*.json)")
            ),
        )
        self.add_parameter(
            QgsProcessingParameterFileDestination(
                self.REPORT, self.tr("Report (HTML)"), self.tr("HTML files (*.html)")
            ),
        )
        self.add_parameter(
            QgsProcessingParameterFolderDestination(
                self.NEW_MODEL,
                self.tr("Recalibrated model package (with RECALIBRATE)"),
                optional=True,
                createByDefault=False,
            ),
            advanced=True,
        )
        self.addOutput(QgsProcessingOutputString(self.METRICS_CSV, self.tr("Metrics (CSV)")))
        self.addOutput(QgsProcessingOutputNumber(self.VISITED, self.tr("Cells visited")))
        self.addOutput(
            QgsProcessingOutputNumber(self.MISSING, self.tr("Sampled cells not visited"))
        )
        for key, (label, _, _) in NUMBER_OUTPUTS.items():
            self.addOutput(QgsProcessingOutputNumber(key, self.tr(label)))

    def processAlgorithm(self, parameters, context, feedback):
        output = self.output_gpkg(parameters, self.OUTPUT, context)
        metrics = self.output_file(
            parameters, self.METRICS, context, (".json",), beside=[metrics_csv_path]
        )
        report = self.output_file(parameters, self.REPORT, context, (".html", ".htm"))
        recalibrate = self.input_file(parameters, self.RECALIBRATE, context) or None
        new_model = None
        if recalibrate or self.parameterAsString(parameters, self.NEW_MODEL, context):
            new_model = self.output_folder(parameters, self.NEW_MODEL, context, ".povmodel")
        sample_path, sample_layer = self.vector_file(parameters, self.SAMPLE, context, feedback)
        options = {
            "sample_path": sample_path,
            "sample_layer": sample_layer,
            "returns_path": self.input_file(parameters, self.RETURNS, context) or None,
            "id_field": self.parameterAsString(parameters, self.ID_FIELD, context).strip() or None,
            "observed_field": self.parameterAsString(
                parameters, self.OBSERVED_FIELD, context
            ).strip()
            or "observed_poor",
            "population_path": self.raster_file(parameters, self.POPULATION, context),
            "recalibrate_path": recalibrate,
            "new_model_path": new_model,
            "output_path": output,
            "metrics_path": metrics,
            "style_qml_path": style_path("verification_outcome"),
        }
        written = [output, metrics, metrics_csv_path(metrics)] + ([new_model] if new_model else [])
        summary = self.run_core_step("verification_results", options, feedback, outputs=written)
        figures = make_run_folder()  # removed after the run, or by the next if killed
        try:
            feedback.pushInfo("Rendering the map and writing the report…")
            maps = self._render_map(summary, figures, context, feedback)
            write_report(report, **report_document(summary, maps))
        finally:
            shutil.rmtree(figures, ignore_errors=True)
        feedback.pushInfo(f"Report: {report}")
        self.attach_to_run_history([report], feedback)
        results = {
            self.OUTPUT: output,
            self.METRICS: metrics,
            self.METRICS_CSV: metrics_csv_path(metrics),
            self.REPORT: report,
            self.NEW_MODEL: (summary.get("new_model") or {}).get("path"),
            self.VISITED: summary["visits"]["visited"],
            self.MISSING: len(summary["visits"]["missing"]),
        }
        for key, (_, metric, part) in NUMBER_OUTPUTS.items():
            results[key] = (summary.get(metric) or {}).get(part)
        return results

    def _render_map(self, summary, folder, context, feedback):
        """The outcomes (styled from their GeoPackage); [(png path, caption)]."""
        from .rendering import render_output_map

        path = render_output_map(
            summary["output"],
            os.path.join(folder, "map_outcomes.png"),
            "outcomes",
            MAP_WIDTH,
            MAP_MAX_HEIGHT,
            context,
            feedback,
            districts=False,
        )
        if path is None:
            return []
        return [(path, "The visited cells: hits, misses, false alarms, correct rejections")]
