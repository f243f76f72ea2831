"""povmap:buildtraininggrid — household survey points → labelled 1 km cells."""

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterCrs,
    QgsProcessingParameterDateTime,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterNumber,
    QgsProcessingParameterVectorDestination,
)

from ..core.grid.training_grid import COUNT_KEYS
from ..core.names import DEFAULT_CELL_SIZE
from ..paths import style_path
from .base import POINT_SOURCES, POLYGON_SOURCES, PovmapAlgorithm


class BuildTrainingGrid(PovmapAlgorithm):
    INPUT = "INPUT"
    SCORE_FIELD = "SCORE_FIELD"
    CELL_SIZE = "CELL_SIZE"
    CUTOFF = "CUTOFF"
    POOR_BELOW = "POOR_BELOW"
    MIN_OBS = "MIN_OBS"
    HOUSEHOLD_FIELD = "HOUSEHOLD_FIELD"
    MAX_OBS = "MAX_OBS"
    DROP_ZERO = "DROP_ZERO"
    ACCURACY_FIELD = "ACCURACY_FIELD"
    MAX_ACCURACY = "MAX_ACCURACY"
    DATE_FIELD = "DATE_FIELD"
    MIN_DATE = "MIN_DATE"
    URBAN = "URBAN"
    DISTRICTS = "DISTRICTS"
    DISTRICT_FIELD = "DISTRICT_FIELD"
    CRS = "CRS"

    algorithm_id = "buildtraininggrid"
    display_name = "Build training grid"
    group_id = "grids"
    group_name = "1 · Survey and grids"

    def initAlgorithm(self, config=None):
        self.add_parameter(
            QgsProcessingParameterFeatureSource(
                self.INPUT, self.tr("Household survey points"), POINT_SOURCES
            ),
        )
        self.add_parameter(
            QgsProcessingParameterField(
                self.SCORE_FIELD,
                self.tr("Poverty score field"),
                "score",
                self.INPUT,
                QgsProcessingParameterField.DataType.Numeric,
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
            QgsProcessingParameterNumber(
                self.CUTOFF,
                self.tr("Poverty cutoff"),
                QgsProcessingParameterNumber.Type.Double,
                19.0,
            ),
        )
        self.add_parameter(
            QgsProcessingParameterBoolean(
                self.POOR_BELOW, self.tr("Poor when the median is below the cutoff"), True
            ),
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.MIN_OBS,
                self.tr("Minimum households per cell (privacy)"),
                QgsProcessingParameterNumber.Type.Integer,
                3,
                False,
                1,
            ),
        )
        self.add_parameter(
            QgsProcessingParameterField(
                self.HOUSEHOLD_FIELD,
                self.tr("Household id field (privacy)"),
                None,
                self.INPUT,
                optional=True,
            ),
            advanced=True,
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.MAX_OBS,
                self.tr("Maximum households per cell (0 = no maximum)"),
                QgsProcessingParameterNumber.Type.Integer,
                300,
                False,
                0,
            ),
            advanced=True,
        )
        self.add_parameter(
            QgsProcessingParameterBoolean(
                self.DROP_ZERO, self.tr("Drop score 0 (data-entry errors)"), True
            ),
            advanced=True,
        )
        self.add_parameter(
            QgsProcessingParameterField(
                self.ACCURACY_FIELD,
                self.tr("GPS accuracy field (m)"),
                None,
                self.INPUT,
                QgsProcessingParameterField.DataType.Numeric,
                optional=True,
            ),
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.MAX_ACCURACY,
                self.tr("Worst GPS accuracy kept (m)"),
                QgsProcessingParameterNumber.Type.Double,
                20.0,
                False,
                0.0,
            ),
        )
        self.add_parameter(
            QgsProcessingParameterField(
                self.DATE_FIELD,
                self.tr("Survey date field"),
                None,
                self.INPUT,
                QgsProcessingParameterField.DataType.Any,
                optional=True,
            ),
        )
        self.add_parameter(
            QgsProcessingParameterDateTime(
                self.MIN_DATE,
                self.tr("Earliest survey date kept"),
                QgsProcessingParameterDateTime.Type.Date,
                optional=True,
            ),
        )
        self.add_parameter(
            QgsProcessingParameterFeatureSource(
                self.URBAN, self.tr("Urban centres"), POLYGON_SOURCES, optional=True
            ),
        )
        self.add_parameter(
            QgsProcessingParameterFeatureSource(
                self.DISTRICTS, self.tr("Districts"), POLYGON_SOURCES, optional=True
            ),
        )
        self.add_parameter(
            QgsProcessingParameterField(
                self.DISTRICT_FIELD,
                self.tr("District name field"),
                None,
                self.DISTRICTS,
                optional=True,
            ),
        )
        self.add_parameter(
            QgsProcessingParameterCrs(
                self.CRS, self.tr("Grid CRS (empty: UTM zone of the data)"), optional=True
            ),
            advanced=True,
        )
        self.add_parameter(
            QgsProcessingParameterVectorDestination(
                self.OUTPUT,
                self.tr("Labelled grid"),
                QgsProcessing.SourceType.TypeVectorPolygon,
            ),
        )
        self.add_grid_outputs(COUNT_KEYS)

    def processAlgorithm(self, parameters, context, feedback):
        self._refuse_feature_id(parameters, self.SCORE_FIELD, self.INPUT, context)
        survey = self.parameterAsVectorLayer(parameters, self.INPUT, context)
        output = self.output_gpkg(
            parameters,
            self.OUTPUT,
            context,
            load_name=self.tr("Labelled grid: {}").format(survey.name()) if survey else None,
        )
        points_path, points_layer = self.vector_file(parameters, self.INPUT, context, feedback)
        urban_path, urban_layer = self.vector_file(parameters, self.URBAN, context, feedback)
        districts_path, districts_layer = self.vector_file(
            parameters, self.DISTRICTS, context, feedback
        )
        min_date = self.parameterAsDateTime(parameters, self.MIN_DATE, context)
        options = {
            "points_path": points_path,
            "points_layer": points_layer,
            "score_field": self.parameterAsString(parameters, self.SCORE_FIELD, context),
            "output_path": output,
            "cell_size": self.parameterAsDouble(parameters, self.CELL_SIZE, context),
            "cutoff": self.parameterAsDouble(parameters, self.CUTOFF, context),
            "poor_below": self.parameterAsBoolean(parameters, self.POOR_BELOW, context),
            "min_obs": self.parameterAsInt(parameters, self.MIN_OBS, context),
            "max_obs": self.parameterAsInt(parameters, self.MAX_OBS, context),
            "drop_zero": self.parameterAsBoolean(parameters, self.DROP_ZERO, context),
            "accuracy_field": self.parameterAsString(parameters, self.ACCURACY_FIELD, context)
            or None,
            "max_accuracy": self.parameterAsDouble(parameters, self.MAX_ACCURACY, context),
            "date_field": self.parameterAsString(parameters, self.DATE_FIELD, context) or None,
            "min_date": min_date.date().toString("yyyy-MM-dd") if min_date.isValid() else None,
            "urban_path": urban_path,
            "urban_layer": urban_layer,
            "districts_path": districts_path,
            "districts_layer": districts_layer,
            "district_field": self.parameterAsString(parameters, self.DISTRICT_FIELD, context)
            or None,
            "crs": self.crs_parameter(parameters, self.CRS, context),
            "style_qml_path": style_path("training_grid"),
            "household_field": self.parameterAsString(parameters, self.HOUSEHOLD_FIELD, context)
            or None,
        }
        counts = self.run_core_step("build_training_grid", options, feedback, outputs=[output])
        return self.grid_results(output, counts, COUNT_KEYS)

    def _refuse_feature_id(self, parameters, name, layer_name, context):
        """The dialog may preselect the feature id (fid): say so instead of failing in the worker."""
        field = self.parameterAsString(parameters, name, context)
        layer = self.parameterAsVectorLayer(parameters, layer_name, context)
        if not field or layer is None:
            return
        index = layer.fields().lookupField(field)
        if index >= 0 and index in layer.dataProvider().pkAttributeIndexes():
            raise QgsProcessingException(
                self.tr(
                    f"Poverty score field ({name}): '{field}' is the feature id of '{layer.name()}', "
                    "not a score; choose the field holding each household's poverty score (e.g. score)."
                )
            )
