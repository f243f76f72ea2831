"""povmap:target — a budget of cells or people → the cells to enrol, with expected (and measured) errors."""

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
)

from ..core.decision.targeting import BUDGET_UNITS, RANK_BY
from ..core.decision.targeting_report import budget_text, report_document
from ..core.report.page import write_report
from ..core.run_folders import make_run_folder
from ..paths import style_path
from .base import POLYGON_SOURCES, PovmapAlgorithm
from .layer_names import districts_label, input_layer_name, name_output

OUTPUT_DECIMALS = 6  # the numeric outputs' precision (sums of shares carry float noise)
MAP_WIDTH = 1100
MAP_MAX_HEIGHT = 900
BUDGET_UNIT_OPTIONS = (
    "Cells (BUDGET cells)",
    "People (BUDGET people; needs POPULATION)",
    "Share of the cells (BUDGET between 0 and 1)",
    "Share of the people (BUDGET between 0 and 1; needs POPULATION)",
)
RANK_BY_OPTIONS = (
    "Probability of being poor (prob_mean)",
    "Expected poor people (prob_mean × people; needs POPULATION)",
)
# output key -> (label, where in the worker's summary)
NUMBER_OUTPUTS = {
    "SELECTED_CELLS": ("Selected cells", ("selected_cells",)),
    "SELECTED_PEOPLE": ("Selected people (empty without POPULATION)", ("selected_people",)),
    "EXPECTED_COVERAGE": ("Expected share of the poor covered", ("expected", "coverage")),
    "EXPECTED_INCLUSION_ERROR": (
        "Expected inclusion error (share of the enrolled not poor)",
        ("expected", "inclusion_error"),
    ),
    "EXPECTED_EXCLUSION_ERROR": (
        "Expected exclusion error (share of the poor left out)",
        ("expected", "exclusion_error"),
    ),
    "MEASURED_COVERAGE": (
        "Measured share of the poor covered (with TRUTH)",
        ("measured", "measured", "coverage"),
    ),
    "MEASURED_INCLUSION_ERROR": (
        "Measured inclusion error (with TRUTH)",
        ("measured", "measured", "inclusion_error"),
    ),
    "MEASURED_EXCLUSION_ERROR": (
        "Measured exclusion error (with TRUTH)",
        ("measured", "measured", "exclusion_error"),
    ),
}


