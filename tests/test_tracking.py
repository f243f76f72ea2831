"""Run history in MLflow (issue 15): real runs through Processing and the worker, on a
temporary SQLite store named by POVMAP_MLFLOW_TRACKING_URI (tests/conftest.py switches
tracking off for every other test)."""

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
from qgis_helpers import run_algorithm, run_failing

MODEL_NAME = "tracked"
EPOCHS = 2
FOLDS = 3


def sha256_of(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def client_for(uri):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def tensorflow_device():
    """The device TensorFlow sees, asked in a fresh interpreter (as the worker is)."""
    code = (
        "import tensorflow as tf\n"
        "gpus = tf.config.list_physical_devices('GPU')\n"
        "print(', '.join(g.name.removeprefix('/physical_device:') + ' ' + "
        "tf.config.experimental.get_device_details(g).get('device_name', '') for g in gpus) "
        "or 'CPU')"
    )
    if not hasattr(tensorflow_device, "answer"):
        completed = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
        )
        tensorflow_device.answer = completed.stdout.strip().splitlines()[-1].strip()
    return tensorflow_device.answer


def runs_of(uri, step):
    client = client_for(uri)
    experiment = client.get_experiment_by_name("povmap")
    runs = client.search_runs([experiment.experiment_id], f"tags.`povmap.step` = '{step}'")
    return client, runs


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """A fresh SQLite store for this module's runs."""
    folder = tmp_path_factory.mktemp("history")
    uri = f"sqlite:///{folder / 'mlruns.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POVMAP_MLFLOW_TRACKING_URI", uri)
        patch.delenv("POVMAP_TRACKING", raising=False)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        yield {"uri": uri, "folder": folder}


@pytest.fixture(scope="module")
def tracked_training(history, tiny_chips, qgis_processing, tmp_path_factory):
    """One compact member trained for two epochs on the night-lights store, through Processing."""
    from qgis.core import QgsApplication

    from povmap_qgis.processing.provider import PovmapProvider

    if QgsApplication.processingRegistry().providerById("povmap") is None:
        provider = PovmapProvider()
        tracked_training.provider = provider  # the registry does not own the Python object
        QgsApplication.processingRegistry().addProvider(provider)
    output = str(tmp_path_factory.mktemp("tracked") / "tiny_night.povmodel")
    results, feedback = run_algorithm(
        "povmap:train",
        {
            "CHIPS": tiny_chips["night"],
            "GRID": tiny_chips["grid"],
            "PRESET": 1,
            "MEMBERS": "compact_cnn",
            "EPOCHS": EPOCHS,
            "SEED": 5,
            "MODEL_NAME": MODEL_NAME,
            "OUTPUT": output,
        },
    )
    return results, feedback


@pytest.mark.slow  # trains, or waits on locked MLflow stores
def test_a_train_run_is_recorded_with_params_epoch_metrics_fingerprints_and_manifest(
    history, tracked_training, tiny_chips
):
    from qgis.core import Qgis

    results, feedback = tracked_training
    client, runs = runs_of(history["uri"], "train")
    assert len(runs) == 1, feedback.text()
    run = runs[0]
    assert run.info.status == "FINISHED"
    tags, params = run.data.tags, run.data.params
    assert tags["povmap.algorithm"] == "povmap:train"
    assert tags["qgis.version"] == Qgis.QGIS_VERSION
    assert params["preset"] == "compact" and params["epochs"] == str(EPOCHS)
    assert json.loads(params["members"]) == ["compact_cnn"] and params["seed"] == "5"
    assert params["device"] == tensorflow_device()  # "CPU" on a machine without a GPU
    # Data versioning: the grid file and the chip store manifest, by sha256.
    assert params["input.grid_path"] == "sha256:" + sha256_of(tiny_chips["grid"])
    store_manifest = os.path.join(tiny_chips["night"], "manifest.json")
    assert params["input.chips_path"] == "sha256:" + sha256_of(store_manifest)
    assert "input.output_path" not in params
    # Per-epoch metrics, one point per epoch trained, as the log says.
    manifest_path = os.path.join(results["OUTPUT"], "manifest.json")
    with open(manifest_path, encoding="utf-8") as handle:
        manifest = json.load(handle)
    epochs = manifest["members"][0]["epochs_trained"]
    history_points = client.get_metric_history(run.info.run_id, "compact_cnn/val_loss")
    assert [point.step for point in history_points] == list(range(1, epochs + 1))
    best = min(point.value for point in history_points)
    assert best == pytest.approx(manifest["members"][0]["best_val_loss"], abs=1e-5)
    # Final metrics: the holdout numbers of the manifest.
    holdout = manifest["metrics"]["holdout"]["ensemble"]
    assert run.data.metrics["metrics.ensemble.n"] == holdout["n"]
    assert run.data.metrics["metrics.ensemble.accuracy"] == pytest.approx(holdout["accuracy"])
    # Artifacts: the manifest as written, never chips, grids or weights.
    artifacts = [item.path for item in client.list_artifacts(run.info.run_id, "model")]
    assert sorted(artifacts) == ["model/manifest.json", "model/mlflow.json"]
    downloaded = client.download_artifacts(
        run.info.run_id, "model/manifest.json", str(history["folder"])
    )
    assert sha256_of(downloaded) == sha256_of(manifest_path)


