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

from ..core.verification.design import MIN_PER_STRATUM
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
    summary = (
        "Draws the cells to check in the field before a programme commits a budget: a stratified random "
        "sample of a prediction layer (strata: the predicted class × how uncertain the cell is, terciles of "
        "its interval's width) or of a targeting output (selected × predicted class). Each stratum gets at "
        f"least {MIN_PER_STRATUM} cells, the rest of the sample in proportion to its cells. Writes the "
        "sampled cells (centre latitude/longitude, stratum, inclusion probability, weight, the map's "
        "prob_mean and pred, and empty visit fields), an XLSForm for ODK Collect / KoBoToolbox listing the "
        "cells, and optionally a QGIS project with the form set up for QField. The design is recorded in the "
        "layer, and Accuracy from the verification turns the returns into accuracy estimates with 95 % "
        "intervals."
    )

    def initAlgorithm(self, config=None):
        self.add_parameter(
            QgsProcessingParameterFeatureSource(
                self.PREDICTIONS, self.tr("Predictions"), POLYGON_SOURCES
            ),
            "A prediction layer from Predict poverty (cell id, prob_mean, pred; prob_low/prob_high for "
            "the uncertainty strata) or the selection written by Target a budget (its selected field makes "
            "the strata selected × class). Cells without a prediction or flagged for too much nodata "
            "(chip_flagged) are never drawn.",
        )
        self.add_parameter(
            QgsProcessingParameterRasterLayer(
                self.POPULATION, self.tr("Population raster (people per pixel)"), optional=True
            ),
            "People per pixel, any CRS (WorldPop, GHS-POP). Cells where nobody lives are never drawn, each "
            "sampled cell carries its people, and the results then estimate the share of poor people too.",
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.SAMPLE_SIZE,
                self.tr("Cells to visit (empty: from the target half-width)"),
                QgsProcessingParameterNumber.Type.Integer,
                optional=True,
                minValue=2,
            ),
            "How many cells the field teams can visit. Empty: as many as TARGET_HALF_WIDTH needs. Every "
            f"stratum gets at least {MIN_PER_STRATUM} cells (all of them when it has fewer), which can "
            "make the sample a little larger.",
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
            "Used when SAMPLE_SIZE is empty: the sample size is the one giving the overall accuracy a 95 % "
            "interval of ± this much (0.08 = ± 8 points) by the textbook formula n = 1.96² p (1 − p) / h², "
            "p the accuracy the calibrated probabilities expect, corrected for the number of cells. The "
            "precision and recall of poor get wider intervals (fewer cells each).",
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.MIN_DISTANCE,
                self.tr("Minimum distance between sampled cells (metres)"),
                QgsProcessingParameterNumber.Type.Double,
                optional=True,
                minValue=0,
            ),
            "Cells whose centres lie closer than this to a cell already drawn are passed over (a spread-out "
            "sample, fewer cells sharing one visit's conditions). Keep it small against the area: a stratum "
            "that cannot be filled is reported.",
            advanced=True,
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.SEED, self.tr("Random seed"), QgsProcessingParameterNumber.Type.Integer, 0
            ),
            "The same seed on the same layer draws the same cells (record it with the campaign).",
        )
        self.add_parameter(
            QgsProcessingParameterVectorDestination(
                self.OUTPUT,
                self.tr("Verification sample"),
                QgsProcessing.SourceType.TypeVectorPolygon,
            ),
            "GeoPackage of the sampled cells: id, district, lat/lon of the centre, stratum, "
            "inclusion_probability, weight, prob_mean, pred, the empty visit fields observed_poor, "
            "households_visited, households_poor, visit_date, notes. The design (the strata table: cells, "
            "cells drawn, weights) is recorded in the layer's metadata; do not edit the weights.",
        )
        self.add_parameter(
            QgsProcessingParameterFileDestination(
                self.FORM,
                self.tr("XLSForm for ODK / KoBo"),
                self.tr("XLSForm (*.xlsx)"),
                optional=True,
            ),
            "An XLSForm to upload to ODK Central or KoBoToolbox: the cell picked from the sampled cells (a "
            "list, or a map in ODK Collect), GPS point, date, households visited, households judged poor by "
            "the programme's rule, whether the cell is poor, photo, notes. Add your scorecard's questions "
            "inside the 'visit' group; keep these names.",
        )
        self.add_parameter(
            QgsProcessingParameterFileDestination(
                self.FIELD_PROJECT,
                self.tr("QField project"),
                self.tr("QGIS project (*.qgz)"),
                optional=True,
                createByDefault=False,
            ),
            "A QGIS project holding the sample layer with its form set up for QField (value map for "
            "observed_poor, counts with poor ≤ visited, today's date, design fields read-only). Write it in "
            "the folder of OUTPUT and copy both to the phone, or package it with QFieldSync.",
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
