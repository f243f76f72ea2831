"""povmap:predict — run a model package (default: the bundled demonstration ensemble) on a grid."""

from qgis.core import (
    QgsProcessing,
    QgsProcessingOutputNumber,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterVectorDestination,
)

from ..core.names import PREDICTION_SOURCES
from ..paths import bundled_model_path, style_path
from .base import POLYGON_SOURCES, PovmapAlgorithm
from .engine import EngineParameters, add_engine_parameters, engine_options
from .layer_names import districts_label, input_layer_name, model_label, name_output
from .sample_chips import (
    RasterParameters,
    add_raster_parameters,
    add_resampling_parameters,
    raster_inputs,
)

SOURCE_OPTIONS = [
    "Chip store (CHIPS)",
    "Rasters (DAYTIME, NIGHTLIGHTS, ACCESSIBILITY, EXTRA): sampled and predicted, no chips stored",
]

EXTRA_STYLES = [
    ("prediction_probability", "povmap probability (mean of members)"),
    ("prediction_disagreement", "povmap member disagreement"),
    ("prediction_uncertainty", "povmap uncertainty (prob_high − prob_low)"),
    ("prediction_out_of_range", "povmap outside the training range"),
]


class Predict(RasterParameters, EngineParameters, PovmapAlgorithm):
    MODEL = "MODEL"
    SOURCE = "SOURCE"
    CHIPS = "CHIPS"
    MAX_NODATA = "MAX_NODATA"
    CELLS = "CELLS"
    PREDICTED_POOR = "PREDICTED_POOR"
    FLAGGED = "FLAGGED"

    algorithm_id = "predict"
    display_name = "Predict poverty"
    group_id = "models"
    group_name = "3 · Models"

    def initAlgorithm(self, config=None):
        self.add_parameter(
            QgsProcessingParameterFile(
                self.MODEL,
                self.tr("Model package (.povmodel; empty: bundled demo model)"),
                QgsProcessingParameterFile.Behavior.Folder,
                optional=True,
            ),
        )
        self.add_parameter(
            QgsProcessingParameterEnum(
                self.SOURCE, self.tr("Read chips from"), SOURCE_OPTIONS, False, 0, optional=True
            ),
            names=PREDICTION_SOURCES,
        )
        self.add_parameter(
            QgsProcessingParameterFile(
                self.CHIPS,
                self.tr("Chip store (.chips folder)"),
                QgsProcessingParameterFile.Behavior.Folder,
                optional=True,
            ),
        )
        self.add_parameter(
            QgsProcessingParameterFeatureSource(self.GRID, self.tr("Grid"), POLYGON_SOURCES),
        )
        self.add_store_id_field()
        self.add_parameter(
            QgsProcessingParameterVectorDestination(
                self.OUTPUT, self.tr("Predictions"), QgsProcessing.SourceType.TypeVectorPolygon
            ),
        )
        add_raster_parameters(self)
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.MAX_NODATA,
                self.tr("Maximum nodata fraction (SOURCE=rasters)"),
                QgsProcessingParameterNumber.Type.Double,
                0.1,
                False,
                0.0,
                1.0,
            ),
            advanced=True,
        )
        add_resampling_parameters(self)
        add_engine_parameters(self)
        for key, label in (
            (self.CELLS, "Cells"),
            (self.PREDICTED_POOR, "Cells predicted poor"),
            (self.FLAGGED, "Cells with too much nodata"),
        ):
            self.addOutput(QgsProcessingOutputNumber(key, self.tr(label)))

    def processAlgorithm(self, parameters, context, feedback):
        output = self.output_gpkg(parameters, self.OUTPUT, context)
        grid_path, grid_layer = self.vector_file(parameters, self.GRID, context, feedback)
        model = self.input_file(parameters, self.MODEL, context) or bundled_model_path()
        feedback.pushInfo(f"Model: {model}")
        source = PREDICTION_SOURCES[self.parameterAsEnum(parameters, self.SOURCE, context)]
        options = {
            "model_path": model,
            "chips_path": self.input_file(parameters, self.CHIPS, context) or None,
            "source": source,
            "inputs": raster_inputs(self, parameters, context) if source == "rasters" else None,
            "max_nodata": self.parameterAsDouble(parameters, self.MAX_NODATA, context),
            "grid_path": grid_path,
            "grid_layer": grid_layer,
            "id_field": self.parameterAsString(parameters, self.ID_FIELD, context) or None,
            "output_path": output,
            "style_qml_path": style_path("prediction_class"),
            "extra_styles": [(style_path(name), label) for name, label in EXTRA_STYLES],
            **engine_options(self, parameters, context),
        }
        result = self.run_core_step("predict", options, feedback, outputs=[output])
        where = districts_label(output) or input_layer_name(self, parameters, self.GRID, context)
        name_output(output, context, self.tr("Predictions"), where, model_label(model))
        return {
            self.OUTPUT: output,
            self.CELLS: result["cells"],
            self.PREDICTED_POOR: result["predicted_poor"],
            self.FLAGGED: result["flagged"],
        }
