"""Shared fixtures. Tests run against the plugin as built by scripts/build_plugin.py.

Before any test module is imported, the build (and the plugin installed into the
QGIS profile, which qgis_process loads) is brought up to date with the source tree
when their digests differ, so an edit is always what the next ``pytest`` tests.
build/ is then put first on sys.path: ``import povmap_qgis`` is the built copy.
"""

import ast
import faulthandler
import fcntl
import glob
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD_DIR = os.path.join(ROOT, "build")
DIST_DIR = os.path.join(ROOT, "dist")
CACHE_DIR = os.path.join(BUILD_DIR, "test-data")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# A crash shows its Python traceback, also during teardown after pytest has finished (pytest
# restores a handler that was on before it started).
faulthandler.enable()
# The worker runs under the interpreter running the tests (the setup venv).
os.environ["POVMAP_PYTHON"] = sys.executable
# No run history unless a test asks for it (tests/test_tracking.py): runs stay fast and
# parallel test sessions never contend for one SQLite store.
os.environ.setdefault("POVMAP_TRACKING", "off")
# The QGIS settings folder the tests install the plugin into and the qgis_process they
# start loads it from: their own (build/qgis-config), never the developer's QGIS profile;
# POVMAP_QGIS_CONFIG_ROOT chooses another. (pytest-qgis points QGIS_CUSTOM_CONFIG_PATH at
# a scratch folder for the in-process QGIS; subprocesses get this one.)
os.environ.setdefault("POVMAP_QGIS_CONFIG_ROOT", os.path.join(BUILD_DIR, "qgis-config"))
QGIS_CONFIG_ROOT = os.environ["POVMAP_QGIS_CONFIG_ROOT"]
PROFILE_DIR = os.path.join(QGIS_CONFIG_ROOT, "profiles", "default")
INSTALLED_PLUGIN = os.path.join(PROFILE_DIR, "python", "plugins", "povmap_qgis")