@pytest.mark.slow  # trains, or waits on locked MLflow stores
def test_train_registers_a_version_and_the_package_still_verifies(history, tracked_training):
    from povmap_qgis.core.model import model_package

    results, _ = tracked_training
    client, runs = runs_of(history["uri"], "train")
    version = client.get_model_version(MODEL_NAME, "1")
    assert version.run_id == runs[0].info.run_id
    assert os.path.samefile(version.source, results["OUTPUT"])
    with open(os.path.join(results["OUTPUT"], "manifest.json"), encoding="utf-8") as handle:
        manifest = json.load(handle)
    holdout = manifest["metrics"]["holdout"]["ensemble"]
    assert float(version.tags["holdout.ensemble.accuracy"]) == pytest.approx(
        holdout["accuracy"], abs=1e-3
    )
    assert version.tags["povmap.training_fingerprint"] == manifest["training"]["fingerprint"]
    # The run id lives in a sidecar; the manifest is what training wrote and still verifies.
    with open(os.path.join(results["OUTPUT"], "mlflow.json"), encoding="utf-8") as handle:
        sidecar = json.load(handle)
    assert sidecar["run_id"] == runs[0].info.run_id and sidecar["version"] == 1
    assert runs[0].info.run_id not in json.dumps(manifest)
    model_package.read_package(results["OUTPUT"])


@pytest.mark.slow  # trains, or waits on locked MLflow stores
def test_a_registered_version_resolves_in_predict(history, tracked_training, tiny_chips, tmp_path):
    from helpers import read_grid

    from povmap_qgis.core.history import mlflow_store

    results, _ = tracked_training
    predicted, feedback = run_algorithm(
        "povmap:predict",
        {
            "MODEL": f"models:/{MODEL_NAME}/1",
            "CHIPS": tiny_chips["night"],
            "GRID": tiny_chips["grid"],
            "OUTPUT": str(tmp_path / "pred.gpkg"),
        },
    )
    frame = read_grid(predicted["OUTPUT"])
    assert len(frame) == predicted["CELLS"] and "prob_compact_cnn" in frame.columns
    client, runs = runs_of(history["uri"], "predict")
    run = next(
        run for run in runs if run.data.tags.get("povmap.model") == f"models:/{MODEL_NAME}/1"
    )
    _, trainings = runs_of(history["uri"], "train")
    assert run.data.tags["povmap.training_run_id"] == trainings[0].info.run_id
    assert run.data.tags["povmap.algorithm"] == "povmap:predict"
    assert run.data.params["model_path"] == results["OUTPUT"]
    assert run.data.metrics["predicted_poor"] == predicted["PREDICTED_POOR"]
    assert run.data.params["device"] == tensorflow_device()
    # the package's training reference (baseline.training_range): the PSI predict computed
    assert run.data.tags["povmap.drift"].startswith("PSI per input nightlights")
    assert 0 <= run.data.metrics["drift/nightlights"] < 0.25  # the grid it was trained on
    # An alias, set by povmap:setmodelalias, resolves to the same folder.
    aliased, _ = run_algorithm(
        "povmap:setmodelalias", {"MODEL_NAME": MODEL_NAME, "VERSION": 1, "ALIAS": "champion"}
    )
    assert aliased["MODEL_URI"] == f"models:/{MODEL_NAME}@champion"
    folder, version = mlflow_store.resolve_model_uri(f"models:/{MODEL_NAME}@champion")
    assert folder == results["OUTPUT"] and str(version.version) == "1"
    message = run_failing(
        "povmap:predict",
        {
            "MODEL": f"models:/{MODEL_NAME}/7",
            "CHIPS": tiny_chips["night"],
            "GRID": tiny_chips["grid"],
            "OUTPUT": str(tmp_path / "pred7.gpkg"),
        },
    )
    assert f"MODEL: 'models:/{MODEL_NAME}/7' was not found in the run history" in message


@pytest.mark.slow  # trains, or waits on locked MLflow stores
def test_runs_lists_what_the_client_sees_as_csv_table_and_html(history, tracked_training, tmp_path):
    import pandas as pd
    import pyogrio

    client, trainings = runs_of(history["uri"], "train")
    _, predictions = runs_of(history["uri"], "predict")
    results, _ = run_algorithm(
        "povmap:runs",
        {
            "OUTPUT": str(tmp_path / "runs.csv"),
            "OUTPUT_TABLE": str(tmp_path / "runs.gpkg"),
            "REPORT": str(tmp_path / "runs.html"),
        },
    )
    table = pd.read_csv(results["OUTPUT"])
    recorded = {run.info.run_id: run for run in trainings + predictions}
    assert results["ROWS"] == len(table) == len(recorded) >= 2
    assert set(table["run_id"]) == set(recorded)
    for row in table.itertuples(index=False):
        run = recorded[row.run_id]
        assert row.step == run.data.tags["povmap.step"] and row.status == run.info.status
    training = table.set_index("run_id").loc[trainings[0].info.run_id]
    for key, value in trainings[0].data.metrics.items():
        assert training[f"metric.{key}"] == pytest.approx(value)
    assert training["param.seed"] == 5 and training["registered_model"] == f"{MODEL_NAME}/1"
    layer = pyogrio.read_info(results["OUTPUT_TABLE"], layer="runs")
    assert layer["geometry_type"] is None and layer["features"] == len(table)
    with open(results["REPORT"], encoding="utf-8") as handle:
        report = handle.read()
    assert "Metrics side by side" in report and "parameters that differ" in report
    versions, _ = run_algorithm(
        "povmap:runs", {"MODEL_NAME": MODEL_NAME, "OUTPUT": str(tmp_path / "versions.csv")}
    )
    rows = pd.read_csv(versions["OUTPUT"])
    assert list(rows["version"]) == [1] and rows["aliases"][0] == "champion"
    assert rows["run_id"][0] == trainings[0].info.run_id


