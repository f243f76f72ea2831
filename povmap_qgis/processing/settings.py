"""Provider settings shown in Settings ▸ Options ▸ Processing ▸ Providers."""

import os

WORKER_PYTHON = "POVMAP_WORKER_PYTHON"
TRACKING_URI = "POVMAP_TRACKING_URI"
TRACKING_URI_VARIABLES = ("POVMAP_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI")
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
    ProcessingConfig.readSettings()


def unregister():
    from processing.core.ProcessingConfig import ProcessingConfig

    ProcessingConfig.removeSetting(WORKER_PYTHON)
    ProcessingConfig.removeSetting(TRACKING_URI)


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
    """Variables telling the worker where to record the run (core/tracking.py) and what ran it.

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
