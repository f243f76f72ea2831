"""povmap:crossvalidate — leave-districts-out k-fold cross-validation of the ensemble."""

import os
import shutil

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterVectorDestination,
    QgsVectorLayer,
)

from ..core.names import ENSEMBLE, METRIC_NAMES
from ..core.report.page import write_report
from ..core.run_folders import make_run_folder
from ..core.validation.crossvalidation_report import report_document
from ..core.validation.validation_outputs import metrics_csv_path
from ..paths import style_path
from .base import PovmapAlgorithm
from .layer_names import districts_label, input_layer_name, name_output
from .parameter_values import metric_label
from .training_parameters import TrainingParameters, add_training_parameters, training_options

METRIC_KEYS = METRIC_NAMES
STACKINGS = ["nested", "validation", "off"]  # core.validation.crossvalidation.STACKING_MODES
MAP_WIDTH = 1100
MAP_MAX_HEIGHT = 900


class CrossValidate(TrainingParameters, PovmapAlgorithm):
    REPORT = "REPORT"
    METRICS = "METRICS"
    OUTPUT_GRID = "OUTPUT_GRID"
    METRICS_CSV = "METRICS_CSV"
    FOLDS = "FOLDS"
    STACKING = "STACKING"

    algorithm_id = "crossvalidate"
    display_name = "Cross-validate (leave districts out)"
    group_id = "validation"
    group_name = "4 · Validation"

    def initAlgorithm(self, config=None):
        add_training_parameters(
            self,
            grid_label=self.tr("Labelled grid (with district)"),
            after_members=self._add_folds,
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
        self.add_parameter(
            QgsProcessingParameterVectorDestination(
                self.OUTPUT_GRID,
                self.tr("Grid with folds and out-of-fold predictions"),
                QgsProcessing.SourceType.TypeVectorPolygon,
            ),
        )
        self.addOutput(QgsProcessingOutputString(self.METRICS_CSV, self.tr("Metrics (CSV)")))
        for key in METRIC_KEYS:
            self.addOutput(
                QgsProcessingOutputNumber(
                    key.upper(),
                    self.tr("Ensemble {} (median across folds)").format(metric_label(key)),
                )
            )

    def _add_folds(self):
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.FOLDS, self.tr("Folds"), QgsProcessingParameterNumber.Type.Integer, 6, False, 2
            ),
        )
        self.add_parameter(
            QgsProcessingParameterEnum(
                self.STACKING,
                self.tr("Stacking of members and baseline"),
                [
                    "nested: fitted on inner folds of each fold's training districts",
                    "fitted on each fold's validation cells (cheaper)",
                    "off: the members' mean",
                ],
                False,
                0,
            ),
            names=STACKINGS,
        )

    def processAlgorithm(self, parameters, context, feedback):
        from .rendering import RenderError, category_style

        report = self.output_file(parameters, self.REPORT, context, (".html", ".htm"))
        metrics = self.output_file(
            parameters, self.METRICS, context, (".json",), beside=[metrics_csv_path]
        )
        output_grid = self.output_gpkg(parameters, self.OUTPUT_GRID, context)
        options = training_options(self, parameters, context, feedback)
        folds = self.parameterAsInt(parameters, self.FOLDS, context)
        stacking = STACKINGS[self.parameterAsEnum(parameters, self.STACKING, context)]
        scratch = make_run_folder()  # removed after the run, or by the next if killed
        try:
            fold_style = os.path.join(scratch, "folds.qml")
            extra_styles = [
                (style_path("prediction_class"), "out-of-fold class"),
                (style_path("prediction_probability"), "out-of-fold probability"),
            ]
            try:
                extra_styles.insert(
                    0,
                    (
                        category_style(
                            fold_style,
                            "fold",
                            range(1, folds + 1),
                            "fold {}",
                            "not cross-validated",
                        ),
                        "folds",
                    ),
                )
            except RenderError as error:
                feedback.reportError(
                    f"The fold style could not be made ({error}); the grid is written without it.",
                    fatalError=False,
                )
                fold_style = None
            options.update(
                {
                    "metrics_path": metrics,
                    "output_grid_path": output_grid,
                    "folds": folds,
                    "stacking": stacking,
                    "style_qml_path": style_path("hitmiss"),
                    "extra_styles": extra_styles,
                    "figures_folder": os.path.join(scratch, "figures"),
                }
            )
            summary = self.run_core_step(
                "crossvalidate",
                options,
                feedback,
                outputs=[metrics, metrics_csv_path(metrics), output_grid],
            )
            if feedback.isCanceled():
                raise QgsProcessingException(
                    self.tr("Cancelled: the grid and the metrics are written, the report is not.")
                )
            feedback.pushInfo("Rendering the maps and writing the report…")
            maps = self._render_maps(summary["output_grid"], fold_style, scratch, context, feedback)
            write_report(report, **report_document(summary, maps))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        feedback.pushInfo(f"Report: {report}")
        self.attach_to_run_history([report], feedback)
        name_output(
            summary["output_grid"],
            context,
            self.tr("Cross-validation"),
            districts_label(summary["output_grid"])
            or input_layer_name(self, parameters, self.GRID, context),
            self.tr("{} folds").format(folds),
        )
        results = {
            self.REPORT: report,
            self.METRICS: metrics,
            self.METRICS_CSV: summary["metrics_csv"],
            self.OUTPUT_GRID: summary["output_grid"],
        }
        results.update(
            {key.upper(): summary["summary"][ENSEMBLE][key]["median"] for key in METRIC_KEYS}
        )
        return results

    def _render_maps(self, grid_path, fold_style, folder, context, feedback):
        """PNGs of the folds and of the out-of-fold hits and misses; [(path, caption)]."""
        from .rendering import RenderError, render_styled_map

        maps, fallbacks = [], []
        try:
            drawn = (
                [
                    (
                        fold_style,
                        "folds",
                        "Folds: the districts held out together (grey: cells left out)",
                    )
                ]
                if fold_style
                else []
            )
            drawn.append(
                (
                    None,
                    "hitmiss",
                    "Out-of-fold hits and misses of the ensemble: each cell predicted by members trained "
                    "without its district",
                )
            )
            for style, name, caption in drawn:
                layer = QgsVectorLayer(
                    grid_path, name, "ogr"
                )  # default style from the GeoPackage: hits and misses
                if not layer.isValid():
                    raise RenderError(f"cannot open {grid_path}")
                path, fallback = render_styled_map(
                    os.path.join(folder, f"map_{name}.png"),
                    layer,
                    style,
                    MAP_WIDTH,
                    MAP_MAX_HEIGHT,
                    context.transformContext(),
                )
                fallbacks.append(fallback)
                maps.append((path, caption))
            for why in sorted({why for why in fallbacks if why}):
                feedback.pushWarning(f"Maps drawn without a print layout ({why}).")
        except RenderError as error:
            feedback.reportError(
                f"The maps could not be rendered ({error}); the report has none.", fatalError=False
            )
        return maps
