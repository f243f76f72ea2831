"""Predicting from the rasters resumes: a run killed part-way (SIGKILL) continues where it stopped.

Each run is the command line in its own process; the killed one is killed by
``POVMAP_PREDICT_KILL_AFTER`` (``raster_prediction.Checkpoint``: SIGKILL of its
own process once N parts are kept, the moment a user's ``kill -9`` could come).
The rerun with the same parameters predicts only the missing parts and writes
the layer an uninterrupted run writes, field for field.
"""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # three runs of the worker's TensorFlow per engine


def predict_from_rasters(tiny_sample, grid, output, *engine, kill_after=None, batch_rows=16):
    from conftest import BUILD_DIR

    environment = dict(os.environ, PYTHONPATH=BUILD_DIR)
    environment.pop("POVMAP_PREDICT_KILL_AFTER", None)
    if kill_after:
        environment["POVMAP_PREDICT_KILL_AFTER"] = str(kill_after)
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "povmap_qgis.cli",
            "predict",
            "--source",
            "rasters",
            "--grid",
            grid,
            "--daytime",
            os.path.join(tiny_sample, "synthetic_daytime_s2l2a_10m.tif"),
            "--nightlights",
            os.path.join(tiny_sample, "synthetic_viirs_15arcsec.tif"),
            "--accessibility",
            os.path.join(tiny_sample, "synthetic_accessibility_30arcsec.tif"),
            "--output",
            output,
            "--batch-rows",
            str(batch_rows),
            *engine,
        ],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=BUILD_DIR,
        env=environment,
    )
    return completed


def assert_identical_layers(expected_path, found_path):
    from helpers import read_grid

    expected, found = read_grid(expected_path), read_grid(found_path)
    assert list(expected.columns) == list(found.columns)
    assert {"prob_compact_cnn", "prob_mean", "prob_baseline", "chip_flagged"} <= set(found.columns)
    for name in expected.columns:
        if name == "geometry":
            assert expected.geometry.equals(found.geometry)
        else:
            assert expected[name].tolist() == found[name].tolist(), name


@pytest.mark.parametrize(
    "engine",
    [
        pytest.param([], id="local"),
        # one task thread: waves of 3 parts (TASKS_PER_CORE), the driver keeps each wave's parts
        pytest.param(["--engine", "spark", "--spark-master", "local[1]"], id="spark"),
    ],
)
def test_a_killed_run_resumes_and_writes_the_layer_of_an_uninterrupted_run(
    engine, tiny_sample, tiny_chips, tmp_path
):
    from povmap_qgis.core.model.raster_prediction import resume_folder

    if engine:
        from required_tools import need_spark

        need_spark()  # under CI a missing PySpark or Java fails instead of skipping
    grid = tiny_chips["grid"]
    whole = str(tmp_path / "whole" / "predictions.gpkg")
    os.makedirs(os.path.dirname(whole))
    completed = predict_from_rasters(tiny_sample, grid, whole, *engine)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "Resuming" not in completed.stderr

    output = str(tmp_path / "resumed" / "predictions.gpkg")
    os.makedirs(os.path.dirname(output))
    killed = predict_from_rasters(tiny_sample, grid, output, *engine, kill_after=3)
    assert killed.returncode == -9, killed.stderr[-3000:]
    kept = resume_folder(output)
    assert not os.path.exists(output)
    parts = sorted(name for name in os.listdir(kept) if name.startswith("part-"))
    assert len(parts) == 3

    resumed = predict_from_rasters(tiny_sample, grid, output, *engine)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert "Resuming: 3 of " in resumed.stderr, resumed.stderr[-3000:]
    assert summary["cells"] > 100
    assert_identical_layers(whole, output)
    # The kept parts are gone once the layer is written; nothing else beside it.
    assert sorted(os.listdir(os.path.dirname(output))) == ["predictions.gpkg", "predictions.qml"]


def test_kept_parts_of_other_parameters_are_not_used(tiny_sample, tiny_chips, tmp_path):
    """Another batch size (other batches, other numbers): the kept parts are dropped, not mixed in."""
    from povmap_qgis.core.model.raster_prediction import resume_folder

    output = str(tmp_path / "predictions.gpkg")
    killed = predict_from_rasters(tiny_sample, tiny_chips["grid"], output, kill_after=2)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert os.path.isdir(resume_folder(output))
    completed = predict_from_rasters(tiny_sample, tiny_chips["grid"], output, batch_rows=32)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "Resuming" not in completed.stderr
    assert not os.path.exists(resume_folder(output))
