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
    # an empty folder as the store: the run stops at the checks; the output may not lie inside it
    chips = tmp_path / "empty.chips"
    chips.mkdir()
    common = [f"CHIPS={chips}", f"GRID={grid}", f"OUTPUT={tmp_path / 'model'}"]
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


# Every enumeration of every povmap algorithm and the names the command line takes, in
# option order (number = position). A new enumeration fails test_the_table_is_complete until
# it is added here, so each one is exercised by name below.
RESAMPLING = ["nearest", "bilinear", "cubic", "cubic_spline", "lanczos", "average", "mode"]
ENUMERATIONS = {
    ("crossvalidate", "PRESET"): ["paper", "compact"],
    ("crossvalidate", "STACKING"): ["nested", "validation", "off"],
    ("mappoverty", "DAYTIME_RESAMPLING"): RESAMPLING,
    ("mappoverty", "NIGHTLIGHTS_RESAMPLING"): RESAMPLING,
    ("mappoverty", "ACCESSIBILITY_RESAMPLING"): RESAMPLING,
    ("predict", "SOURCE"): ["chips", "rasters"],
    ("mappoverty", "SOURCE"): ["chips", "rasters"],
    ("mappoverty", "ENGINE"): ["local", "spark"],
    ("predict", "DAYTIME_RESAMPLING"): RESAMPLING,
    ("predict", "NIGHTLIGHTS_RESAMPLING"): RESAMPLING,
    ("predict", "ACCESSIBILITY_RESAMPLING"): RESAMPLING,
    ("predict", "EXTRA_RESAMPLING"): RESAMPLING,
    ("predict", "ENGINE"): ["local", "spark"],
    ("samplechips", "DAYTIME_RESAMPLING"): RESAMPLING,
    ("samplechips", "NIGHTLIGHTS_RESAMPLING"): RESAMPLING,
    ("samplechips", "ACCESSIBILITY_RESAMPLING"): RESAMPLING,
    ("samplechips", "EXTRA_RESAMPLING"): RESAMPLING,
    ("samplechips", "ENGINE"): ["local", "spark"],
    ("target", "BUDGET_UNIT"): ["cells", "people", "share_of_cells", "share_of_people"],
    ("target", "RANK_BY"): ["probability", "expected_poor"],
    ("train", "PRESET"): ["paper", "compact"],
    ("train", "SPLIT"): ["random", "districts"],
    ("train", "BALANCE"): ["undersample", "class_weights"],
    ("districtestimates", "TRANSFORM"): ["none", "arcsin"],
    ("districtestimates", "MSE"): ["analytical", "bootstrap"],
    ("districtestimates", "BENCHMARK"): ["none", "national"],
    ("districtestimates", "VARIANCES"): ["direct", "smoothed"],
    ("train", "STACKING"): ["validation", "off"],
}


def enumerations(provider):
    from qgis.core import QgsProcessingParameterEnum

    return {
        (alg.name(), definition.name()): definition
        for alg in provider.algorithms()
        for definition in alg.parameterDefinitions()
        if isinstance(definition, QgsProcessingParameterEnum)
    }


def test_the_table_is_complete_and_resampling_names_are_rasterios(povmap_provider):
    from rasterio.enums import Resampling

    from povmap_qgis.processing.parameter_values import enum_names

    found = enumerations(povmap_provider)
    assert sorted(found) == sorted(ENUMERATIONS)
    for key, definition in found.items():
        assert enum_names(definition) == ENUMERATIONS[key], key
        assert len(definition.options()) == len(ENUMERATIONS[key]), key
    for name in RESAMPLING:  # the worker hands these to rasterio.warp.reproject
        assert Resampling[name].name == name


def test_every_enumeration_takes_every_name_and_number_in_processing(povmap_provider):
    registry = QgsApplication.processingRegistry()
    context = QgsProcessingContext()
    for (algorithm_id, key), names in ENUMERATIONS.items():
        alg = registry.createAlgorithmById(f"povmap:{algorithm_id}")
        for index, name in enumerate(names):
            for value in (name, name.upper(), f" {name} ", index, str(index)):
                assert alg.parameterAsEnum({key: value}, key, context) == index, (key, value)
                ok, message = alg.checkParameterValues({key: value}, context)
                assert "is not one of" not in message, (algorithm_id, key, value, message)
        ok, message = alg.checkParameterValues({key: "no_such_option"}, context)
        label = alg.parameterDefinition(key).description()
        assert not ok and message.startswith(f"{label} ({key}): 'no_such_option' is not one of")
        assert f"{names[-1]} ({len(names) - 1})" in message


def command_line(algorithm_id, chosen, folder):
    """KEY=VALUE for a qgis_process run: every enumeration by ``chosen`` name, every other
    mandatory parameter a value that fails QGIS's own check afterwards (a missing file)."""
    from qgis.core import (
        QgsProcessingDestinationParameter,
        QgsProcessingParameterDefinition,
        QgsProcessingParameterField,
    )

    alg = algorithm(algorithm_id)
    arguments = [f"{key}={value}" for key, value in chosen.items()]
    for definition in alg.parameterDefinitions():
        if definition.name() in chosen:
            continue
        optional = definition.flags() & QgsProcessingParameterDefinition.Flag.FlagOptional
        # qgis_process 3.22 forgets a mandatory field parameter's default: give it
        field = isinstance(definition, QgsProcessingParameterField)
        if optional or (definition.defaultValue() is not None and not field):
            continue
        if field and definition.defaultValue() is not None:
            value = definition.defaultValue()
        elif isinstance(definition, QgsProcessingDestinationParameter):
            extension = definition.defaultFileExtension() or "out"
            value = folder / f"{definition.name().lower()}.{extension}"
        else:
            value = folder / "missing" / f"{definition.name().lower()}.gpkg"
        arguments.append(f"{definition.name()}={value}")
    return arguments


def test_qgis_process_parses_every_enumeration_by_name(povmap_provider, tmp_path):
    """Each algorithm run once with all its enumerations given by (non-default) names: the
    names pass the command line and the check; the run stops at a missing input instead.
    With one name misspelt, the same command stops at that name (the check is live)."""
    by_algorithm = {}
    for (algorithm_id, key), names in ENUMERATIONS.items():
        by_algorithm.setdefault(algorithm_id, {})[key] = names
    for algorithm_id, parameters in by_algorithm.items():
        alg = algorithm(algorithm_id)
        chosen = {}
        for key, names in parameters.items():
            default = alg.parameterDefinition(key).defaultValue()
            chosen[key] = next(name for index, name in enumerate(names) if index != default)
        completed = run_qgis_process(
            "run",
            f"povmap:{algorithm_id}",
            "--",
            *command_line(algorithm_id, chosen, tmp_path),
            check=False,
        )
        said = completed.stdout + completed.stderr
        assert "is not one of" not in said, (algorithm_id, chosen, said)
        assert "mandatory parameters were not specified" not in said, said
        assert completed.returncode != 0 and "missing" in said, (algorithm_id, said)
        key = next(iter(parameters))
        misspelt = dict(chosen, **{key: chosen[key] + "x"})
        completed = run_qgis_process(
            "run",
            f"povmap:{algorithm_id}",
            "--",
            *command_line(algorithm_id, misspelt, tmp_path),
            check=False,
        )
        label = alg.parameterDefinition(key).description()
        assert f"{label} ({key}): '{chosen[key]}x' is not one of" in (
            completed.stdout + completed.stderr
        ), algorithm_id
