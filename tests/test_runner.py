"""The worker process: protocol, errors that say what to do, cancel (no QGIS)."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import write_points

from povmap_qgis import runner


def test_a_step_streams_progress_and_returns_its_result(tmp_path):
    points = write_points(
        tmp_path / "p.gpkg", [600100.0] * 3, [2800100.0] * 3, "EPSG:32642", score=[1, 2, 3]
    )
    events = []
    result = runner.run_worker(
        "build_training_grid",
        {
            "points_path": str(points),
            "score_field": "score",
            "output_path": str(tmp_path / "g.gpkg"),
        },
        python=sys.executable,
        on_event=events.append,
    )
    assert result["cells_kept"] == 1
    percents = [event["percent"] for event in events if event["event"] == "progress"]
    assert percents == sorted(percents) and percents[-1] == 100
    assert any(event["event"] == "info" and "Grid CRS" in event["message"] for event in events)


def test_input_errors_keep_the_parameter_name(tmp_path):
    with pytest.raises(runner.WorkerError) as caught:
        runner.run_worker(
            "build_training_grid",
            {
                "points_path": str(tmp_path / "none.gpkg"),
                "score_field": "score",
                "output_path": str(tmp_path / "g.gpkg"),
            },
            python=sys.executable,
        )
    assert caught.value.kind == "input" and caught.value.parameter == "INPUT"
    assert "cannot read" in str(caught.value)


def test_a_worker_without_the_packages_says_what_to_install(tmp_path):
    # Debian's python3 sees no venv packages (pyogrio, geopandas...).
    completed = subprocess.run(["/usr/bin/python3", "-c", "import pyogrio"], capture_output=True)
    if completed.returncode == 0:
        pytest.skip(
            "this machine's /usr/bin/python3 has pyogrio; cannot simulate a bare environment"
        )
    with pytest.raises(runner.WorkerError) as caught:
        runner.run_worker(
            "build_training_grid",
            {"points_path": "x.gpkg", "score_field": "s", "output_path": str(tmp_path / "g.gpkg")},
            python="/usr/bin/python3",
        )
    assert caught.value.kind == "missing_package"
    assert "lacks the package 'pyogrio'" in str(caught.value) and "scripts/setup" in str(
        caught.value
    )


def test_missing_interpreter_is_a_setup_error(monkeypatch):
    monkeypatch.setenv(runner.PYTHON_ENV_VARIABLE, "/nonexistent/python")
    with pytest.raises(
        runner.WorkerError, match="does not exist or is not executable.*scripts/setup"
    ) as caught:
        runner.resolve_worker_python()
    assert caught.value.kind == "setup"


def test_resolution_order_env_then_setting_then_setup_file(monkeypatch):
    monkeypatch.setenv(runner.PYTHON_ENV_VARIABLE, sys.executable)
    assert runner.resolve_worker_python("/nonexistent") == sys.executable
    monkeypatch.delenv(runner.PYTHON_ENV_VARIABLE)
    assert runner.resolve_worker_python(sys.executable) == sys.executable


def test_a_crash_reports_the_worker_message(tmp_path):
    with pytest.raises(runner.WorkerError) as caught:
        runner.run_worker("no_such_step", {}, python=sys.executable)
    assert caught.value.kind == "crash" and "unknown step 'no_such_step'" in str(caught.value)


def test_a_killed_worker_is_reported_with_its_exit_code(tmp_path):
    script = tmp_path / "dies.py"
    script.write_text("import os, signal; os.kill(os.getpid(), signal.SIGKILL)\n")
    fake_python = tmp_path / "python"
    fake_python.write_text(f"#!/bin/sh\nexec {sys.executable} {script}\n")
    fake_python.chmod(0o755)
    with pytest.raises(runner.WorkerError, match="stopped unexpectedly"):
        runner.run_worker("environment", {}, python=str(fake_python))


def test_library_output_on_stdout_does_not_break_the_protocol(tmp_path):
    (tmp_path / "noisy_step.py").write_text(
        "import os\n"
        "def run(reporter=None):\n"
        "    print('python noise')\n"
        "    os.write(1, b'C-level noise\\n')\n"
        "    reporter.info('still talking')\n"
        "    return {'done': True}\n"
    )
    script = (
        "import sys, povmap_qgis.worker as worker\n"
        "worker.STEPS['noisy'] = ('noisy_step', None, 'run')\n"
        "sys.exit(worker.main())\n"
    )
    environment = runner.worker_environment()
    environment["PYTHONPATH"] += os.pathsep + str(tmp_path)
    completed = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps({"step": "noisy"}),
        capture_output=True,
        text=True,
        env=environment,
    )
    events = [json.loads(line) for line in completed.stdout.splitlines()]
    assert events == [
        {"event": "info", "message": "still talking"},
        {"event": "result", "result": {"done": True}},
    ]
    assert "python noise" in completed.stderr and "C-level noise" in completed.stderr


def test_cancel_terminates_the_worker_and_removes_partial_output(tmp_path):
    rng = np.random.default_rng(1)
    n = 400_000
    points = write_points(
        tmp_path / "many.gpkg",
        68 + rng.random(n),
        25 + rng.random(n),
        "EPSG:4326",
        score=rng.integers(1, 80, n),
    )
    seen_progress = []
    started = time.monotonic()
    with pytest.raises(runner.WorkerError) as caught:
        runner.run_worker(
            "build_training_grid",
            {
                "points_path": str(points),
                "score_field": "score",
                "output_path": str(tmp_path / "g.gpkg"),
            },
            python=sys.executable,
            on_event=seen_progress.append,
            is_canceled=lambda: bool(seen_progress),
        )
    assert caught.value.kind == "canceled"
    assert time.monotonic() - started < 30
    assert sorted(os.listdir(tmp_path)) == ["many.gpkg"]


def test_environment_step_reports_python_and_packages():
    description = runner.run_worker("environment", {"check_gpu": False}, python=sys.executable)
    assert description["python"] and description["python_version"].startswith("3.")
    assert description["packages"]["geopandas"] and description["packages"]["rasterio"]
