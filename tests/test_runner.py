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


def hanging_python(tmp_path):
    """An 'interpreter' that never answers; its child's pid is written beside it."""
    pid_file = tmp_path / "child.pid"
    script = tmp_path / "hanging python"
    script.write_text(f"#!/bin/sh\nsleep 300 &\necho $! > '{pid_file}'\nwait\n")
    script.chmod(0o755)
    return str(script), pid_file


def assert_stopped(pid_file):
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"the hanging worker's child {pid} is still running")


def test_a_worker_that_never_answers_is_stopped_after_the_start_timeout(tmp_path, monkeypatch):
    python, pid_file = hanging_python(tmp_path)
    monkeypatch.setenv(runner.START_TIMEOUT_VARIABLE, "1.5")
    started = time.monotonic()
    with pytest.raises(runner.WorkerError) as caught:
        runner.run_worker("environment", {"x": "y" * 200_000}, python=python)
    assert time.monotonic() - started < 10  # a job larger than a pipe does not block either
    message = str(caught.value)
    assert caught.value.kind == "setup" and f"'{python}'" in message
    assert "did not answer within 1.5 s" in message and runner.START_TIMEOUT_VARIABLE in message
    assert_stopped(pid_file)


def test_a_hanging_worker_python_fails_the_algorithm_with_its_name(
    povmap_provider, tmp_path, monkeypatch
):
    from qgis_helpers import run_failing
    from test_build_prediction_grid import irregular_districts

    python, pid_file = hanging_python(tmp_path)
    monkeypatch.setenv(runner.PYTHON_ENV_VARIABLE, python)
    monkeypatch.setenv(runner.START_TIMEOUT_VARIABLE, "2")
    area, _ = irregular_districts(tmp_path)
    message = run_failing(
        "povmap:buildpredictiongrid", {"AREA": str(area), "OUTPUT": str(tmp_path / "o.gpkg")}
    )
    assert f"The worker Python '{python}' did not answer within 2 s" in message
    assert "Traceback" not in message and not (tmp_path / "o.gpkg").exists()
    assert_stopped(pid_file)


def test_the_start_timeout_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(runner.START_TIMEOUT_VARIABLE, raising=False)
    assert runner.start_timeout_s() == runner.DEFAULT_START_TIMEOUT_S == 60
    for text, seconds in (("5", 5.0), (" 2.5 ", 2.5), ("", 60.0)):
        monkeypatch.setenv(runner.START_TIMEOUT_VARIABLE, text)
        assert runner.start_timeout_s() == seconds
    # an odd value is said, naming the variable, not silently replaced by the default
    for text in ("abc", "-1", "0", "nan", "inf"):
        monkeypatch.setenv(runner.START_TIMEOUT_VARIABLE, text)
        with pytest.raises(runner.WorkerError) as caught:
            runner.start_timeout_s()
        assert caught.value.kind == "setup"
        assert f"{runner.START_TIMEOUT_VARIABLE}='{text}' is not a positive number" in str(
            caught.value
        )


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
    ready = events.pop(0)  # the start-up handshake comes first
    assert ready["event"] == "ready" and ready["python"] == sys.executable
    assert ready["version"] == sys.version.split()[0]
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


def test_options_a_core_step_does_not_take_are_refused_before_the_worker_starts():
    from povmap_qgis.runner import WorkerError, check_step_options

    check_step_options(
        "predict", {"model_path": "m", "chips_path": "c", "grid_path": "g", "output_path": "o"}
    )
    with pytest.raises(WorkerError, match="unknown chips_pth; missing chips_path"):
        check_step_options(
            "predict", {"model_path": "m", "chips_pth": "c", "grid_path": "g", "output_path": "o"}
        )
    check_step_options("environment", {})  # a step without an options class takes any


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_worker_whose_qgis_is_killed_stops_instead_of_running_on(tmp_path):
    """kill -9 of QGIS/qgis_process: its worker gets SIGTERM (= cancel, it cleans up) at once,
    rather than writing on unseen and keeping the output's lock."""
    import signal
    import textwrap

    from povmap_qgis.worker import PARENT_VARIABLE

    fifo = str(tmp_path / "job")
    os.mkfifo(fifo)
    job_writer = os.open(fifo, os.O_RDWR)  # the job never comes: the worker waits for it
    code = textwrap.dedent(
        f"""
        import os, subprocess, sys, time
        environment = dict(os.environ, {PARENT_VARIABLE}=str(os.getpid()))
        worker = subprocess.Popen(
            [sys.executable, "-m", "povmap_qgis.worker"], stdin=open({fifo!r}),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment,
            start_new_session=True,
        )
        print(worker.pid, flush=True)
        time.sleep(300)
        """
    )
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    parent = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=environment
    )
    try:
        worker = int(parent.stdout.readline())
        time.sleep(1.0)  # the worker is up, waiting for its job
        assert runner_process_alive(worker)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 20
        while runner_process_alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not runner_process_alive(worker), "the orphaned worker kept running"
    finally:
        os.close(job_writer)
        if parent.poll() is None:
            parent.kill()


def test_sigterms_after_the_first_do_not_interrupt_the_cancels_cleanup():
    """A killed qgis_process's threads exit one by one and the worker gets its parent-death
    SIGTERM once per thread it is passed on to: only the first may raise the cancel, or a
    second one lands in the cleanup (a thread pool half shut down: the worker never ended)."""
    import textwrap

    code = textwrap.dedent(
        """
        import os, signal, time
        import povmap_qgis.worker as worker
        from povmap_qgis.core.errors import PovmapCanceledError
        worker._cancel_on_sigterm()
        raised = cleaned = 0
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except PovmapCanceledError:
            raised += 1
            try:
                for _ in range(3):  # more parent-death signals during the cleanup
                    os.kill(os.getpid(), signal.SIGTERM)
                    time.sleep(0.05)
                cleaned = 1
            except PovmapCanceledError:
                raised += 1
        print(raised, cleaned)
        """
    )
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=60
    )
    assert completed.stdout.split() == ["1", "1"], completed.stdout + completed.stderr


def test_a_cancelled_worker_that_cannot_end_is_ended_by_its_deadline(tmp_path):
    """A cancel that leaves Python unable to end (here a library's thread that never ends,
    which the interpreter's exit waits for) must not leave the worker running, holding its
    output's lock, when nobody is left to kill it: it ends CANCEL_DEADLINE_S after its SIGTERM."""
    import signal
    import textwrap

    code = textwrap.dedent(
        """
        import sys, threading
        import povmap_qgis.worker as worker
        worker.CANCEL_DEADLINE_S = 2.0
        threading.Thread(target=threading.Event().wait, name="never-ends").start()
        sys.exit(worker.main())
        """
    )
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,  # the job never comes: the worker waits for it
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment,
        text=True,
    )
    try:
        assert json.loads(process.stdout.readline())["event"] == "ready"
        time.sleep(0.5)  # its SIGTERM handler is in place
        process.send_signal(signal.SIGTERM)
        cancelled = time.monotonic()
        try:
            _, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("the cancelled worker was still running 30 s after its SIGTERM")
        seconds = time.monotonic() - cancelled
        assert 1.5 < seconds < 15, seconds
        assert process.returncode == 1
        # what it was stuck in, for whoever reads the worker's stderr
        assert "Timeout (0:00:02)!" in stderr and "in _shutdown" in stderr, stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def runner_process_alive(pid):
    from povmap_qgis.core.run_folders import process_alive

    return process_alive(pid)
