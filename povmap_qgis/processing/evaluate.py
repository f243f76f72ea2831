"""povmap:evaluate — predictions against observed labels: metrics, hit/miss layer, HTML report."""

import os
import shutil

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterVectorDestination,
    QgsVectorLayer,
)

from ..core.names import RANDOM_DRAWS
from ..core.report.page import write_report
from ..core.run_folders import make_run_folder
from ..core.validation.evaluation_report import report_document
from ..core.validation.validation_outputs import metrics_csv_path
from ..paths import style_path
from .base import POLYGON_SOURCES, PovmapAlgorithm
from .layer_names import districts_label, input_layer_name, model_label, name_output

MAP_WIDTH = 1100
MAP_MAX_HEIGHT = 900
# output key -> (label, where in the worker's summary: ("metrics", model, metric), ("outcomes", outcome) or ("data", key))
NUMBER_OUTPUTS = {
    "CELLS": ("Cells compared", ("data", "common_cells")),
    "RECALL": ("Ensemble recall", ("metrics", "ensemble", "recall")),
    "PRECISION": ("Ensemble precision", ("metrics", "ensemble", "precision")),
    "ACCURACY": ("Ensemble accuracy", ("metrics", "ensemble", "accuracy")),
    "AUC": ("Ensemble AUC (empty when undefined)", ("metrics", "ensemble", "auc")),
    "RANDOM_RECALL": ("Random baseline recall (median)", ("metrics", "random", "recall")),
    "RANDOM_PRECISION": ("Random baseline precision (median)", ("metrics", "random", "precision")),
    "RANDOM_ACCURACY": ("Random baseline accuracy (median)", ("metrics", "random", "accuracy")),
    "HITS": ("Hits (poor, predicted poor)", ("outcomes", "hit")),
    "MISSES": ("Misses (poor, predicted not poor)", ("outcomes", "miss")),
    "FALSE_ALARMS": ("False alarms (not poor, predicted poor)", ("outcomes", "false_alarm")),
    "CORRECT_REJECTIONS": (
        "Correct rejections (not poor, predicted not poor)",
        ("outcomes", "correct_rejection"),
    ),
}