def _load_script(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "scripts", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _bring_build_and_install_up_to_date():
    builder = _load_script("build_plugin")
    builder.ensure_current(BUILD_DIR, DIST_DIR)
    digest_file = builder.DIGEST_FILE
    built = os.path.join(BUILD_DIR, "povmap_qgis", digest_file)
    installed = os.path.join(INSTALLED_PLUGIN, digest_file)
    with builder.build_lock(BUILD_DIR):
        recorded_python = _installed_worker_python()
        if _read(built) != _read(installed) or recorded_python is None:
            installer = _load_script("install_plugin")
            installer.install(BUILD_DIR, PROFILE_DIR, recorded_python or sys.executable)


def _installed_worker_python():
    """The worker Python the installed plugin records; None if none, or if it no longer exists
    (a profile last installed from another checkout), so that it is reinstalled."""
    try:
        with open(os.path.join(INSTALLED_PLUGIN, "worker_env.json"), encoding="utf-8") as handle:
            python = json.load(handle)["python"]
    except (OSError, ValueError, KeyError):
        return None
    return python if os.access(python, os.X_OK) else None


def _read(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError:
        return None


_bring_build_and_install_up_to_date()
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
    """The generated sample of ``size``, cached under a digest of the code that shapes its files.

    Generated without the ceiling check (``--no-check``): the check scores the generated
    households with the plugin's training-grid code and only adds numbers to the metadata,
    so an edit of that code need not rebuild the sample (tests/test_sample_project.py runs
    the check on a sample of its own). With ``--sae``: the sub-districts and the clustered
    survey too (the other files are the same with or without it).
    """
    generator_files = [
        os.path.join(ROOT, "scripts", name)
        for name in ("make_sample_project.py", "sample_project_qgz.py")
    ] + sorted(glob.glob(os.path.join(ROOT, "scripts", "sample_project", "*.py")))
    ceiling_check = os.path.join(ROOT, "scripts", "sample_project", "checks.py")
    run = [path for path in generator_files if path != ceiling_check]
    digest = hashlib.sha256()
    for path in generator_files + _imported_plugin_modules(run):
        with open(path, "rb") as handle:
            digest.update(handle.read())
    folder = os.path.join(CACHE_DIR, f"{size}-{digest.hexdigest()[:12]}")
    os.makedirs(CACHE_DIR, exist_ok=True)
    # One generator at a time: parallel test processes (pytest -n) share the cache.
    with open(f"{folder}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.isfile(os.path.join(folder, "synthetic_sample_metadata.json")):
            command = [sys.executable, generator_files[0], "--size", size, "--out", folder]
            subprocess.run(command + ["--quiet", "--no-check", "--sae"], check=True)
    return folder


def _imported_plugin_modules(paths):
    """The povmap_qgis source files that ``paths`` import, followed transitively.

    The cached sample data is keyed on these (and the generator), so an edit to
    any code that shapes the sample rebuilds it, and nothing else does.
    """
    seen, pending = set(), list(paths)
    while pending:
        path = pending.pop()
        with open(path, encoding="utf-8") as handle:
            tree = ast.parse(handle.read())
        package = os.path.relpath(os.path.dirname(path), ROOT).replace(os.sep, ".")
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                names = [base] + [f"{base}.{alias.name}" for alias in node.names]
            for name in names:
                if not name.startswith("povmap_qgis"):
                    continue
                relative = name.replace(".", os.sep)
                for candidate in (relative + ".py", os.path.join(relative, "__init__.py")):
                    candidate = os.path.join(ROOT, candidate)
                    if os.path.isfile(candidate) and candidate not in seen:
                        seen.add(candidate)
                        pending.append(candidate)
    return sorted(seen)


def run_qgis_process(*arguments, check=True):
    """Run scripts/qgis-process (the headless command line users run)."""
    environment = dict(os.environ, POVMAP_PYTHON=sys.executable)
    environment.pop("QGIS_CUSTOM_CONFIG_PATH", None)
    if os.environ.get("POVMAP_QGIS_CONFIG_ROOT"):
        environment["QGIS_CUSTOM_CONFIG_PATH"] = os.environ["POVMAP_QGIS_CONFIG_ROOT"]
    completed = subprocess.run(
        [os.path.join(ROOT, "scripts", "qgis-process"), *arguments],
        capture_output=True,
        text=True,
        env=environment,
        timeout=600,
    )
    if check and completed.returncode != 0:
        raise AssertionError(
            f"qgis_process failed ({completed.returncode}):\n{completed.stdout}\n{completed.stderr}"
        )
    return completed


@pytest.fixture(scope="session")
def tiny_chips(tiny_sample, tmp_path_factory):
    """Labelled tiny grid with districts, its chip store (all three inputs) and a night-lights-only store (fast to train on)."""
    from helpers import read_grid

    from povmap_qgis.core.chips.sampling import ChipInput, ChipOptions, sample_chips
    from povmap_qgis.core.grid.training_grid import TrainingGridOptions, build_training_grid

    folder = tmp_path_factory.mktemp("tiny-model")
    grid = str(folder / "training_grid.gpkg")
    build_training_grid(
        TrainingGridOptions(
            points_path=os.path.join(tiny_sample, "synthetic_survey.gpkg"),
            score_field="score",
            output_path=grid,
            crs="EPSG:32642",
            min_obs=8,
            districts_path=os.path.join(tiny_sample, "synthetic_districts.gpkg"),
            district_field="name",
        )
    )
    inputs = [
        ChipInput(
            "daytime", os.path.join(tiny_sample, "synthetic_daytime_s2l2a_10m.tif"), [1, 2, 3]
        ),
        ChipInput("nightlights", os.path.join(tiny_sample, "synthetic_viirs_15arcsec.tif"), [1]),
        ChipInput(
            "accessibility", os.path.join(tiny_sample, "synthetic_accessibility_30arcsec.tif"), [1]
        ),
    ]
    sample_chips(ChipOptions(grid_path=grid, inputs=inputs, output_path=str(folder / "tiny.chips")))
    sample_chips(
        ChipOptions(grid_path=grid, inputs=inputs[1:2], output_path=str(folder / "night.chips"))
    )
    unlabelled = read_grid(grid).drop(columns=["label"])
    unlabelled.to_file(folder / "unlabelled.gpkg", engine="pyogrio")
    return {
        "grid": grid,
        "chips": str(folder / "tiny.chips"),
        "night": str(folder / "night.chips"),
        "folder": folder,
        "grid_unlabelled": str(folder / "unlabelled.gpkg"),
    }


@pytest.fixture(scope="session")
def tiny_predictions(tiny_chips, tmp_path_factory):
    """The bundled model's predictions for the tiny grid (through the worker, never modified:
    the bad-input and full-disk tests use it as an input)."""
    from povmap_qgis import runner
    from povmap_qgis.paths import bundled_model_path

    output = str(tmp_path_factory.mktemp("tiny-predictions") / "predictions.gpkg")
    runner.run_worker(
        "predict",
        {
            "model_path": bundled_model_path(),
            "chips_path": tiny_chips["chips"],
            "grid_path": tiny_chips["grid"],
            "output_path": output,
        },
    )
    return output


@pytest.fixture(autouse=True, scope="session")
def _own_system_temp_folder(tmp_path_factory):
    """The system temp folder of this test process and what it starts: one of pytest's own.

    Runs' private folders (``core.run_folders.exports_root``, households copied for the
    worker) live under it, so the tests that list them see their own process's runs only,
    also when scripts/test runs test files in parallel processes (pytest -n), and nothing
    the suite makes is left in the machine's /tmp.
    """
    folder = str(tmp_path_factory.mktemp("system-temp"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TMPDIR", folder)
        patch.setattr(tempfile, "tempdir", folder)
        yield folder


@pytest.fixture(autouse=True, scope="session")
def _release_python_owned_layers(qgis_app):
    """Delete the map layers tests created themselves before pytest-qgis exits QGIS.

    A test that passes map layers it created itself (Python-owned) to an algorithm that
    fails leaves them referenced from the exception's frames, which sip's exception
    objects keep out of reach of the cycle collector; destroyed during interpreter
    teardown, after QGIS has exited, they would crash the process after every test
    passed. Handing each one to the project and removing it deletes it while QGIS still
    runs (pytest-qgis cleans its layer fixtures the same way); the Python wrapper left
    behind no longer owns anything. QGIS itself owns the layers of a project and of
    qgis_process, so this concerns the test process only.
    """
    from qgis_helpers import release_python_owned_layers

    yield
    release_python_owned_layers()
