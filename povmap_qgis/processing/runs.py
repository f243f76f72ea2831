"""povmap:runs — the run history (MLflow) as a table and an HTML comparison."""

from qgis.core import (
    QgsProcessing,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
)

from .base import PovmapAlgorithm


class Runs(PovmapAlgorithm):
    MODEL_NAME = "MODEL_NAME"
    STEP = "STEP"
    EXPERIMENT = "EXPERIMENT"
    MAX_RUNS = "MAX_RUNS"
    OUTPUT_TABLE = "OUTPUT_TABLE"
    REPORT = "REPORT"
    ROWS = "ROWS"

    algorithm_id = "runs"
    display_name = "Run history"
    group_id = "models"
    group_name = "3 · Models"

    def initAlgorithm(self, config=None):
        self.add_parameter(
            QgsProcessingParameterString(
                self.MODEL_NAME, self.tr("Versions of this registered model"), optional=True
            ),
        )
        self.add_parameter(
            QgsProcessingParameterString(
                self.STEP, self.tr("Only runs of this step"), optional=True
            ),
            advanced=True,
        )
        self.add_parameter(
            QgsProcessingParameterString(
                self.EXPERIMENT, self.tr("Experiment"), defaultValue="povmap"
            ),
            advanced=True,
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.MAX_RUNS,
                self.tr("Most recent runs listed"),
                QgsProcessingParameterNumber.Type.Integer,
                defaultValue=100,
                minValue=1,
            ),
            advanced=True,
        )
        self.add_parameter(
            QgsProcessingParameterFileDestination(
                self.OUTPUT, self.tr("Runs (CSV)"), self.tr("CSV files (*.csv)")
            ),
        )
        self.add_parameter(
            QgsProcessingParameterVectorDestination(
                self.OUTPUT_TABLE,
                self.tr("Runs (table)"),
                QgsProcessing.SourceType.TypeVector,
                optional=True,
                createByDefault=False,
            ),
        )
        self.add_parameter(
            QgsProcessingParameterFileDestination(
                self.REPORT,
                self.tr("Comparison report (HTML)"),
                self.tr("HTML files (*.html)"),
                optional=True,
            ),
        )
        self.addOutput(QgsProcessingOutputNumber(self.ROWS, self.tr("Rows listed")))

    def processAlgorithm(self, parameters, context, feedback):
        table = None
        if parameters.get(self.OUTPUT_TABLE) not in (None, ""):
            table = self.output_gpkg(parameters, self.OUTPUT_TABLE, context)
        options = {
            "output_csv": self.output_file(parameters, self.OUTPUT, context, (".csv",)),
            "output_table": table,
            "report_path": self.output_file(parameters, self.REPORT, context, (".html", ".htm"))
            if parameters.get(self.REPORT) not in (None, "")
            else None,
            "experiment": self.parameterAsString(parameters, self.EXPERIMENT, context) or "povmap",
            "model_name": self.parameterAsString(parameters, self.MODEL_NAME, context).strip()
            or None,
            "step": self.parameterAsString(parameters, self.STEP, context).strip() or None,
            "max_runs": self.parameterAsInt(parameters, self.MAX_RUNS, context),
        }
        result = self.run_core_step("list_runs", options, feedback)
        return {
            self.OUTPUT: result["output_csv"],
            self.OUTPUT_TABLE: result["output_table"],
            self.REPORT: result["report"],
            self.ROWS: result["rows"],
        }