@pytest.fixture(scope="module")
def tracked_evaluation(history, tracked_training, tiny_chips, tmp_path_factory):
    """The trained package's predictions on its own grid, evaluated, through Processing."""
    folder = tmp_path_factory.mktemp("tracked-evaluation")
    results, _ = tracked_training
    predicted, _ = run_algorithm(
        "povmap:predict",
        {
            "MODEL": results["OUTPUT"],
            "CHIPS": tiny_chips["night"],
            "GRID": tiny_chips["grid"],
            "OUTPUT": str(folder / "pred.gpkg"),
        },
    )
    evaluated, feedback = run_algorithm(
        "povmap:evaluate",
        {
            "PREDICTIONS": predicted["OUTPUT"],
            "TRUTH": tiny_chips["grid"],
            "HITMISS": str(folder / "hitmiss.gpkg"),
            "REPORT": str(folder / "report.html"),
            "METRICS": str(folder / "metrics.json"),
        },
    )
    return predicted, evaluated, feedback


@pytest.mark.slow  # trains, or waits on locked MLflow stores
def test_an_evaluate_run_keeps_the_report_qgis_wrote_and_the_metrics_files(
    history, tracked_evaluation, tmp_path
):
    predicted, evaluated, feedback = tracked_evaluation
    client, runs = runs_of(history["uri"], "evaluate")
    assert len(runs) == 1 and runs[0].data.tags["povmap.algorithm"] == "povmap:evaluate"
    run_id = runs[0].info.run_id
    stored = {
        item.path
        for folder in ("reports", "metrics")
        for item in client.list_artifacts(run_id, folder)
    }
    assert stored == {"reports/report.html", "metrics/metrics.json", "metrics/metrics.csv"}
    downloaded = client.download_artifacts(run_id, "reports/report.html", str(tmp_path))
    assert sha256_of(downloaded) == sha256_of(evaluated["REPORT"])
    assert params_fingerprint(runs[0], "predictions_path") == sha256_of(predicted["OUTPUT"])
    assert "Run history" not in " ".join(feedback.warnings)


def params_fingerprint(run, option):
    return run.data.params[f"input.{option}"].removeprefix("sha256:")


@pytest.mark.slow  # trains, or waits on locked MLflow stores
def test_tracking_off_writes_nothing(tracked_training, tiny_chips, tmp_path, monkeypatch):
    results, _ = tracked_training
    store = tmp_path / "off"
    monkeypatch.setenv("POVMAP_MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlruns.db'}")
    monkeypatch.setenv("POVMAP_TRACKING", "off")
    sidecar = sha256_of(os.path.join(results["OUTPUT"], "mlflow.json"))
    predicted, feedback = run_algorithm(
        "povmap:predict",
        {
            "MODEL": results["OUTPUT"],
            "CHIPS": tiny_chips["night"],
            "GRID": tiny_chips["grid"],
            "OUTPUT": str(tmp_path / "pred.gpkg"),
        },
    )
    assert os.path.isfile(predicted["OUTPUT"])
    assert not store.exists() and "Run history" not in feedback.text()
    assert sha256_of(os.path.join(results["OUTPUT"], "mlflow.json")) == sidecar
    message = run_failing(
        "povmap:predict",
        {
            "MODEL": f"models:/{MODEL_NAME}/1",
            "CHIPS": tiny_chips["night"],
            "GRID": tiny_chips["grid"],
            "OUTPUT": str(tmp_path / "pred2.gpkg"),
        },
    )
    assert "MODEL:" in message and "switched off" in message
    assert not store.exists()


