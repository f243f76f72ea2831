"""Shared fixtures. Tests run against the plugin as built by scripts/build_plugin.py.

scripts/test builds and installs it first; this file puts build/ first on
sys.path so ``import povmap_qgis`` is the built copy, not the source tree.
"""

import hashlib
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD_DIR = os.path.join(ROOT, "build")
CACHE_DIR = os.path.join(BUILD_DIR, "test-data")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# The worker runs under the interpreter running the tests (the setup venv).
os.environ["POVMAP_PYTHON"] = sys.executable
# Where scripts/setup installed the plugin (pytest-qgis points QGIS_CUSTOM_CONFIG_PATH
# at a scratch folder for the test QGIS; subprocesses must use the real profile).
QGIS_CONFIG_ROOT = os.environ.get("POVMAP_QGIS_CONFIG_ROOT") or os.path.expanduser("~/.local/share/QGIS/QGIS3")
INSTALLED_PLUGIN = os.path.join(QGIS_CONFIG_ROOT, "profiles", "default", "python", "plugins", "povmap_qgis")

if not os.path.isfile(os.path.join(BUILD_DIR, "povmap_qgis", "metadata.txt")):
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "build_plugin.py")], check=True)
sys.path.insert(0, BUILD_DIR)


_PROVIDERS = []  # the registry does not own the Python objects: keep them alive


@pytest.fixture()
def povmap_provider(qgis_processing):
    """The povmap provider, registered in the test QGIS (again, if a test unloaded it)."""
    from qgis.core import QgsApplication

    from povmap_qgis.processing.provider import PovmapProvider

    registry = QgsApplication.processingRegistry()
    provider = registry.providerById("povmap")
    if provider is None:
        provider = PovmapProvider()
        _PROVIDERS.append(provider)
        assert registry.addProvider(provider)
    return provider


@pytest.fixture(scope="session")
def tiny_sample():
    """The tiny synthetic sample project, generated once and cached by generator version."""
    return _sample("tiny")


def _sample(size):
    generator = os.path.join(ROOT, "scripts", "make_sample_project.py")
    digest = hashlib.sha256()
    for name in ("make_sample_project.py", "sample_project_qgz.py"):
        with open(os.path.join(ROOT, "scripts", name), "rb") as handle:
            digest.update(handle.read())
    for name in sorted(os.listdir(os.path.join(ROOT, "povmap_qgis", "core"))):
        if name.endswith(".py"):
            with open(os.path.join(ROOT, "povmap_qgis", "core", name), "rb") as handle:
                digest.update(handle.read())
    folder = os.path.join(CACHE_DIR, f"{size}-{digest.hexdigest()[:12]}")
    if not os.path.isfile(os.path.join(folder, "synthetic_sample_metadata.json")):
        subprocess.run([sys.executable, generator, "--size", size, "--out", folder, "--quiet"], check=True)
    return folder


def run_qgis_process(*arguments, check=True):
    """Run scripts/qgis-process (the headless command line users run)."""
    environment = dict(os.environ, POVMAP_PYTHON=sys.executable)
    environment.pop("QGIS_CUSTOM_CONFIG_PATH", None)
    if os.environ.get("POVMAP_QGIS_CONFIG_ROOT"):
        environment["QGIS_CUSTOM_CONFIG_PATH"] = os.environ["POVMAP_QGIS_CONFIG_ROOT"]
    completed = subprocess.run([os.path.join(ROOT, "scripts", "qgis-process"), *arguments], capture_output=True,
                               text=True, env=environment, timeout=600)
    if check and completed.returncode != 0:
        raise AssertionError(f"qgis_process failed ({completed.returncode}):\n{completed.stdout}\n{completed.stderr}")
    return completed


@pytest.fixture(scope="session")
def tiny_chips(tiny_sample, tmp_path_factory):
    """Labelled tiny grid with districts, its chip store (all three inputs) and a night-lights-only store (fast to train on)."""
    from helpers import read_grid
    from povmap_qgis.core.chips import ChipInput, ChipOptions, sample_chips
    from povmap_qgis.core.training_grid import TrainingGridOptions, build_training_grid

    folder = tmp_path_factory.mktemp("tiny-model")
    grid = str(folder / "training_grid.gpkg")
    build_training_grid(TrainingGridOptions(points_path=os.path.join(tiny_sample, "synthetic_survey.gpkg"), score_field="score",
                                            output_path=grid, crs="EPSG:32642", min_obs=8,
                                            districts_path=os.path.join(tiny_sample, "synthetic_districts.gpkg"), district_field="name"))
    inputs = [ChipInput("daytime", os.path.join(tiny_sample, "synthetic_daytime_s2l2a_10m.tif"), [1, 2, 3]),
              ChipInput("nightlights", os.path.join(tiny_sample, "synthetic_viirs_15arcsec.tif"), [1]),
              ChipInput("accessibility", os.path.join(tiny_sample, "synthetic_accessibility_30arcsec.tif"), [1])]
    sample_chips(ChipOptions(grid_path=grid, inputs=inputs, output_path=str(folder / "tiny.chips")))
    sample_chips(ChipOptions(grid_path=grid, inputs=inputs[1:2], output_path=str(folder / "night.chips")))
    unlabelled = read_grid(grid).drop(columns=["label"])
    unlabelled.to_file(folder / "unlabelled.gpkg", engine="pyogrio")
    return {"grid": grid, "chips": str(folder / "tiny.chips"), "night": str(folder / "night.chips"), "folder": folder,
            "grid_unlabelled": str(folder / "unlabelled.gpkg")}
