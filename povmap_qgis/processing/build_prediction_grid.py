"""povmap:buildpredictiongrid — cells covering districts with no survey."""

from qgis.core import (
    QgsProcessing,
    QgsProcessingParameterBand,
    QgsProcessingParameterCrs,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterVectorDestination,
)

from ..core.names import DEFAULT_CELL_SIZE
from ..paths import style_path
from .base import POLYGON_SOURCES, PovmapAlgorithm
from .layer_names import districts_label, input_layer_name, name_output

COUNT_KEYS = ("cells_covering", "cells_not_habitable", "cells_no_habitable_data", "cells_kept")


class BuildPredictionGrid(PovmapAlgorithm):
    AREA = "AREA"
    DISTRICT_FIELD = "DISTRICT_FIELD"
    CELL_SIZE = "CELL_SIZE"
    HABITABLE = "HABITABLE"
    HABITABLE_BAND = "HABITABLE_BAND"
    HABITABLE_MIN = "HABITABLE_MIN"
    CRS = "CRS"

    algorithm_id = "buildpredictiongrid"
    display_name = "Build prediction grid"
    group_id = "grids"
    group_name = "1 · Survey and grids"

    def initAlgorithm(self, config=None):
        self.add_parameter(
            QgsProcessingParameterFeatureSource(
                self.AREA, self.tr("Districts or area to map"), POLYGON_SOURCES
            ),
        )
        self.add_parameter(
            QgsProcessingParameterField(
                self.DISTRICT_FIELD, self.tr("District name field"), None, self.AREA, optional=True
            ),
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.CELL_SIZE,
                self.tr("Cell size (m)"),
                QgsProcessingParameterNumber.Type.Double,
                DEFAULT_CELL_SIZE,
                False,
                1.0,
            ),
        )
        self.add_parameter(
            QgsProcessingParameterRasterLayer(
                self.HABITABLE,
                self.tr("Habitability raster (settlement or population)"),
                optional=True,
            ),
        )
        self.add_parameter(
            QgsProcessingParameterBand(
                self.HABITABLE_BAND, self.tr("Habitability band"), 1, self.HABITABLE, optional=True
            ),
            advanced=True,
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.HABITABLE_MIN,
                self.tr("Minimum mean habitability"),
                QgsProcessingParameterNumber.Type.Double,
                0.0,
                optional=True,
            ),
        )
        self.add_parameter(
            QgsProcessingParameterCrs(
                self.CRS, self.tr("Grid CRS (empty: UTM zone of the area)"), optional=True
            ),
            advanced=True,
        )
        self.add_parameter(
            QgsProcessingParameterVectorDestination(
                self.OUTPUT, self.tr("Prediction grid"), QgsProcessing.SourceType.TypeVectorPolygon
            ),
        )
        self.add_grid_outputs(COUNT_KEYS)

    def processAlgorithm(self, parameters, context, feedback):
        output = self.output_gpkg(parameters, self.OUTPUT, context)
        area_path, area_layer = self.vector_file(parameters, self.AREA, context, feedback)
        habitable = self.raster_file(parameters, self.HABITABLE, context)
        options = {
            "area_path": area_path,
            "area_layer": area_layer,
            "output_path": output,
            "district_field": self.parameterAsString(parameters, self.DISTRICT_FIELD, context)
            or None,
            "cell_size": self.parameterAsDouble(parameters, self.CELL_SIZE, context),
            "crs": self.crs_parameter(parameters, self.CRS, context),
            "habitable_path": habitable,
            "habitable_band": (  # band 0 given is refused, not read as band 1
                self.parameterAsInt(parameters, self.HABITABLE_BAND, context)
                if parameters.get(self.HABITABLE_BAND) not in (None, "")
                else 1
            ),
            "habitable_min": self.parameterAsDouble(parameters, self.HABITABLE_MIN, context),
            "style_qml_path": style_path("prediction_grid"),
        }
        counts = self.run_core_step("build_prediction_grid", options, feedback, outputs=[output])
        where = districts_label(output) or input_layer_name(self, parameters, self.AREA, context)
        name_output(output, context, self.tr("Prediction grid"), where)
        return self.grid_results(output, counts, COUNT_KEYS)