class Target(PovmapAlgorithm):
    PREDICTIONS = "PREDICTIONS"
    POPULATION = "POPULATION"
    BUDGET_UNIT = "BUDGET_UNIT"
    BUDGET = "BUDGET"
    RANK_BY = "RANK_BY"
    DISTRICT_MIN_SHARE = "DISTRICT_MIN_SHARE"
    DISTRICT_MAX_SHARE = "DISTRICT_MAX_SHARE"
    SKIP_OUT_OF_RANGE = "SKIP_OUT_OF_RANGE"
    TRUTH = "TRUTH"
    ALLOCATION = "ALLOCATION"
    REPORT = "REPORT"

    algorithm_id = "target"
    display_name = "Target a budget"
    group_id = "decisions"
    group_name = "5 · Decisions"

    def initAlgorithm(self, config=None):
        self.add_parameter(
            QgsProcessingParameterFeatureSource(
                self.PREDICTIONS, self.tr("Predictions"), POLYGON_SOURCES
            ),
        )
        self.add_parameter(
            QgsProcessingParameterField(
                self.ID_FIELD,
                self.tr("Cell id field"),
                None,
                self.PREDICTIONS,
                QgsProcessingParameterField.DataType.Numeric,
                optional=True,
            ),
        )
        self.add_parameter(
            QgsProcessingParameterRasterLayer(
                self.POPULATION, self.tr("Population raster (people per pixel)"), optional=True
            ),
        )
        self.add_parameter(
            QgsProcessingParameterEnum(
                self.BUDGET_UNIT, self.tr("Budget unit"), list(BUDGET_UNIT_OPTIONS), defaultValue=2
            ),
            names=BUDGET_UNITS,
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.BUDGET,
                self.tr("Budget"),
                QgsProcessingParameterNumber.Type.Double,
                0.3,
            ),
        )
        self.add_parameter(
            QgsProcessingParameterEnum(
                self.RANK_BY, self.tr("Rank cells by"), list(RANK_BY_OPTIONS), defaultValue=0
            ),
            names=RANK_BY,
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.DISTRICT_MIN_SHARE,
                self.tr("Floor per district (share)"),
                QgsProcessingParameterNumber.Type.Double,
                optional=True,
            ),
            advanced=True,
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.DISTRICT_MAX_SHARE,
                self.tr("Cap per district (share)"),
                QgsProcessingParameterNumber.Type.Double,
                optional=True,
            ),
            advanced=True,
        )
        self.add_parameter(
            QgsProcessingParameterBoolean(
                self.SKIP_OUT_OF_RANGE,
                self.tr("Leave out cells outside the model's training range"),
                False,
            ),
            advanced=True,
        )
        self.add_parameter(
            QgsProcessingParameterFeatureSource(
                self.TRUTH,
                self.tr("Ground truth (labelled grid)"),
                POLYGON_SOURCES,
                optional=True,
            ),
        )
        self.add_parameter(
            QgsProcessingParameterVectorDestination(
                self.OUTPUT, self.tr("Selection"), QgsProcessing.SourceType.TypeVectorPolygon
            ),
        )
        self.add_parameter(
            QgsProcessingParameterFileDestination(
                self.ALLOCATION,
                self.tr("Allocation per district (CSV)"),
                self.tr("CSV files (*.csv)"),
            ),
        )
        self.add_parameter(
            QgsProcessingParameterFileDestination(
                self.REPORT, self.tr("Report (HTML)"), self.tr("HTML files (*.html)")
            ),
        )
        for key, (label, _) in NUMBER_OUTPUTS.items():
            self.addOutput(QgsProcessingOutputNumber(key, self.tr(label)))

    def prepareAlgorithm(self, parameters, context, feedback):
        """PREDICTIONS' name in the project, read here in the main thread (layers belong to it)."""
        self._predictions_name = input_layer_name(self, parameters, self.PREDICTIONS, context)
        return True

    def processAlgorithm(self, parameters, context, feedback):
        output = self.output_gpkg(parameters, self.OUTPUT, context)
        allocation = self.output_file(parameters, self.ALLOCATION, context, (".csv",))
        report = self.output_file(parameters, self.REPORT, context, (".html", ".htm"))
        predictions_path, predictions_layer = self.vector_file(
            parameters, self.PREDICTIONS, context, feedback
        )
        truth_path, truth_layer = self.vector_file(parameters, self.TRUTH, context, feedback)
        figures = make_run_folder()  # removed after the run, or by the next if killed
        options = {
            "predictions_path": predictions_path,
            "predictions_layer": predictions_layer,
            "id_field": self.parameterAsString(parameters, self.ID_FIELD, context) or None,
            "population_path": self.raster_file(parameters, self.POPULATION, context),
            "budget_unit": BUDGET_UNITS[
                self.parameterAsEnum(parameters, self.BUDGET_UNIT, context)
            ],
            "budget": self.parameterAsDouble(parameters, self.BUDGET, context),
            "rank_by": RANK_BY[self.parameterAsEnum(parameters, self.RANK_BY, context)],
            "district_min_share": self._optional_number(
                parameters, self.DISTRICT_MIN_SHARE, context
            ),
            "district_max_share": self._optional_number(
                parameters, self.DISTRICT_MAX_SHARE, context
            ),
            "skip_out_of_range": self.parameterAsBool(parameters, self.SKIP_OUT_OF_RANGE, context),
            "truth_path": truth_path,
            "truth_layer": truth_layer,
            "output_path": output,
            "allocation_path": allocation,
            "figures_folder": figures,
            "style_qml_path": style_path("targeting_selection"),
            "predictions_name": getattr(self, "_predictions_name", None),
        }
        try:
            summary = self.run_core_step("target", options, feedback, outputs=[output, allocation])
            if feedback.isCanceled():
                raise QgsProcessingException(
                    self.tr(
                        "Cancelled: the selection and the allocation are written, the report is not."
                    )
                )
            feedback.pushInfo("Rendering the map and writing the report…")
            maps = self._render_map(summary, figures, context, feedback)
            write_report(report, **report_document(summary, maps))
        finally:
            shutil.rmtree(figures, ignore_errors=True)
        name_output(
            output,
            context,
            self.tr("Selection"),
            districts_label(output) or getattr(self, "_predictions_name", None),
            budget_text(summary["budget"]),
        )
        feedback.pushInfo(f"Report: {report}")
        self.attach_to_run_history([report], feedback)
        results = {
            self.OUTPUT: output,
            self.ALLOCATION: allocation,
            self.REPORT: report,
        }
        for key, (_, where) in NUMBER_OUTPUTS.items():
            results[key] = _rounded(_lookup(summary, where))
        return results

    def _optional_number(self, parameters, name, context):
        if parameters.get(name) in (None, ""):
            return None
        return self.parameterAsDouble(parameters, name, context)

    def _render_map(self, summary, folder, context, feedback):
        """The selection (styled from its GeoPackage) with district outlines; [(png path, caption)]."""
        from .rendering import render_output_map

        path = render_output_map(
            summary["output"],
            os.path.join(folder, "map_selection.png"),
            "selection",
            MAP_WIDTH,
            MAP_MAX_HEIGHT,
            context,
            feedback,
            districts=True,
        )
        if path is None:
            return []
        return [
            (
                path,
                f"Selected cells ({summary['selected_cells']}) and the cells not selected; black lines: "
                "district boundaries",
            )
        ]


def _rounded(value):
    """A share or count as the results show it: 6 decimals (1.0, not 0.9999999999999994)."""
    return round(value, OUTPUT_DECIMALS) + 0.0 if isinstance(value, float) else value  # no -0.0


def _lookup(summary, where):
    value = summary
    for key in where:
        if not isinstance(value, dict) or value.get(key) is None:
            return None
        value = value[key]
    return value
