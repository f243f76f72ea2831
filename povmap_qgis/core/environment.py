"""What the worker environment can do (Python, key packages, GPU)."""

import importlib
import platform
import sys

PACKAGES = (
    "numpy",
    "pandas",
    "geopandas",
    "pyogrio",
    "shapely",
    "pyproj",
    "rasterio",
    "sklearn",
    "matplotlib",
    "tensorflow",
)


def describe_environment(reporter=None, check_gpu=True):
    description = {
        "python": sys.executable,
        "python_version": platform.python_version(),
        "packages": {},
    }
    for name in PACKAGES:
        try:
            module = importlib.import_module(name)
            description["packages"][name] = getattr(module, "__version__", "installed")
        except Exception as error:  # a broken install is worth reporting, not crashing on
            description["packages"][name] = (
                None if isinstance(error, ModuleNotFoundError) else f"broken: {error}"
            )
    description["gpus"] = []
    if (
        check_gpu
        and description["packages"].get("tensorflow")
        and not str(description["packages"]["tensorflow"]).startswith("broken")
    ):
        import tensorflow

        description["gpus"] = [
            device.name for device in tensorflow.config.list_physical_devices("GPU")
        ]
    return description
