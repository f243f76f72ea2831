"""Provider settings shown in Settings ▸ Options ▸ Processing ▸ Providers."""

WORKER_PYTHON = "POVMAP_WORKER_PYTHON"
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
    ProcessingConfig.readSettings()


def unregister():
    from processing.core.ProcessingConfig import ProcessingConfig

    ProcessingConfig.removeSetting(WORKER_PYTHON)


def worker_python():
    """The configured worker interpreter, or None (then the runner decides)."""
    try:
        from processing.core.ProcessingConfig import ProcessingConfig
    except ImportError:  # the processing plugin is not loaded (e.g. a bare script)
        return None
    return ProcessingConfig.getSetting(WORKER_PYTHON) or None
