"""Provider settings shown in Settings ▸ Options ▸ Processing ▸ Providers."""

import os

WORKER_PYTHON = "POVMAP_WORKER_PYTHON"
TRACKING_URI = "POVMAP_TRACKING_URI"
TRACKING_URI_VARIABLES = ("POVMAP_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI")
SPARK_CONF = "POVMAP_SPARK_CONF"  # also the worker's variable (core/engines/spark_engine.py)
PROVIDER_NAME = "Poverty mapping"


def register():
    from processing.core.ProcessingConfig import ProcessingConfig, Setting

    ProcessingConfig.addSetting(
        Setting(
            PROVIDER_NAME,
            WORKER_PYTHON,
            "Worker Python interpreter (empty: the environment made by scripts/setup)",
            "",
            valuetype=Setting.FILE,
        )
    )
    ProcessingConfig.addSetting(
        Setting(
            PROVIDER_NAME,
            TRACKING_URI,
            "Run history (MLflow tracking URI; empty: a SQLite database in the QGIS profile; "
            "off: no run history)",
            "",
        )
    )
    ProcessingConfig.addSetting(
        Setting(
            PROVIDER_NAME,
            SPARK_CONF,
            "Spark settings for ENGINE=spark (key=value;key=value, e.g. "
            "spark.executor.memory=8g;spark.task.cpus=2; the POVMAP_SPARK_CONF variable wins)",
            "",
        )
    )
    ProcessingConfig.readSettings()


def unregister():
    from processing.core.ProcessingConfig import ProcessingConfig

    ProcessingConfig.removeSetting(WORKER_PYTHON)
    ProcessingConfig.removeSetting(TRACKING_URI)
    ProcessingConfig.removeSetting(SPARK_CONF)


def spark_environment():
    """The Spark settings for the worker: the environment's POVMAP_SPARK_CONF, else the setting."""
    configured = (_setting(SPARK_CONF) or "").strip()
    if os.environ.get(SPARK_CONF) or not configured:
        return {}  # the worker inherits the variable
    return {SPARK_CONF: configured}


def worker_python():
    """The configured worker interpreter, or None (then the runner decides)."""
    try:
        from processing.core.ProcessingConfig import ProcessingConfig
    except ImportError:  # the processing plugin is not loaded (e.g. a bare script)
        return None
    return ProcessingConfig.getSetting(WORKER_PYTHON) or None


def default_tracking_uri():
    """``sqlite:///<QGIS profile>/povmap/mlruns.db``: works offline, needs no server."""
    from qgis.core import QgsApplication

    database = os.path.join(QgsApplication.qgisSettingsDirPath(), "povmap", "mlruns.db")
    return "sqlite:///" + os.path.abspath(database).replace("\\", "/")


def run_history_environment(algorithm_id):
    """Variables telling the worker where to record the run (core/history/tracking.py) and what ran it.

    A tracking URI in the environment wins (the worker inherits it); then the
    plugin setting (``off`` switches the run history off); then the default.
    """
    from qgis.core import Qgis

    environment = {
        "POVMAP_ALGORITHM": f"povmap:{algorithm_id}",
        "POVMAP_QGIS_VERSION": Qgis.QGIS_VERSION,
    }
    if any(os.environ.get(name) for name in TRACKING_URI_VARIABLES):
        return environment
    configured = (_setting(TRACKING_URI) or "").strip()
    if configured.lower() == "off":
        environment["POVMAP_TRACKING"] = "off"
    else:
        environment["POVMAP_MLFLOW_TRACKING_URI"] = configured or default_tracking_uri()
    return environment


def _setting(name):
    try:
        from processing.core.ProcessingConfig import ProcessingConfig
    except ImportError:  # the processing plugin is not loaded (e.g. a bare script)
        return None
    return ProcessingConfig.getSetting(name)
