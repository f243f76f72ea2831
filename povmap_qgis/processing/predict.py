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
    summary = (
        "Runs a trained ensemble on the chips of a grid — a surveyed district or one nobody surveyed. Each member gives "
        "the probability that a cell is chronically poor; the output has prob_<member>, prob_mean, votes, pred "
        "(1 = poor: calibrated prob_mean ≥ the decision threshold) and disagreement (spread of the members). Styled by predicted class; the probability, "
        "disagreement, uncertainty (prob_high − prob_low) and outside-the-training-range styles are in the layer's "
        "Styles menu. With SOURCE=rasters it reads the rasters themselves instead of a chip store: each "
        "block of cells is sampled as Sample image chips would sample it and predicted at once, so no chips "
        "are written (for national maps on Spark, ENGINE=spark). Without MODEL, the bundled demonstration model is used: "
        "it was trained on synthetic data and is not for policy use."
    )

    def initAlgorithm(self, config=None):
        self.add_parameter(
            QgsProcessingParameterFile(
                self.MODEL,
                self.tr("Model package (.povmodel; empty: bundled demo model)"),
                QgsProcessingParameterFile.Behavior.Folder,
                optional=True,
            ),
            "A .povmodel folder from Train poverty ensemble, or a version registered in the run history: "
            "models:/<name>/<version> or models:/<name>@<alias> (see Set model alias). "
            "Empty: the demonstration ensemble bundled with the plugin (synthetic data, not for policy use).",
        )
        self.add_parameter(
            QgsProcessingParameterEnum(
                self.SOURCE, self.tr("Read chips from"), SOURCE_OPTIONS, False, 0, optional=True
            ),
            "chips (default): the chip store CHIPS. rasters: the rasters DAYTIME, NIGHTLIGHTS, "
            "ACCESSIBILITY and EXTRA (every input the model was trained on, with its bands), sampled "
            "block by block exactly as Sample image chips samples them (in the store's dtype, at the "
            "model's resolution and chip size) and predicted at once: the same predictions as from a "
            "store, and no chips on disk.",
            names=PREDICTION_SOURCES,
        )
        self.add_parameter(
            QgsProcessingParameterFile(
                self.CHIPS,
                self.tr("Chip store (.chips folder)"),
                QgsProcessingParameterFile.Behavior.Folder,
                optional=True,
            ),
            "Chips of GRID from Sample image chips, with the inputs, bands and chip size the model was trained on. "
            "Needed unless SOURCE=rasters.",
        )
        self.add_parameter(
            QgsProcessingParameterFeatureSource(self.GRID, self.tr("Grid"), POLYGON_SOURCES),
            "Cells to predict, e.g. from Build prediction grid, or your own grid whose chips were sampled "
            "by ID_FIELD; every field of it is kept in the output.",
        )
        self.add_store_id_field()
        self.add_parameter(
            QgsProcessingParameterVectorDestination(
                self.OUTPUT, self.tr("Predictions"), QgsProcessing.SourceType.TypeVectorPolygon
            ),
            "GeoPackage of the grid with the prediction fields, styled by predicted class.",
        )
        add_raster_parameters(self, " Read only with SOURCE=rasters.")
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
            "With SOURCE=rasters: cells whose chip in any input has more nodata than this fraction get "
            "chip_flagged = 1 (a chip store keeps the fraction it was sampled with).",
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