class Evaluate(PovmapAlgorithm):
    PREDICTIONS = "PREDICTIONS"
    TRUTH = "TRUTH"
    RANDOM_DRAWS = "RANDOM_DRAWS"
    SEED = "SEED"
    HITMISS = "HITMISS"
    REPORT = "REPORT"
    METRICS = "METRICS"
    METRICS_CSV = "METRICS_CSV"

    algorithm_id = "evaluate"
    display_name = "Evaluate predictions"
    group_id = "validation"
    group_name = "4 · Validation"

    def initAlgorithm(self, config=None):
        self.add_parameter(
            QgsProcessingParameterFeatureSource(
                self.PREDICTIONS, self.tr("Predictions"), POLYGON_SOURCES
            ),
        )
        self.add_parameter(
            QgsProcessingParameterFeatureSource(
                self.TRUTH, self.tr("Ground truth (labelled grid)"), POLYGON_SOURCES
            ),
        )
        self.add_parameter(
            QgsProcessingParameterField(
                self.ID_FIELD,
                self.tr("Cell id field"),
                None,  # empty: the id recorded in PREDICTIONS, else cell_id (core/validation)
                self.PREDICTIONS,
                QgsProcessingParameterField.DataType.Numeric,
                optional=True,
            ),
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.RANDOM_DRAWS,
                self.tr("Random predictions for the baseline"),
                QgsProcessingParameterNumber.Type.Integer,
                RANDOM_DRAWS,
                False,
                1,
                1000000,
            ),
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.SEED,
                self.tr("Random seed"),
                QgsProcessingParameterNumber.Type.Integer,
                0,
                False,
                0,
            ),
            advanced=True,
        )
        self.add_parameter(
            QgsProcessingParameterVectorDestination(
                self.HITMISS, self.tr("Hits and misses"), QgsProcessing.SourceType.TypeVectorPolygon
            ),
        )
        self.add_parameter(
            QgsProcessingParameterFileDestination(
                self.REPORT, self.tr("Report (HTML)"), self.tr("HTML files (*.html)")
            ),
        )
        self.add_parameter(
            QgsProcessingParameterFileDestination(
                self.METRICS, self.tr("Metrics (JSON)"), self.tr("JSON files (*.json)")
            ),
        )
        self.addOutput(QgsProcessingOutputString(self.METRICS_CSV, self.tr("Metrics (CSV)")))
        for key, (label, _) in NUMBER_OUTPUTS.items():
            self.addOutput(QgsProcessingOutputNumber(key, self.tr(label)))

    def prepareAlgorithm(self, parameters, context, feedback):
        """The inputs' names, read here in the main thread (the project's layers belong to it)."""
        self._names = {
            name: input_layer_name(self, parameters, name, context)
            for name in (self.PREDICTIONS, self.TRUTH)
        }
        return True

    def processAlgorithm(self, parameters, context, feedback):
        hitmiss = self.output_gpkg(parameters, self.HITMISS, context)
        report = self.output_file(parameters, self.REPORT, context, (".html", ".htm"))
        metrics = self.output_file(
            parameters, self.METRICS, context, (".json",), beside=[metrics_csv_path]
        )
        predictions_path, predictions_layer = self.vector_file(
            parameters, self.PREDICTIONS, context, feedback
        )
        truth_path, truth_layer = self.vector_file(parameters, self.TRUTH, context, feedback)
        figures = make_run_folder()  # removed after the run, or by the next if killed
        options = {
            "predictions_path": predictions_path,
            "predictions_layer": predictions_layer,
            "truth_path": truth_path,
            "truth_layer": truth_layer,
            "hitmiss_path": hitmiss,
            "metrics_path": metrics,
            "figures_folder": figures,
            "random_draws": self.parameterAsInt(parameters, self.RANDOM_DRAWS, context),
            "seed": self.parameterAsInt(parameters, self.SEED, context),
            "style_qml_path": style_path("hitmiss"),
            "id_field": self.parameterAsString(parameters, self.ID_FIELD, context) or None,
            "predictions_name": getattr(self, "_names", {}).get(self.PREDICTIONS),
            "truth_name": getattr(self, "_names", {}).get(self.TRUTH),
        }
        try:
            summary = self.run_core_step(
                "evaluate", options, feedback, outputs=[hitmiss, metrics, metrics_csv_path(metrics)]
            )
            if feedback.isCanceled():
                raise QgsProcessingException(
                    self.tr(
                        "Cancelled: the hit/miss layer and the metrics are written, the report is not."
                    )
                )
            feedback.pushInfo("Rendering the maps and writing the report…")
            maps = self._render_maps(
                summary, (predictions_path, predictions_layer), figures, context, feedback
            )
            write_report(report, **report_document(summary, maps))
        finally:
            shutil.rmtree(figures, ignore_errors=True)
        name_output(
            hitmiss,
            context,
            self.tr("Hits and misses"),
            districts_label(hitmiss) or getattr(self, "_names", {}).get(self.TRUTH),
            model_label(summary["settings"].get("model")),
        )
        feedback.pushInfo(f"Report: {report}")
        self.attach_to_run_history([report], feedback)
        results = {
            self.HITMISS: hitmiss,
            self.REPORT: report,
            self.METRICS: metrics,
            self.METRICS_CSV: summary["metrics_csv"],
        }
        for key, (_, where) in NUMBER_OUTPUTS.items():
            results[key] = _lookup(summary, where)
        return results

    def _render_maps(self, summary, predictions, folder, context, feedback):
        """PNGs of the predicted class, the probability and the hits and misses; [(path, caption)].

        ``predictions``: (path, layer name) of the file the worker read. The maps' layers are
        opened from it here, in the algorithm's thread: a layer made in the main thread and
        styled, drawn and dropped here would be changed and deleted under the main thread's
        feet (QGIS crashed delivering an event to such a layer, 1 desktop run in 5).
        """
        from .rendering import RenderError, outline_renderer, render_styled_map, render_with_context

        maps, fallbacks = [], []
        predictions_path, layer_name = predictions
        source = f"{predictions_path}|layername={layer_name}" if layer_name else predictions_path
        label = getattr(self, "_names", {}).get(self.PREDICTIONS) or "predictions"
        # without the GeoPackage's default style, as Processing loads a layer: each map sets its own
        options = QgsVectorLayer.LayerOptions()
        options.loadDefaultStyle = False
        try:
            map_layers = [QgsVectorLayer(source, label, "ogr", options) for _ in range(3)]
            if not all(layer.isValid() for layer in map_layers):
                raise RenderError(f"cannot open {source}")
            hitmiss = QgsVectorLayer(
                summary["hitmiss"], "hits and misses", "ogr"
            )  # styled from the GeoPackage
            if not hitmiss.isValid():
                raise RenderError(f"cannot open {summary['hitmiss']}")
            transform_context = context.transformContext()
            class_layer, probability_layer, outline_layer = map_layers
            for layer, style, name, caption in (
                (
                    class_layer,
                    "prediction_class",
                    "class",
                    "Predicted class: the ensemble's pred (all predicted cells)",
                ),
                (
                    probability_layer,
                    "prediction_probability",
                    "probability",
                    "Probability of being poor: mean of the members (all predicted cells)",
                ),
            ):
                path, fallback = render_styled_map(
                    os.path.join(folder, f"map_{name}.png"),
                    layer,
                    style_path(style),
                    MAP_WIDTH,
                    MAP_MAX_HEIGHT,
                    transform_context,
                )
                fallbacks.append(fallback)
                maps.append((path, caption))
            outline_layer.setRenderer(outline_renderer("#9a9a9a", 0.15))
            path, fallback = render_with_context(
                os.path.join(folder, "map_hitmiss.png"),
                [hitmiss, outline_layer],
                MAP_WIDTH,
                districts_of=outline_layer,
                extent_layer=outline_layer,
                legend_layers=[hitmiss],
                transform_context=transform_context,
                max_height=MAP_MAX_HEIGHT,
            )
            fallbacks.append(fallback)
            maps.append(
                (
                    path,
                    "Hits and misses of the ensemble on the compared cells (grey outlines: predicted cells without a label)",
                )
            )
            for why in sorted({why for why in fallbacks if why}):
                feedback.pushWarning(f"Maps drawn without a print layout ({why}).")
        except RenderError as error:
            feedback.reportError(
                f"The maps could not be rendered ({error}); the report has none.", fatalError=False
            )
        return maps


def _lookup(summary, where):
    if where[0] == "metrics":
        return summary["metrics"]["all"][where[1]][where[2]]
    if where[0] == "outcomes":
        return summary["outcomes"]["all"][where[1]]
    return summary[where[0]][where[1]]
