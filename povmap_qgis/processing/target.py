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
    summary = (
        "Turns the poverty map into a decision: a programme can enrol a budget of cells or people, and this "
        "chooses where. Cells are ranked by their probability of being poor, or by the expected number of poor "
        "people (probability × people from a population raster such as WorldPop), and enrolled down the "
        "ranking until the budget is spent, optionally with a floor and a cap on the share of each district. "
        "Writes every cell with rank, selected, population and expected_poor (styled selected / not selected; "
        "one layer that opens at once), the allocation per district (a CSV) and one HTML report: a plain "
        "summary, the expected share of the poor covered, the expected inclusion error (enrolled, not poor) "
        "and exclusion error (poor, left out), the targeting curve against random selection and district "
        "targeting, the allocation and a map. With a ground truth, the measured errors beside the expected "
        "ones."
    )

    def initAlgorithm(self, config=None):
        self.add_parameter(
            QgsProcessingParameterFeatureSource(
                self.PREDICTIONS, self.tr("Predictions"), POLYGON_SOURCES
            ),
            "A prediction layer from Predict poverty (the cells' id, district, prob_mean): on povmap's grids "
            "or on a grid of your own. Cells with an empty prob_mean are kept in the output but never "
            "selected.",
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
            "The cells' unique whole-number id, which breaks ties in the ranking, matches TRUTH and is "
            "kept in OUTPUT; empty: the id field Predict poverty recorded in the layer (the grid's "
            "ID_FIELD; cell_id for povmap's grids), or cell_id.",
        )
        self.add_parameter(
            QgsProcessingParameterRasterLayer(
                self.POPULATION, self.tr("Population raster (people per pixel)"), optional=True
            ),
            "People per pixel, any CRS and resolution (e.g. WorldPop, GHS-POP). Summed per cell, pixels on a "
            "cell's edge counted by the share of their area inside it. Needed for budgets in people and for "
            "ranking by expected poor people; cells with nobody are never selected.",
        )
        self.add_parameter(
            QgsProcessingParameterEnum(
                self.BUDGET_UNIT, self.tr("Budget unit"), list(BUDGET_UNIT_OPTIONS), defaultValue=2
            ),
            "What BUDGET counts: a number of cells or people, or a share of all the cells or people of the "
            "layer. Cells are enrolled whole: one that would overshoot the budget is passed over for smaller "
            "ones further down the ranking.",
            names=BUDGET_UNITS,
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.BUDGET,
                self.tr("Budget"),
                QgsProcessingParameterNumber.Type.Double,
                0.3,
            ),
            "How many cells or people can be enrolled (BUDGET_UNIT cells or people), or which share of them "
            "(share units: between 0 and 1, 0.3 = 30 %). A budget larger than the area enrols every cell that "
            "can be, with a warning.",
        )
        self.add_parameter(
            QgsProcessingParameterEnum(
                self.RANK_BY, self.tr("Rank cells by"), list(RANK_BY_OPTIONS), defaultValue=0
            ),
            "probability: the likeliest poor cells first. expected_poor: the cells expected to hold the most "
            "poor people first (probability × people; needs POPULATION). With a budget in people, probability "
            "covers the most expected poor people per person enrolled; with a budget in cells, expected_poor "
            "does (it favours crowded cells). Ties: the other quantity, then the cell id (ID_FIELD).",
            names=RANK_BY,
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.DISTRICT_MIN_SHARE,
                self.tr("Floor per district (share)"),
                QgsProcessingParameterNumber.Type.Double,
                optional=True,
            ),
            "Every district gets at least this share of its cells (or people, with people budgets) enrolled, "
            "its best cells first, before the rest of the budget follows the ranking (programmes often "
            "guarantee every district something). Between 0 and 1.",
            advanced=True,
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.DISTRICT_MAX_SHARE,
                self.tr("Cap per district (share)"),
                QgsProcessingParameterNumber.Type.Double,
                optional=True,
            ),
            "No district gets more than this share of its cells (or people) enrolled. Between 0 and 1, at "
            "least the floor. Caps that leave the budget unreachable select what they allow, with a warning.",
            advanced=True,
        )
        self.add_parameter(
            QgsProcessingParameterBoolean(
                self.SKIP_OUT_OF_RANGE,
                self.tr("Leave out cells outside the model's training range"),
                False,
            ),
            "Cells whose out_of_range field is 1 (inputs unlike anything the model learned from) are never "
            "selected. A layer without that field (an older model package) is used whole, with a warning.",
            advanced=True,
        )
        self.add_parameter(
            QgsProcessingParameterFeatureSource(
                self.TRUTH,
                self.tr("Ground truth (labelled grid)"),
                POLYGON_SOURCES,
                optional=True,
            ),
            "A labelled grid (cell_id, label 1 = poor) from Build training grid: a ground-truth survey or "
            "held-out cells, matched by the cell id (for predictions on a grid of your own: labelled "
            "polygons of that grid holding its id). The report then shows the measured inclusion and "
            "exclusion errors and targeting curve on the cells it covers, beside the expected ones.",
        )
        self.add_parameter(
            QgsProcessingParameterVectorDestination(
                self.OUTPUT, self.tr("Selection"), QgsProcessing.SourceType.TypeVectorPolygon
            ),
            "GeoPackage of every cell of PREDICTIONS plus rank (1 = enrolled first, empty when it cannot be "
            "selected), selected (1/0), population (with POPULATION) and expected_poor (probability × people, "
            "or the probability), styled selected / not selected: one layer, so it opens at once however it is "
            "added. The allocation per district is ALLOCATION.",
        )
        self.add_parameter(
            QgsProcessingParameterFileDestination(
                self.ALLOCATION,
                self.tr("Allocation per district (CSV)"),
                self.tr("CSV files (*.csv)"),
            ),
            "One row per district: cells, cells predicted, people, cells and people selected, expected poor "
            "and expected poor covered, the share of the district and of the budget enrolled. People in "
            "whole people, expected poor to a tenth, shares to four decimals. Opens in QGIS as a table "
            "(drop it on the map or Layer ▸ Add Delimited Text Layer, no geometry) or in a spreadsheet.",
        )
        self.add_parameter(
            QgsProcessingParameterFileDestination(
                self.REPORT, self.tr("Report (HTML)"), self.tr("HTML files (*.html)")
            ),
            "One self-contained HTML file: the plain summary first, the targeting curves, the allocation "
            "table and a map of the selection with district boundaries rendered by QGIS.",
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
