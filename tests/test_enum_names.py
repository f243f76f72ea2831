"""Enumerations take their names on the command line (PRESET=compact), and their numbers still."""

import json
import os

from conftest import run_qgis_process
from qgis.core import QgsApplication, QgsProcessingContext

from povmap_qgis.core.grid.training_grid import TrainingGridOptions, build_training_grid


def algorithm(name):
    return QgsApplication.processingRegistry().createAlgorithmById(f"povmap:{name}")


def small_grid(sample, folder):
    path = str(folder / "grid.gpkg")
    build_training_grid(
        TrainingGridOptions(
            points_path=os.path.join(sample, "synthetic_survey.gpkg"),
            score_field="score",
            output_path=path,
            crs="EPSG:32642",
            min_obs=25,
        )
    )
    return path


def test_names_and_numbers_give_the_same_option(povmap_provider):
    context = QgsProcessingContext()
    cases = {
        "train": {
            "PRESET": [("compact", 1), ("paper", 0), ("COMPACT", 1), ("1", 1), (0, 0)],
            "SPLIT": [("random", 0), ("districts", 1), (1, 1)],
            "BALANCE": [("undersample", 0), ("class_weights", 1), ("1", 1)],
        },
        "crossvalidate": {"PRESET": [("compact", 1), (0, 0)]},
        "samplechips": {
            "DAYTIME_RESAMPLING": [("nearest", 0), ("average", 5), ("mode", 6), (2, 2)],
            "EXTRA_RESAMPLING": [("cubic_spline", 3)],
        },
    }
    for name, parameters in cases.items():
        alg = algorithm(name)
        for key, values in parameters.items():
            for value, index in values:
                assert alg.parameterAsEnum({key: value}, key, context) == index, (name, key, value)


def test_an_unknown_name_is_refused_with_the_names_and_numbers(povmap_provider):
    alg = algorithm("train")
    ok, message = alg.checkParameterValues({"PRESET": "tiny"}, QgsProcessingContext())
    assert not ok
    assert message == "Preset (PRESET): 'tiny' is not one of paper (0), compact (1)."


def test_the_help_lists_the_names(povmap_provider):
    alg = algorithm("train")
    assert (
        "On the command line: random (0), districts (1)." in alg.parameterDefinition("SPLIT").help()
    )


def test_qgis_process_samples_with_resampling_names_and_numbers(tiny_sample, tmp_path):
    grid = small_grid(tiny_sample, tmp_path)
    store = tmp_path / "names.chips"
    run_qgis_process(
        "run",
        "povmap:samplechips",
        "--",
        f"GRID={grid}",
        f"NIGHTLIGHTS={os.path.join(tiny_sample, 'synthetic_viirs_15arcsec.tif')}",
        "NIGHTLIGHTS_RESAMPLING=average",
        f"ACCESSIBILITY={os.path.join(tiny_sample, 'synthetic_accessibility_30arcsec.tif')}",
        "ACCESSIBILITY_RESAMPLING=0",
        f"OUTPUT={store}",
    )
    with open(store / "manifest.json", encoding="utf-8") as handle:
        inputs = {spec["name"]: spec["resampling"] for spec in json.load(handle)["inputs"]}
    assert inputs == {"nightlights": "average", "accessibility": "nearest"}


def test_qgis_process_train_takes_names(tiny_sample, tmp_path):
    """SPLIT=districts reaches the algorithm (it then asks for TEST_DISTRICTS); a bad name stops at the check."""
    grid = small_grid(tiny_sample, tmp_path)
    common = [f"CHIPS={tmp_path}", f"GRID={grid}", f"OUTPUT={tmp_path / 'model'}"]
    for values in (
        ["PRESET=compact", "SPLIT=districts", "BALANCE=class_weights"],
        ["PRESET=1", "SPLIT=1", "BALANCE=1"],
    ):
        completed = run_qgis_process("run", "povmap:train", "--", *common, *values, check=False)
        assert completed.returncode != 0
        assert "TEST_DISTRICTS: name the districts" in completed.stdout + completed.stderr, values
    completed = run_qgis_process(
        "run", "povmap:train", "--", *common, "SPLIT=leave_districts", check=False
    )
    assert completed.returncode != 0
    assert "Holdout (SPLIT): 'leave_districts' is not one of random (0), districts (1)." in (
        completed.stdout + completed.stderr
    )
