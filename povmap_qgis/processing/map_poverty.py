"""povmap:mappoverty — one dialog: districts → prediction grid → chips → predictions.

Runs Build prediction grid, Sample image chips and Predict poverty as child
algorithms (same context, one progress bar, Cancel between and within steps),
with the cell size and chip resolution the model was trained with. With
SOURCE=rasters the chip store is skipped: Predict poverty reads the rasters.
"""

import os

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingMultiStepFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingParameterCrs,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
)

from ..core.chips.raster_sampler import RESAMPLING_METHODS
from ..core.names import DEFAULT_CELL_SIZE, DEFAULT_RESOLUTION, PREDICTION_SOURCES
from ..paths import bundled_model_path
from .base import POLYGON_SOURCES, PovmapAlgorithm
from .build_prediction_grid import BuildPredictionGrid
from .engine import ENGINES, EngineParameters, add_engine_parameters, engine_options
from .layer_names import districts_label, input_layer_name, model_label, name_output
from .predict import SOURCE_OPTIONS, Predict
from .sample_chips import NAMED_INPUTS, RasterParameters, SampleChips, resampling_id

RASTERS = [name for name, _, _ in NAMED_INPUTS]  # DAYTIME, NIGHTLIGHTS, ACCESSIBILITY


class MapPoverty(RasterParameters, EngineParameters, PovmapAlgorithm):
    AREA = "AREA"
    DISTRICT_FIELD = "DISTRICT_FIELD"
    MODEL = "MODEL"
    SOURCE = "SOURCE"
    CRS = "CRS"
    CHIPS = "CHIPS"
    CELLS = "CELLS"
    PREDICTED_POOR = "PREDICTED_POOR"
    FLAGGED = "FLAGGED"

    algorithm_id = "mappoverty"
    display_name = "Map poverty"
    group_id = "models"
    group_name = "3 · Models"

    def initAlgorithm(self, config=None):
        self.add_parameter(
            QgsProcessingParameterFeatureSource(
                self.AREA, self.tr("Districts to map"), POLYGON_SOURCES
            ),
        )
        self.add_parameter(
            QgsProcessingParameterField(
                self.DISTRICT_FIELD, self.tr("District name field"), None, self.AREA, optional=True
            ),
        )
        for name, _, label in NAMED_INPUTS:
            self.add_parameter(
                QgsProcessingParameterRasterLayer(name, self.tr(label), optional=True)
            )
            if name == self.DAYTIME:
                self.add_parameter(
                    QgsProcessingParameterString(
                        self.DAYTIME_BANDS, self.tr("Daytime bands (red, green, blue)"), "1,2,3"
                    ),
                )
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
            QgsProcessingParameterCrs(
                self.CRS, self.tr("Grid CRS (empty: UTM zone of the area)"), optional=True
            ),
            advanced=True,
        )
        for name, _, label in NAMED_INPUTS:
            self.add_parameter(
                QgsProcessingParameterEnum(
                    resampling_id(name),
                    self.tr("{}: resampling").format(label.split(" (")[0]),
                    list(RESAMPLING_METHODS),
                    False,
                    1,
                ),
                advanced=True,
            )
        add_engine_parameters(self)  # for sampling and predicting; the grid is built here
        self.add_parameter(
            QgsProcessingParameterVectorDestination(
                self.OUTPUT, self.tr("Predictions"), QgsProcessing.SourceType.TypeVectorPolygon
            ),
        )
        self.add_parameter(
            QgsProcessingParameterFolderDestination(
                self.CHIPS,
                self.tr("Chip store (folder ending in .chips)"),
                QgsProcessing.TEMPORARY_OUTPUT,
                optional=True,  # left out (or skipped): a temporary folder all the same
            ),
            advanced=True,
        )
        for key, label in (
            (self.CELLS, "Cells"),
            (self.PREDICTED_POOR, "Cells predicted poor"),
            (self.FLAGGED, "Cells with too much nodata"),
        ):
            self.addOutput(QgsProcessingOutputNumber(key, self.tr(label)))

    def processAlgorithm(self, parameters, context, feedback):
        import processing  # QGIS's Processing plugin: loaded wherever this provider runs

        output = self.output_gpkg(parameters, self.OUTPUT, context)
        source = PREDICTION_SOURCES[self.parameterAsEnum(parameters, self.SOURCE, context)]
        if parameters.get(self.CHIPS) in (None, ""):
            parameters = {**parameters, self.CHIPS: QgsProcessing.TEMPORARY_OUTPUT}
        chips = (
            self.output_folder(parameters, self.CHIPS, context, ".chips")
            if source == "chips"
            else None
        )
        given = parameters[self.CHIPS]
        given = given.sink.staticValue() if hasattr(given, "sink") else given
        if source != "chips" and given not in (None, "", QgsProcessing.TEMPORARY_OUTPUT):
            feedback.pushWarning(
                self.tr("SOURCE=rasters: no chip store is written, CHIPS ({}) is ignored.").format(
                    given
                )
            )
        model = self.input_file(parameters, self.MODEL, context) or bundled_model_path()
        manifest = _model_manifest(model)
        self._refuse_missing_inputs(parameters, manifest)
        cell_size = float(manifest.get("cell_size") or DEFAULT_CELL_SIZE)
        resolution = float(manifest.get("resolution") or DEFAULT_RESOLUTION)
        feedback.pushInfo(f"Model: {model} (cells of {cell_size:g} m, chips at {resolution:g} m)")
        steps = QgsProcessingMultiStepFeedback(3 if source == "chips" else 2, feedback)

        def run(step, algorithm, child_parameters):
            steps.setCurrentStep(step)
            if feedback.isCanceled():
                raise QgsProcessingException(self.tr("Cancelled: no predictions were written."))
            return processing.run(
                f"povmap:{algorithm}",
                child_parameters,
                context=context,
                feedback=steps,
                is_child_algorithm=True,
            )

        engine = engine_options(self, parameters, context)
        # The children's parameters by their own ids (qgis_process names them so too).
        engine_parameters = {
            SampleChips.ENGINE: ENGINES.index(engine["engine"]),
            SampleChips.SPARK_MASTER: engine["spark_master"],
        }
        crs = self.crs_text(self.parameterAsCrs(parameters, self.CRS, context))
        grid = run(
            0,
            BuildPredictionGrid.algorithm_id,
            {
                BuildPredictionGrid.AREA: parameters[self.AREA],
                BuildPredictionGrid.DISTRICT_FIELD: parameters.get(self.DISTRICT_FIELD),
                BuildPredictionGrid.CELL_SIZE: cell_size,
                **({BuildPredictionGrid.CRS: crs} if crs else {}),
                BuildPredictionGrid.OUTPUT: QgsProcessing.TEMPORARY_OUTPUT,
            },
        )[BuildPredictionGrid.OUTPUT]
        chip_parameters = {
            SampleChips.GRID: grid,
            SampleChips.RESOLUTION: resolution,
            SampleChips.OUTPUT: chips,
            SampleChips.DAYTIME_BANDS: parameters.get(self.DAYTIME_BANDS) or "1,2,3",
            **engine_parameters,
        }
        for name in RASTERS:  # the same ids in the three algorithms
            chip_parameters[name] = parameters.get(name)
            chip_parameters[resampling_id(name)] = self.parameterAsEnum(
                parameters, resampling_id(name), context
            )
        if source == "chips":
            chips = run(1, SampleChips.algorithm_id, chip_parameters)[SampleChips.OUTPUT]
            predict_parameters = {Predict.CHIPS: chips, **engine_parameters}
        else:  # the same raster parameters, read by predict itself; no store
            predict_parameters = {Predict.SOURCE: source, **chip_parameters}
            del predict_parameters[SampleChips.RESOLUTION], predict_parameters[SampleChips.OUTPUT]
        predicted = run(
            2 if source == "chips" else 1,
            Predict.algorithm_id,
            {
                **predict_parameters,
                Predict.MODEL: model,
                Predict.GRID: grid,
                Predict.OUTPUT: output,
            },
        )
        feedback.setProgress(100)
        where = districts_label(output) or input_layer_name(self, parameters, self.AREA, context)
        name_output(output, context, self.tr("Predictions"), where, model_label(model))
        return {
            self.OUTPUT: output,
            self.CHIPS: chips,
            self.CELLS: predicted[Predict.CELLS],
            self.PREDICTED_POOR: predicted[Predict.PREDICTED_POOR],
            self.FLAGGED: predicted[Predict.FLAGGED],
        }

    def _refuse_missing_inputs(self, parameters, manifest):
        """Before any work: the rasters the model needs and the run lacks, named by label."""
        given = {
            store_name
            for name, store_name, _ in NAMED_INPUTS
            if parameters.get(name) not in (None, "")
        }
        needed = [spec.get("name") for spec in manifest.get("inputs") or []]
        labels = {store_name: (name, label) for name, store_name, label in NAMED_INPUTS}
        missing = [labels[name] for name in needed if name in labels and name not in given]
        if missing:
            raise QgsProcessingException(
                self.tr(
                    "The model was trained on "
                    + ", ".join(needed)
                    + "; give "
                    + ", ".join(f"{label} ({name})" for name, label in missing)
                    + " too (or choose a MODEL trained on the rasters you have). Nothing was written."
                )
            )
        if not given:
            raise QgsProcessingException(
                self.tr("Choose at least one input raster: DAYTIME, NIGHTLIGHTS or ACCESSIBILITY.")
            )


def _model_manifest(model):
    """The model package's verified manifest, read as predict reads it (core/model/model_package.py:
    hashes and schema, a damaged or edited package refused naming MODEL before any work), or {}
    when MODEL is not a local folder (models:/… is resolved by the worker)."""
    from ..core.errors import PovmapInputError
    from ..core.model.model_package import read_package

    if not os.path.isdir(model):
        return {}
    try:
        return read_package(model)
    except PovmapInputError as error:
        raise QgsProcessingException(f"{error} Nothing was written.") from None