@pytest.mark.slow  # trains, or waits on locked MLflow stores
def test_an_unreachable_tracking_server_warns_once_and_the_algorithm_succeeds(
    tracked_training, tiny_chips, tmp_path, monkeypatch
):
    results, _ = tracked_training
    monkeypatch.setenv("POVMAP_MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # loopback, closed
    monkeypatch.delenv("POVMAP_TRACKING", raising=False)
    predicted, feedback = run_algorithm(
        "povmap:predict",
        {
            "MODEL": results["OUTPUT"],
            "CHIPS": tiny_chips["night"],
            "GRID": tiny_chips["grid"],
            "OUTPUT": str(tmp_path / "pred.gpkg"),
        },
    )
    assert os.path.isfile(predicted["OUTPUT"]) and predicted["CELLS"] > 0
    warnings = [text for text in feedback.warnings if "Run history" in text]
    assert len(warnings) == 1 and "http://127.0.0.1:9" in warnings[0], feedback.text()
    assert "goes on without it" in warnings[0]


@pytest.mark.slow  # trains, or waits on locked MLflow stores
def test_the_adapter_defaults_to_a_sqlite_store_in_the_qgis_profile(qgis_app, monkeypatch):
    from qgis.core import Qgis, QgsApplication

    from povmap_qgis.processing import settings

    for name in ("POVMAP_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    environment = settings.run_history_environment("train")
    expected = os.path.join(QgsApplication.qgisSettingsDirPath(), "povmap", "mlruns.db")
    assert environment["POVMAP_MLFLOW_TRACKING_URI"] == "sqlite:///" + os.path.abspath(expected)
    assert environment["POVMAP_ALGORITHM"] == "povmap:train"
    assert environment["POVMAP_QGIS_VERSION"] == Qgis.QGIS_VERSION
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert "POVMAP_MLFLOW_TRACKING_URI" not in settings.run_history_environment("train")


@pytest.fixture(scope="module")
def tracked_crossvalidation(history, tracked_training, tiny_chips, tmp_path_factory):
    """A 3-fold cross-validation of one compact member (one epoch), through Processing."""
    folder = tmp_path_factory.mktemp("tracked-cv")
    results, feedback = run_algorithm(
        "povmap:crossvalidate",
        {
            "CHIPS": tiny_chips["night"],
            "GRID": tiny_chips["grid"],
            "PRESET": 1,
            "MEMBERS": "compact_cnn",
            "SEED": 4,
            "FOLDS": FOLDS,
            "EPOCHS": 1,
            "REPORT": str(folder / "report.html"),
            "METRICS": str(folder / "metrics.json"),
            "OUTPUT_GRID": str(folder / "folds.gpkg"),
        },
    )
    with open(results["METRICS"], encoding="utf-8") as handle:
        document = json.load(handle)
    return results, feedback, document


@pytest.mark.slow  # trains, or waits on locked MLflow stores
def test_each_cross_validation_fold_is_a_nested_run_with_its_epochs_and_metrics(
    history, tracked_crossvalidation
):
    from helpers import read_grid
    from sklearn.metrics import roc_auc_score

    results, feedback, document = tracked_crossvalidation
    client, parents = runs_of(history["uri"], "crossvalidate")
    assert len(parents) == 1, feedback.text()
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.data.params["folds"] == str(FOLDS)
    assert parent.data.params["device"] == tensorflow_device()
    assert not [key for key in parent.data.metrics if key.startswith("fold")]  # not prefixed
    _, children = runs_of(history["uri"], "crossvalidate.fold")
    children = [
        run for run in children if run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    ]
    assert len(children) == FOLDS
    grid = read_grid(results["OUTPUT_GRID"])  # the out-of-fold predictions, per cell
    for child in sorted(children, key=lambda run: int(run.data.params["fold"])):
        fold = int(child.data.params["fold"])
        record = document["folds"][fold - 1]
        assert child.info.status == "FINISHED"
        assert child.info.experiment_id == parent.info.experiment_id
        assert child.data.tags["povmap.part"] == f"fold {fold}"
        assert json.loads(child.data.params["districts"]) == record["districts"]
        assert child.data.params["device"] == tensorflow_device()
        # per-epoch validation loss of the fold's member, as many points as epochs it trained
        points = client.get_metric_history(child.info.run_id, "compact_cnn/val_loss")
        member = record["members"]["compact_cnn"]
        assert [point.step for point in points] == list(range(1, member["epochs_trained"] + 1))
        assert min(point.value for point in points) == pytest.approx(member["best_val_loss"])
        # final metrics: the fold's numbers in the metrics JSON, and sklearn on the written cells
        ensemble = record["metrics"]["ensemble"]
        assert child.data.metrics["metrics.ensemble.auc"] == pytest.approx(ensemble["auc"])
        assert child.data.metrics["metrics.ensemble.recall"] == pytest.approx(ensemble["recall"])
        assert child.data.metrics["cells.test_cells"] == record["test_cells"]
        cells = grid[grid["fold"] == fold]
        assert len(cells) == record["test_cells"]
        assert ensemble["auc"] == pytest.approx(roc_auc_score(cells["label"], cells["prob_mean"]))
        stored = stored_roc(client, child.info.run_id, history["folder"])
        assert stored["ensemble"]["auc"] == pytest.approx(ensemble["auc"])


def stored_roc(client, run_id, folder):
    target = folder / f"roc-{run_id}"
    target.mkdir(exist_ok=True)
    with open(
        client.download_artifacts(run_id, "roc/roc.json", str(target)), encoding="utf-8"
    ) as handle:
        return json.load(handle)["curves"]


@pytest.mark.slow  # trains, or waits on locked MLflow stores
def test_runs_report_overlays_the_roc_curves_of_the_runs_compared(
    history, tracked_training, tracked_evaluation, tracked_crossvalidation, tmp_path
):
    import pandas as pd
    from PIL import Image
    from report_checks import chromium, pixels_of
    from required_tools import need_chromium

    from povmap_qgis.core.report.figures import MEMBER_COLOURS

    listed, _ = run_algorithm(
        "povmap:runs", {"OUTPUT": str(tmp_path / "runs.csv"), "REPORT": str(tmp_path / "runs.html")}
    )
    table = pd.read_csv(listed["OUTPUT"])
    assert table["parent_run_id"].isna().all()  # fold runs are listed with STEP only
    client = client_for(history["uri"])
    expected = {}  # run id -> the AUC its step computed
    for step, key in (
        ("train", "metrics.ensemble.auc"),
        ("evaluate", "metrics.all.ensemble.auc"),
        ("crossvalidate", "pooled.ensemble.auc"),
    ):
        _, runs = runs_of(history["uri"], step)
        newest = max(runs, key=lambda run: run.info.start_time)
        expected[newest.info.run_id] = newest.data.metrics[key]
        curve = stored_roc(client, newest.info.run_id, history["folder"])["ensemble"]
        assert curve["auc"] == pytest.approx(newest.data.metrics[key])
    with open(listed["REPORT"], encoding="utf-8") as handle:
        report = handle.read()
    start = report.index("AUC of the drawn curve")
    section = report[start : report.index("</table>", start)]
    rows = re.findall(r"<tr><td[^>]*>(\w+) (\w{8})</td><td[^>]*>([\d.]+)</td>", section)
    shown = {short: float(auc) for _, short, auc in rows}
    for run_id, auc in expected.items():
        assert shown[run_id[:8]] == pytest.approx(auc, abs=5e-4), (run_id, shown)
    assert re.search(
        r'<img src="data:image/png;base64,[^"]+" alt="ROC curves of the runs">', report
    )
    need_chromium()
    screenshot = tmp_path / "runs.png"
    chromium(
        "--window-size=1200,4000",
        f"--screenshot={screenshot}",
        f"file://{listed['REPORT']}",
        profile=tmp_path / "profile",
    )
    pixels = np.asarray(Image.open(screenshot).convert("RGB")).reshape(-1, 3)
    for index in range(len(shown)):  # one colour per run's curve, drawn on the page
        colour = np.array([int(MEMBER_COLOURS[index][i : i + 2], 16) for i in (1, 3, 5)])
        assert pixels_of(pixels, colour, tolerance=30).sum() > 150, MEMBER_COLOURS[index]


LOCK_HOLDER = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute(f"BEGIN {sys.argv[2]}")  # a writer's lock, held until this process ends
connection.execute("UPDATE experiments SET name = name")
print("locked", flush=True)
time.sleep(600)
"""


@contextlib.contextmanager
def locked(database, mode="IMMEDIATE"):
    """Another process holding a write transaction on the SQLite ``database``.

    IMMEDIATE: other writers wait, readers go on (a writer at work); EXCLUSIVE: readers
    wait too (a writer committing).
    """
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(database), mode], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow  # trains, or waits on locked MLflow stores
def test_a_locked_store_warns_once_and_the_algorithm_succeeds(
    history, tracked_training, tiny_chips, tmp_path
):
    results, _ = tracked_training
    database = history["folder"] / "mlruns.db"
    _, before = runs_of(history["uri"], "predict")
    started = time.monotonic()
    with locked(database):
        predicted, feedback = run_algorithm(
            "povmap:predict",
            {
                "MODEL": results["OUTPUT"],
                "CHIPS": tiny_chips["night"],
                "GRID": tiny_chips["grid"],
                "OUTPUT": str(tmp_path / "pred.gpkg"),
            },
        )
    seconds = time.monotonic() - started
    assert os.path.isfile(predicted["OUTPUT"]) and predicted["CELLS"] > 0
    warnings = [text for text in feedback.warnings if "Run history" in text]
    assert len(warnings) == 1, feedback.text()
    assert "locked by another process" in warnings[0] and "goes on without it" in warnings[0]
    _, after = runs_of(history["uri"], "predict")
    assert len(after) == len(before)  # nothing half-recorded
    assert seconds < 120  # MLflow waits 20 s for a locked SQLite database, once


# --- without QGIS -------------------------------------------------------------------------------


def test_tracking_location_switch_and_model_references():
    from povmap_qgis.core.errors import PovmapInputError
    from povmap_qgis.core.history import mlflow_store

    assert mlflow_store.tracking_uri({}) is None
    assert mlflow_store.tracking_uri({"MLFLOW_TRACKING_URI": "sqlite:///a.db"}) == "sqlite:///a.db"
    both = {"MLFLOW_TRACKING_URI": "sqlite:///a.db", "POVMAP_MLFLOW_TRACKING_URI": "sqlite:///b.db"}
    assert mlflow_store.tracking_uri(both) == "sqlite:///b.db"
    assert mlflow_store.tracking_uri(dict(both, POVMAP_TRACKING="off")) is None
    assert mlflow_store.sqlite_path("sqlite:////tmp/x/mlruns.db") == "/tmp/x/mlruns.db"
    assert mlflow_store.local_folder("file:///tmp/a%20b.povmodel") == "/tmp/a b.povmodel"
    assert mlflow_store.local_folder("s3://bucket/a.povmodel") is None
    assert mlflow_store.model_name_of("/data/sindh_2023.povmodel/") == "sindh_2023"
    with pytest.raises(PovmapInputError, match="MODEL: 'models:/a/b/c' is not a registered"):
        mlflow_store.resolve_model_uri("models:/a/b/c", environ=both)
    with pytest.raises(PovmapInputError, match="switched off or not configured"):
        mlflow_store.resolve_model_uri("models:/a/1", environ={})


def test_result_numbers_become_metrics_and_only_reports_become_artifacts(tmp_path):
    from povmap_qgis.core.history import run_contents

    result = {
        "cells": 12,
        "flag": True,
        "metrics": {"ensemble": {"auc": np.float64(0.61), "recall": None, "roc": [0.1, 0.2]}},
        "bad": float("nan"),
    }
    assert dict(run_contents.numeric_leaves(result)) == {
        "cells": 12.0,
        "metrics.ensemble.auc": 0.61,
    }
    report, metrics_csv, layer = tmp_path / "r.html", tmp_path / "m.csv", tmp_path / "p.gpkg"
    for path in (report, metrics_csv, layer):
        path.write_text("x")
    chips = tmp_path / "a.chips"
    chips.mkdir()
    (chips / "manifest.json").write_text("{}")
    found = run_contents.artifact_files(
        None,
        {"report": str(report), "csv": str(metrics_csv), "layer": str(layer), "c": str(chips)},
    )
    assert found == [(str(report), "reports"), (str(metrics_csv), "metrics")]
    raster = tmp_path / "night.tif"
    raster.write_bytes(b"abc")
    assert run_contents.fingerprint_of(str(raster)).startswith("size=3;mtime=")
    assert run_contents.fingerprint_of(str(chips)) == "sha256:" + sha256_of(chips / "manifest.json")
    assert run_contents.fingerprint_of(str(layer)) == "sha256:" + sha256_of(layer)


def test_drift_without_a_reference_is_said_and_psi_flags_a_shift(tmp_path):
    from povmap_qgis.core.history import drift

    package = tmp_path / "m.povmodel"
    package.mkdir()
    (package / "manifest.json").write_text(json.dumps({"format": "povmap-model"}))
    scores, note = drift.drift_scores(str(package), str(tmp_path / "none.chips"))
    assert scores == {} and "no training reference" in note
    levels = np.linspace(0, 1, 11)
    reference = np.quantile(np.random.default_rng(0).normal(0, 1, 20_000), levels)
    same = np.random.default_rng(1).normal(0, 1, 20_000)
    shifted = np.random.default_rng(2).normal(1.5, 1, 20_000)
    assert drift.population_stability(same, reference, levels) < 0.02
    assert drift.population_stability(shifted, reference, levels) > drift.PSI_WARNING
    assert drift.warnings({"nightlights": 0.4, "daytime": 0.01})[0].startswith(
        "Input 'nightlights'"
    )


@dataclasses.dataclass
class GridOptions:
    grid_path: str
    seed: int = 3


@pytest.mark.slow  # trains, or waits on locked MLflow stores
def test_a_failed_step_ends_failed_and_its_parts_are_nested_runs(tmp_path):
    from povmap_qgis.core.history import tracking
    from povmap_qgis.core.progress import RecordingReporter

    grid = tmp_path / "grid.gpkg"
    grid.write_bytes(b"cells")
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    reporter = RecordingReporter()
    children = []
    with pytest.raises(RuntimeError, match="boom"):
        with tracking.tracked_step(
            "crossvalidate", GridOptions(str(grid)), reporter, {"POVMAP_MLFLOW_TRACKING_URI": uri}
        ) as run:
            for fold, epochs in ((1, 2), (2, 1)):  # fold 1: two epochs; fold 2: one, then fails
                with run.reporter.nested_run(f"fold {fold}", {"fold": fold}) as part:
                    children.append(part._run.run_id)
                    member = part.stage(0, 50)  # as training reports from a member's stage
                    for epoch in range(1, epochs + 1):
                        member.metric("compact_cnn/val_loss", 0.5 + epoch, epoch)
                    part.final_metrics({"metrics": {"ensemble": {"auc": 0.6 + fold / 10}}})
                    if fold == 2:
                        raise RuntimeError("boom")
    client = client_for(uri)
    recorded = client.get_run(run.run_id)
    assert recorded.info.status == "FAILED" and reporter.warnings == []
    params = dict(recorded.data.params)
    ran_tensorflow = "tensorflow" in sys.modules  # earlier tests in this process may have
    assert params.pop("device") == (tensorflow_device() if ran_tensorflow else tracking.NO_DEVICE)
    assert params == {
        "grid_path": str(grid),
        "seed": "3",
        "input.grid_path": "sha256:" + sha256_of(grid),
    }
    assert recorded.data.metrics == {}  # the epochs went to the folds' runs
    found = client.search_runs(
        [recorded.info.experiment_id], f"tags.mlflow.parentRunId = '{run.run_id}'"
    )
    assert sorted(child.info.run_id for child in found) == sorted(children)
    for child in found:
        fold = int(child.data.params["fold"])
        assert child.info.status == ("FINISHED" if fold == 1 else "FAILED")
        assert child.data.tags["povmap.step"] == "crossvalidate.fold"
        assert (
            child.data.tags["povmap.data_fingerprint"]
            == (recorded.data.tags["povmap.data_fingerprint"])
        )
        history = client.get_metric_history(child.info.run_id, "compact_cnn/val_loss")
        assert [point.step for point in history] == list(range(1, 3 - fold + 1))
        assert child.data.metrics["metrics.ensemble.auc"] == pytest.approx(0.6 + fold / 10)


@pytest.mark.slow  # trains, or waits on locked MLflow stores
def test_a_store_locked_during_a_run_warns_once_and_the_run_is_closed_once_free(tmp_path):
    from povmap_qgis.core.history import mlflow_store, tracking
    from povmap_qgis.core.progress import RecordingReporter

    database = tmp_path / "mlruns.db"
    environ = {"POVMAP_MLFLOW_TRACKING_URI": f"sqlite:///{database}"}
    reporter = RecordingReporter()
    with tracking.tracked_step("evaluate", GridOptions("none"), reporter, environ) as run:
        assert run.run_id is not None  # started on a free store
        with locked(database) as holder:
            run.reporter.metric("loss", 0.5, 1)  # fails after MLflow's wait
            run.reporter.metric("loss", 0.4, 2)  # not tried again
            run.record_result({"auc": 0.7})
            holder.kill()  # free again before the step ends: the run is closed
            holder.wait()
    assert len(reporter.warnings) == 1, reporter.warnings
    assert "locked by another process" in reporter.warnings[0]
    recorded = client_for(environ["POVMAP_MLFLOW_TRACKING_URI"]).get_run(run.run_id)
    assert recorded.info.status == "FINISHED" and recorded.data.metrics == {}
    assert "locked" in recorded.data.tags[mlflow_store.INCOMPLETE_TAG]


@pytest.mark.slow  # trains, or waits on locked MLflow stores
def test_a_model_reference_in_a_store_locked_even_for_readers_is_a_clear_error(tmp_path):
    from povmap_qgis.core.errors import PovmapInputError
    from povmap_qgis.core.history import mlflow_store

    database = tmp_path / "mlruns.db"
    environ = {"POVMAP_MLFLOW_TRACKING_URI": f"sqlite:///{database}"}
    client = mlflow_store.client_for(environ["POVMAP_MLFLOW_TRACKING_URI"], environ)
    client.create_registered_model("m")
    client.create_model_version("m", source=str(tmp_path))
    assert mlflow_store.resolve_model_uri("models:/m/1", environ=environ)[0] == str(tmp_path)
    with locked(database, "EXCLUSIVE"):
        with pytest.raises(PovmapInputError) as raised:
            mlflow_store.resolve_model_uri("models:/m/1", environ=environ)
    message = str(raised.value)
    assert message.startswith("MODEL: 'models:/m/1' could not be looked up")
    assert "locked by another process" in message and "choose the .povmodel folder" in message


@pytest.mark.slow  # trains, or waits on locked MLflow stores
def test_default_model_names_keep_projects_apart_and_latest_never_crosses_them(tmp_path):
    """Two projects' model.povmodel trained on different cells are two registered models (the
    folder name plus the training data fingerprint), a retrain on the same cells a new version
    of the same one; a MODEL_NAME two projects share makes models:/<name>/latest a refusal
    naming the versions, never the other project's package."""
    from povmap_qgis.core.errors import PovmapInputError
    from povmap_qgis.core.history import mlflow_store, tracking
    from povmap_qgis.core.progress import Reporter

    environ = {"POVMAP_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlruns.db'}"}

    def register(project, fingerprint, name=None):
        package = tmp_path / project / "model.povmodel"
        package.mkdir(parents=True, exist_ok=True)
        run_environ = dict(environ, **({tracking.MODEL_NAME_VARIABLE: name} if name else {}))
        with tracking.tracked_step("train", {"seed": 1}, Reporter(), run_environ) as run:
            run.record_result({"output": str(package), "training_fingerprint": fingerprint})
        return mlflow_store.read_sidecar(str(package))

    first = register("sindh", "aaaaaaaaaaaa")
    other = register("punjab", "bbbbbbbbbbbb")
    again = register("sindh", "aaaaaaaaaaaa")  # retrained on the same cells
    assert first["registered_model"] == "model-aaaaaaaaaaaa" and first["version"] == 1
    assert other["registered_model"] == "model-bbbbbbbbbbbb" and other["version"] == 1
    assert again["registered_model"] == "model-aaaaaaaaaaaa" and again["version"] == 2
    folder, version = mlflow_store.resolve_model_uri(
        "models:/model-bbbbbbbbbbbb/latest", environ=environ
    )
    assert folder == str(tmp_path / "punjab" / "model.povmodel")
    assert version.tags[mlflow_store.FINGERPRINT_TAG] == "bbbbbbbbbbbb"
    # a name given by hand and shared by two projects: 'latest' is refused, versions still resolve
    register("sindh", "aaaaaaaaaaaa", name="shared")
    register("punjab", "bbbbbbbbbbbb", name="shared")
    with pytest.raises(PovmapInputError) as raised:
        mlflow_store.resolve_model_uri("models:/shared/latest", environ=environ)
    message = str(raised.value)
    assert message.startswith("MODEL: 'models:/shared/latest': the versions of 'shared' were")
    assert "versions 1 on data aaaaaaaaaaaa; versions 2 on data bbbbbbbbbbbb" in message
    assert "models:/shared/2" in message
    assert mlflow_store.resolve_model_uri("models:/shared/2", environ=environ)[0] == str(
        tmp_path / "punjab" / "model.povmodel"
    )


def test_the_training_fingerprint_follows_the_cells_and_settings_not_their_order():
    import dataclasses

    import pandas

    from povmap_qgis.core.model.training import TrainOptions
    from povmap_qgis.core.model.training_manifest import training_fingerprint

    cells = pandas.DataFrame({"cell_id": [5, 3, 9], "label": [1, 0, 1]})
    options = TrainOptions(chips_path="x.chips", grid_path="g.gpkg", output_path="m.povmodel")
    members = ["compact_cnn"]
    base = training_fingerprint(options, cells, members)
    assert len(base) == 12
    assert training_fingerprint(options, cells.iloc[::-1], members) == base
    reseeded = dataclasses.replace(options, seed=9, output_path="other.povmodel")
    assert training_fingerprint(reseeded, cells, members) == base
    assert training_fingerprint(options, cells.assign(label=[1, 1, 1]), members) != base
    assert training_fingerprint(options, cells, ["compact_cnn", "compact_wide"]) != base
    other_split = dataclasses.replace(options, split="districts")
    assert training_fingerprint(other_split, cells, members) != base


def test_the_runs_comparison_fits_a_page_finished_runs_first_counts_whole(tmp_path, monkeypatch):
    """A real history: finished runs side by side, KILLED and RUNNING apart; the headline
    metrics only (not per district, fold or epoch); counts printed as whole numbers; only the
    parameters that differ."""
    import re

    from povmap_qgis.core.history import mlflow_store, run_history, tracking

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    monkeypatch.setenv("POVMAP_MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("POVMAP_TRACKING", raising=False)
    client = mlflow_store.client_for(uri)
    experiment = mlflow_store.experiment_id(client, uri, tracking.DEFAULT_EXPERIMENT)
    statuses = ["FINISHED", "KILLED", "FINISHED", "RUNNING", "FINISHED"]
    ids = []
    for index, status in enumerate(statuses):
        run = client.create_run(experiment, tags={"povmap.step": "evaluate"})
        ids.append(run.info.run_id)
        client.log_param(run.info.run_id, "seed", str(index))
        client.log_param(run.info.run_id, "random_draws", "1000")
        client.log_metric(run.info.run_id, "cells", 846.0)
        client.log_metric(run.info.run_id, "metrics.all.ensemble.auc", 0.7 + index / 100)
        client.log_metric(run.info.run_id, "metrics.all.random.recall", 0.5)
        for district in range(60):
            client.log_metric(run.info.run_id, f"metrics.districts.d{district}.ensemble.auc", 0.6)
        client.log_metric(run.info.run_id, "compact_cnn/val_loss", 0.4, step=3)
        if status != "RUNNING":
            client.set_terminated(run.info.run_id, status)
    report = tmp_path / "runs.html"
    run_history.list_runs(
        run_history.RunsOptions(output_csv=str(tmp_path / "runs.csv"), report_path=str(report))
    )
    html = report.read_text(encoding="utf-8")
    html = html[html.index("<main>") :]  # the sections, not the contents
    table = html[html.index("Metrics side by side") : html.index("Parameters")]
    header = re.findall(r"<th[^>]*>([^<]+)</th>", table)
    finished = [
        run_id for run_id, status in zip(ids, statuses, strict=True) if status == "FINISHED"
    ]
    assert header[1:] == [f"evaluate {run_id[:8]}" for run_id in reversed(finished)], header
    rows = re.findall(r"<tr><td[^>]*>([^<]+)</td>", table)
    assert rows == ["cells", "metrics.all.ensemble.auc", "metrics.all.random.recall"], rows
    assert ">846<" in table and "846.000" not in table
    assert "more (per district, per fold, per epoch" in table
    parameters = html[html.index("Parameters") :]
    assert re.findall(r"<tr><td[^>]*>([^<]+)</td>", parameters.split("Runs that did not")[0]) == [
        "seed"
    ]
    others = html[html.index("Runs that did not finish") :]
    for run_id, status in zip(ids, statuses, strict=True):
        assert (run_id in others) == (status != "FINISHED"), status
    assert "KILLED" in others and "RUNNING" in others
