"""povmap:verificationsample — a stratified random sample of cells to visit, with an XLSForm and a QField project."""

import os

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterVectorDestination,
)

from ..core.verification.verification_sample import DEFAULT_HALF_WIDTH
from ..paths import style_path
from .base import POLYGON_SOURCES, PovmapAlgorithm


class VerificationSample(PovmapAlgorithm):
    PREDICTIONS = "PREDICTIONS"
    POPULATION = "POPULATION"
    SAMPLE_SIZE = "SAMPLE_SIZE"
    TARGET_HALF_WIDTH = "TARGET_HALF_WIDTH"
    MIN_DISTANCE = "MIN_DISTANCE"
    SEED = "SEED"
    FORM = "FORM"
    FIELD_PROJECT = "FIELD_PROJECT"
    CELLS = "CELLS"
    SAMPLED = "SAMPLED"

    algorithm_id = "verificationsample"
    display_name = "Draw a verification sample"
    group_id = "verification"
    group_name = "6 · Field verification"

    def initAlgorithm(self, config=None):
        self.add_parameter(
            QgsProcessingParameterFeatureSource(
                self.PREDICTIONS, self.tr("Predictions"), POLYGON_SOURCES
            ),
        )
        self.add_parameter(
            QgsProcessingParameterRasterLayer(
                self.POPULATION, self.tr("Population raster (people per pixel)"), optional=True
            ),
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.SAMPLE_SIZE,
                self.tr("Cells to visit (empty: from the target half-width)"),
                QgsProcessingParameterNumber.Type.Integer,
                optional=True,
                minValue=2,
            )
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.TARGET_HALF_WIDTH,
                self.tr("Target half-width of the accuracy's 95 % interval"),
                QgsProcessingParameterNumber.Type.Double,
                DEFAULT_HALF_WIDTH,
                minValue=0.005,
                maxValue=0.49,
            ),
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.MIN_DISTANCE,
                self.tr("Minimum distance between sampled cells (metres)"),
                QgsProcessingParameterNumber.Type.Double,
                optional=True,
                minValue=0,
            ),
            advanced=True,
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.SEED, self.tr("Random seed"), QgsProcessingParameterNumber.Type.Integer, 0
            ),
        )
        self.add_parameter(
            QgsProcessingParameterVectorDestination(
                self.OUTPUT,
                self.tr("Verification sample"),
                QgsProcessing.SourceType.TypeVectorPolygon,
            ),
        )
        self.add_parameter(
            QgsProcessingParameterFileDestination(
                self.FORM,
                self.tr("XLSForm for ODK / KoBo"),
                self.tr("XLSForm (*.xlsx)"),
                optional=True,
            ),
        )
        self.add_parameter(
            QgsProcessingParameterFileDestination(
                self.FIELD_PROJECT,
                self.tr("QField project"),
                self.tr("QGIS project (*.qgz)"),
                optional=True,
                createByDefault=False,
            ),
        )
        self.addOutput(QgsProcessingOutputNumber(self.CELLS, self.tr("Cells that could be drawn")))
        self.addOutput(QgsProcessingOutputNumber(self.SAMPLED, self.tr("Cells drawn")))

    def processAlgorithm(self, parameters, context, feedback):
        output = self.output_gpkg(parameters, self.OUTPUT, context)
        form = (
            self.output_file(parameters, self.FORM, context, (".xlsx",))
            if self.parameterAsFileOutput(parameters, self.FORM, context)
            else None
        )
        project = (
            self.output_file(parameters, self.FIELD_PROJECT, context, (".qgz",))
            if self.parameterAsFileOutput(parameters, self.FIELD_PROJECT, context)
            else None
        )
        predictions_path, predictions_layer = self.vector_file(
            parameters, self.PREDICTIONS, context, feedback
        )
        sample_size = (
            None
            if parameters.get(self.SAMPLE_SIZE) in (None, "")
            else self.parameterAsInt(parameters, self.SAMPLE_SIZE, context)
        )
        options = {
            "predictions_path": predictions_path,
            "predictions_layer": predictions_layer,
            "output_path": output,
            "form_path": form,
            "population_path": self.raster_file(parameters, self.POPULATION, context),
            "sample_size": sample_size,
            "target_half_width": None
            if sample_size is not None
            else self.parameterAsDouble(parameters, self.TARGET_HALF_WIDTH, context),
            "min_distance": (
                None
                if parameters.get(self.MIN_DISTANCE) in (None, "")
                else self.parameterAsDouble(parameters, self.MIN_DISTANCE, context) or None
            ),
            "seed": self.parameterAsInt(parameters, self.SEED, context),
            "style_qml_path": style_path("verification_sample"),
        }
        outputs = [path for path in (output, form) if path]
        summary = self.run_core_step("verification_sample", options, feedback, outputs=outputs)
        if project:
            from .field_project import write_field_project

            feedback.pushInfo("Writing the QField project…")
            try:
                write_field_project(
                    output,
                    os.path.splitext(os.path.basename(output))[0],
                    project,
                    "Verification sample",
                )
            except RuntimeError as error:
                raise QgsProcessingException(f"{self.FIELD_PROJECT}: {error}") from None
        return {
            self.OUTPUT: output,
            self.FORM: form,
            self.FIELD_PROJECT: project,
            self.CELLS: summary["cells"],
            self.SAMPLED: summary["sampled"],
        }
