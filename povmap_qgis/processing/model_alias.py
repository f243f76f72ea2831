"""povmap:setmodelalias — point an alias (e.g. champion) at a registered model version."""

from qgis.core import (
    QgsProcessingOutputString,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from .base import PovmapAlgorithm


class SetModelAlias(PovmapAlgorithm):
    MODEL_NAME = "MODEL_NAME"
    VERSION = "VERSION"
    ALIAS = "ALIAS"
    MODEL_URI = "MODEL_URI"

    algorithm_id = "setmodelalias"
    display_name = "Set model alias"
    group_id = "models"
    group_name = "3 · Models"

    def initAlgorithm(self, config=None):
        self.add_parameter(
            QgsProcessingParameterString(self.MODEL_NAME, self.tr("Registered model name")),
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.VERSION,
                self.tr("Version"),
                QgsProcessingParameterNumber.Type.Integer,
                minValue=1,
            ),
        )
        self.add_parameter(
            QgsProcessingParameterString(self.ALIAS, self.tr("Alias"), defaultValue="champion"),
        )
        self.addOutput(QgsProcessingOutputString(self.MODEL_URI, self.tr("Model reference")))

    def processAlgorithm(self, parameters, context, feedback):
        options = {
            "model_name": self.parameterAsString(parameters, self.MODEL_NAME, context).strip(),
            "version": str(self.parameterAsInt(parameters, self.VERSION, context)),
            "alias": self.parameterAsString(parameters, self.ALIAS, context).strip(),
        }
        result = self.run_core_step("set_model_alias", options, feedback)
        return {self.MODEL_URI: result["model_uri"]}
