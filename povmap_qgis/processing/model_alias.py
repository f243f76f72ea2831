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
    summary = (
        "Every trained package is registered in the run history (MLflow) as a new version of a "
        "named model. This points an alias such as champion at one version, so that predict can "
        "use MODEL=models:/<name>@champion and keep working when a better version is promoted. "
        "The run history is the one set in Settings ▸ Options ▸ Processing ▸ Providers ▸ Poverty "
        "mapping (default: a SQLite database in the QGIS profile)."
    )

    def initAlgorithm(self, config=None):
        self.add_parameter(
            QgsProcessingParameterString(self.MODEL_NAME, self.tr("Registered model name")),
            "The name the package was registered under: its folder name without .povmodel, or "
            "the MODEL_NAME given to Train.",
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.VERSION,
                self.tr("Version"),
                QgsProcessingParameterNumber.Type.Integer,
                minValue=1,
            ),
            "The version number to point the alias at (see Run history for the versions).",
        )
        self.add_parameter(
            QgsProcessingParameterString(self.ALIAS, self.tr("Alias"), defaultValue="champion"),
            "A word such as champion or production; it moves from any version that had it.",
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
