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
    summary = (
        "Lists the recorded runs, or the versions of one registered model, as a table and an "
        "HTML comparison. Each run of train, predict, evaluate, crossvalidate and target has "
        "its parameters, input fingerprints and final metrics, written as a CSV file and a "
        "non-spatial GeoPackage table; the HTML report overlays the ROC curves of the most "
        "recent runs and puts their metrics side by side, the parameters that differ in bold. The run history is the one set in Settings ▸ Options ▸ Processing ▸ Providers "
        "▸ Poverty mapping (default: a SQLite database in the QGIS profile)."
    )

    def initAlgorithm(self, config=None):
        self.add_parameter(
            QgsProcessingParameterString(
                self.MODEL_NAME, self.tr("Versions of this registered model"), optional=True
            ),
            "Empty: the runs of the experiment. A registered model name: one row per version.",
        )
        self.add_parameter(
            QgsProcessingParameterString(
                self.STEP, self.tr("Only runs of this step"), optional=True
            ),
            "train, predict, evaluate, crossvalidate or target; empty: all of these. "
            "crossvalidate.fold: the runs of single folds (nested under their cross-validation).",
            advanced=True,
        )
        self.add_parameter(
            QgsProcessingParameterString(
                self.EXPERIMENT, self.tr("Experiment"), defaultValue="povmap"
            ),
            "The MLflow experiment the runs are recorded in (POVMAP_MLFLOW_EXPERIMENT).",
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
            "How many of the most recent runs (or versions) are listed.",
            advanced=True,
        )
        self.add_parameter(
            QgsProcessingParameterFileDestination(
                self.OUTPUT, self.tr("Runs (CSV)"), self.tr("CSV files (*.csv)")
            ),
            "One row per run: id, step, algorithm, status, start, QGIS version, data fingerprint, "
            "param.* and metric.* columns.",
        )
        self.add_parameter(
            QgsProcessingParameterVectorDestination(
                self.OUTPUT_TABLE,
                self.tr("Runs (table)"),
                QgsProcessing.SourceType.TypeVector,
                optional=True,
                createByDefault=False,
            ),
            "The same rows as a non-spatial GeoPackage table, for the attribute table.",
        )
        self.add_parameter(
            QgsProcessingParameterFileDestination(
                self.REPORT,
                self.tr("Comparison report (HTML)"),
                self.tr("HTML files (*.html)"),
                optional=True,
            ),
            "The most recent runs' ensemble ROC curves overlaid, their metrics side by side and "
            "the parameters that differ in bold.",
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
