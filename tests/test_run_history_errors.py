"""Run history errors are messages (issue 24 item 7): a corrupt or unreachable store, an
alias MLflow rejects; runs of killed workers are marked KILLED, not RUNNING for ever.
A real MLflow store in a SQLite file; a real process killed with SIGKILL."""

import os
import signal
import socket
import subprocess
import sys

import pytest

from povmap_qgis.core.errors import PovmapInputError
from povmap_qgis.core.history import mlflow_store, run_history, tracking


@pytest.fixture()
def store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    monkeypatch.setenv(mlflow_store.URI_VARIABLE, uri)
    monkeypatch.delenv(mlflow_store.SWITCH_VARIABLE, raising=False)
    client = mlflow_store.client_for(uri)
    return {"uri": uri, "client": client, "folder": tmp_path}


@pytest.mark.parametrize("alias", ["latest", "v1", "two words", "a" * 300])
def test_an_alias_mlflow_rejects_is_a_message_naming_alias(store, alias):
    store["client"].create_registered_model("m")
    store["client"].create_model_version("m", source=str(store["folder"]))
    with pytest.raises(PovmapInputError) as caught:
        run_history.set_model_alias(run_history.AliasOptions("m", "1", alias))
    assert caught.value.parameter == "ALIAS"
    assert "cannot be an alias" in str(caught.value)


def test_a_corrupt_store_is_a_message(tmp_path, monkeypatch):
    database = tmp_path / "mlruns.db"
    database.write_bytes(b"this is not an SQLite database" * 100)
    monkeypatch.setenv(mlflow_store.URI_VARIABLE, f"sqlite:///{database}")
    monkeypatch.delenv(mlflow_store.SWITCH_VARIABLE, raising=False)
    with pytest.raises(PovmapInputError) as caught:
        run_history.list_runs(run_history.RunsOptions(output_csv=str(tmp_path / "runs.csv")))
    assert "cannot be" in str(caught.value) and str(database) in str(caught.value)
    assert not (tmp_path / "runs.csv").exists()


def test_an_unreachable_server_is_a_message(tmp_path, monkeypatch):
    monkeypatch.setenv(mlflow_store.URI_VARIABLE, "http://127.0.0.1:9")
    monkeypatch.delenv(mlflow_store.SWITCH_VARIABLE, raising=False)
    with pytest.raises(PovmapInputError) as caught:
        run_history.list_runs(run_history.RunsOptions(output_csv=str(tmp_path / "runs.csv")))
    assert "http://127.0.0.1:9 cannot be read" in str(caught.value)


def test_runs_of_killed_workers_are_marked_killed_and_live_ones_left(store, tmp_path):
    client = store["client"]
    experiment = mlflow_store.experiment_id(client, store["uri"], tracking.DEFAULT_EXPERIMENT)
    killed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    host = socket.gethostname()
    runs = {}
    for name, process in (("killed", killed), ("alive", alive)):
        tags = {mlflow_store.PID_TAG: str(process.pid), mlflow_store.HOST_TAG: host}
        runs[name] = client.create_run(experiment, tags=tags).info.run_id
    elsewhere = client.create_run(
        experiment,
        tags={mlflow_store.PID_TAG: str(killed.pid), mlflow_store.HOST_TAG: "other-host"},
    ).info.run_id
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    try:
        run_history.list_runs(run_history.RunsOptions(output_csv=str(tmp_path / "runs.csv")))
        status = {name: client.get_run(run).info.status for name, run in runs.items()}
        assert status == {"killed": "KILLED", "alive": "RUNNING"}
        assert client.get_run(elsewhere).info.status == "RUNNING"
        tag = client.get_run(runs["killed"]).data.tags[mlflow_store.INCOMPLETE_TAG]
        assert f"worker process {killed.pid} ended without closing the run" in tag
    finally:
        alive.kill()
        alive.wait()
