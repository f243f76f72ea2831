"""Runs clean up what they made, and only that (issue 14, items 3 and 4).

A failing run removes its own unfinished outputs, never a concurrent run's; a
layer copied for the worker (households) lives in a private run folder that
is removed when the run ends, or — when the run was killed — by the next
algorithm run or plugin load.
"""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import ROOT
from helpers import write_points
from qgis.core import QgsProcessingFeatureSourceDefinition, QgsProject, QgsVectorLayer
from qgis_helpers import CapturingFeedback, run_algorithm, run_failing

from povmap_qgis.core.atomic import RUN_ID_VARIABLE, atomic_output, run_partials
from povmap_qgis.core.run_folders import exports_root, make_run_folder

UTM = "EPSG:32642"


def test_unfinished_files_are_named_for_the_run_that_owns_them(tmp_path, monkeypatch):
    output = str(tmp_path / "grid.gpkg")
    other_run = tmp_path / ".grid.partial-222-bbbbbbbb-123456.gpkg"
    other_run.write_text("another run's cells")
    monkeypatch.setenv(RUN_ID_VARIABLE, "111-aaaaaaaa")
    with atomic_output(output) as mine:
        open(mine, "w").close()
        open(mine + "-journal", "w").close()
        assert run_partials(output, "111-aaaaaaaa") == [mine, mine + "-journal"]
        assert run_partials(output, "222-bbbbbbbb") == [str(other_run)]
        assert run_partials(output, "111-aaaaaaa") == []  # not a prefix match
        os.remove(mine + "-journal")
    assert sorted(os.listdir(tmp_path)) == sorted([other_run.name, "grid.gpkg"])


def test_a_failing_run_leaves_a_concurrent_runs_partial_output_alone(povmap_provider, tmp_path):
    points = write_points(
        tmp_path / "p.gpkg", [600100.0, 600200], [2800100.0] * 2, UTM, score=[5, 6]
    )
    output = tmp_path / "grid.gpkg"
    # What a concurrent, live run writing the same output has on disk at this moment (a run
    # outside the adapter's lock, e.g. the command line; its process is alive: this one).
    other_file = tmp_path / f".grid.partial-{os.getpid()}-0123abcd-5e6f7a.gpkg"
    other_file.write_bytes(b"half of another run's grid")
    (tmp_path / (other_file.name + "-journal")).write_bytes(b"")
    other_folder = tmp_path / f".grid.partial-{os.getpid()}-89abcdef-0a1b2c.gpkg"
    other_folder.mkdir()

    message = run_failing(
        "povmap:buildtraininggrid",
        {"INPUT": str(points), "SCORE_FIELD": "score", "MIN_OBS": 5, "OUTPUT": str(output)},
    )

    assert "MIN_OBS" in message  # the worker failed, so the adapter cleaned up after it
    assert other_file.read_bytes() == b"half of another run's grid"
    assert (tmp_path / (other_file.name + "-journal")).exists() and other_folder.is_dir()
    assert not output.exists()


def _survey(tmp_path):
    """Six households in two cells: scores 5, 6, 7 (poor) and 40, 50, 60."""
    x = [600100.0, 600200, 600300, 601100, 601200, 601300]
    return write_points(
        tmp_path / "survey.gpkg", x, [2800100.0] * 6, UTM, score=[5, 6, 7, 40, 50, 60]
    )


def _run_folders():
    root = exports_root()
    return sorted(os.listdir(root)) if os.path.isdir(root) else []


class _DebugFeedback(CapturingFeedback):
    def __init__(self):
        super().__init__()
        self.debug = []

    def pushDebugInfo(self, info):  # noqa: N802 (QGIS API)
        self.debug.append(info)


def _dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_selection_is_copied_privately_and_nothing_is_left_after_the_run(
    povmap_provider, tmp_path
):
    layer = QgsVectorLayer(str(_survey(tmp_path)), "survey", "ogr")
    QgsProject.instance().addMapLayer(layer)
    layer.selectByExpression('"score" >= 40')
    before = _run_folders()

    feedback = _DebugFeedback()
    try:
        results, _ = run_algorithm(
            "povmap:buildtraininggrid",
            {
                "INPUT": QgsProcessingFeatureSourceDefinition(layer.id(), True),
                "SCORE_FIELD": "score",
                "OUTPUT": str(tmp_path / "grid.gpkg"),
            },
            feedback,
        )
    finally:
        QgsProject.instance().removeMapLayer(layer.id())

    copied = [line for line in feedback.debug if line.startswith("INPUT: copied to ")]
    assert len(copied) == 1 and f"{exports_root()}{os.sep}run-{os.getpid()}-" in copied[0]

    assert results["CELLS_KEPT"] == 1  # only the selected households were read
    assert _run_folders() == before
    assert sorted(os.listdir(tmp_path)) == ["grid.gpkg", "grid.qml", "survey.gpkg"]


def test_a_killed_runs_household_copy_is_removed_at_the_next_plugin_load(povmap_provider, tmp_path):
    """qgis_process is killed while the worker has not finished: its copy of the filtered survey stays
    on disk until the provider loads again (plugin start, or any qgis_process run)."""
    survey = _survey(tmp_path)
    started = tmp_path / "worker.pid"
    slow_python = tmp_path / "slow_python"
    slow_python.write_text(
        f'#!/bin/sh\necho $$ > {started}\nsleep 60\nexec {sys.executable} "$@"\n'
    )
    slow_python.chmod(0o755)
    environment = dict(os.environ, POVMAP_PYTHON=str(slow_python))
    environment.pop("QGIS_CUSTOM_CONFIG_PATH", None)
    if os.environ.get("POVMAP_QGIS_CONFIG_ROOT"):
        environment["QGIS_CUSTOM_CONFIG_PATH"] = os.environ["POVMAP_QGIS_CONFIG_ROOT"]
    qgis_process = subprocess.Popen(
        [
            os.path.join(ROOT, "scripts", "qgis-process"),
            "run",
            "povmap:buildtraininggrid",
            "--",
            f'INPUT={survey}|layername=survey|subset="score" < 30',
            "SCORE_FIELD=score",
            f"OUTPUT={tmp_path / 'grid.gpkg'}",
        ],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists(), "the worker never started"
        qgis_process.send_signal(signal.SIGKILL)
        qgis_process.wait()
    finally:
        if qgis_process.poll() is None:
            qgis_process.kill()
        if started.exists() and started.read_text().strip():
            try:
                os.kill(int(started.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass
    left = [name for name in _run_folders() if name.startswith(f"run-{qgis_process.pid}-")]
    assert len(left) == 1, _run_folders()
    assert os.listdir(os.path.join(exports_root(), left[0])) == ["input.gpkg"]

    povmap_provider.load()

    assert not os.path.exists(os.path.join(exports_root(), left[0]))
    assert not (tmp_path / "grid.gpkg").exists()


def test_the_next_algorithm_run_removes_dead_runs_copies_and_keeps_live_ones(
    povmap_provider, tmp_path
):
    root = exports_root()
    make_run_folder()  # makes the root as the plugin does
    now = int(time.time())
    dead = os.path.join(root, f"run-{_dead_pid()}-{now}-0badc0de")
    reused = os.path.join(
        root, f"run-{os.getpid()}-1-0badf00d"
    )  # a pid now held by a later process
    live = os.path.join(root, f"run-{os.getpid()}-{now}-c0ffee00")
    for folder in (dead, reused, live):
        os.mkdir(folder)
        with open(os.path.join(folder, "input.gpkg"), "wb") as handle:
            handle.write(b"households")

    try:
        results, _ = run_algorithm(
            "povmap:buildtraininggrid",
            {
                "INPUT": str(_survey(tmp_path)),
                "SCORE_FIELD": "score",
                "OUTPUT": str(tmp_path / "g.gpkg"),
            },
        )
        assert results["CELLS_KEPT"] == 2
        assert not os.path.exists(dead) and not os.path.exists(reused)
        assert os.path.isfile(os.path.join(live, "input.gpkg"))
    finally:
        shutil.rmtree(live, ignore_errors=True)


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX ownership")
def test_the_run_folders_parent_is_private(tmp_path):
    folder = make_run_folder()
    try:
        assert os.stat(os.path.dirname(folder)).st_mode & 0o077 == 0
        assert os.stat(os.path.dirname(folder)).st_uid == os.getuid()
    finally:
        os.rmdir(folder)


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX ownership")
def test_a_planted_exports_folder_is_refused_not_used(povmap_provider, tmp_path, monkeypatch):
    """Someone else's (or a linked) povmap-exports folder in a shared temp folder is never written to."""
    import tempfile

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    os.symlink(elsewhere, exports_root())
    layer = QgsVectorLayer(str(_survey(tmp_path)), "survey", "ogr")
    layer.setSubsetString('"score" < 30')

    message = run_failing(
        "povmap:buildtraininggrid",
        {"INPUT": layer, "SCORE_FIELD": "score", "OUTPUT": str(tmp_path / "grid.gpkg")},
    )

    assert "INPUT" in message and "no private temporary folder" in message, message
    assert os.listdir(elsewhere) == []


def test_publishing_over_an_existing_file_or_folder_leaves_no_old_copy(tmp_path):
    """A file or an older store at the output name is replaced, not kept as NAME.old-PID."""
    from povmap_qgis.core.atomic import partial_path, publish_folder

    (tmp_path / "a.chips").write_text("a file where the store goes")
    (tmp_path / "b.povmodel").mkdir()
    (tmp_path / "b.povmodel" / "manifest.json").write_text("{}")
    for name in ("a.chips", "b.povmodel"):
        partial = partial_path(str(tmp_path / name))
        os.makedirs(partial)
        with open(os.path.join(partial, "new"), "w") as handle:
            handle.write("new")
        publish_folder(partial, str(tmp_path / name))
        assert os.listdir(tmp_path / name) == ["new"]
    assert sorted(os.listdir(tmp_path)) == ["a.chips", "b.povmodel"]


def test_a_chip_store_replaces_a_file_of_its_name_without_leftovers(tmp_path):
    import numpy as np
    from test_chip_store import fake_chips, writer

    (tmp_path / "g.chips").write_text("not a store")
    store = writer(tmp_path / "g.chips", np.arange(3))
    store.write(np.arange(3), *fake_chips(np.arange(3)))
    store.finish()
    assert sorted(os.listdir(tmp_path)) == ["g.chips"]


def _writer_killed_or_alive(output, tmp_path, name, folder=False):
    """A real writer (core.atomic.atomic_output) in its own process, halfway through ``output``.

    Returns (process, partial path) once the partial exists; the caller kills it or lets it live.
    """
    ready = tmp_path / f"{name}.ready"
    make = "os.mkdir(partial)" if folder else 'open(partial, "w").write("half")'
    code = textwrap.dedent(
        f"""
        import os, time
        from povmap_qgis.core.atomic import atomic_output
        with atomic_output({str(output)!r}) as partial:
            {make}
            open({str(ready)!r} + ".tmp", "w").write(partial)
            os.replace({str(ready)!r} + ".tmp", {str(ready)!r})
            time.sleep(300)
        """
    )
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    environment.pop(RUN_ID_VARIABLE, None)
    process = subprocess.Popen([sys.executable, "-c", code], env=environment)
    deadline = time.monotonic() + 60
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ready.exists(), "the writer never started"
    return process, ready.read_text()


def test_partials_of_a_killed_run_are_removed_by_the_next_run_for_that_output(
    povmap_provider, tmp_path
):
    output = tmp_path / "grid.gpkg"
    killed, killed_partial = _writer_killed_or_alive(output, tmp_path, "killed")
    open(killed_partial + "-journal", "w").close()  # SQLite's side file, as a killed GDAL leaves
    live, live_partial = _writer_killed_or_alive(output, tmp_path, "live")
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        assert os.path.exists(killed_partial)
        results, _ = run_algorithm(
            "povmap:buildtraininggrid",
            {"INPUT": str(_survey(tmp_path)), "SCORE_FIELD": "score", "OUTPUT": str(output)},
        )
        assert results["CELLS_KEPT"] == 2
        assert not os.path.exists(killed_partial)
        assert not os.path.exists(killed_partial + "-journal")
        assert open(live_partial).read() == "half"  # a live run's file is never removed
    finally:
        live.kill()
        live.wait()


def test_a_killed_training_runs_partial_package_is_removed_when_train_starts_again(
    povmap_provider, tiny_chips, tmp_path
):
    """Also when the new run then stops on a parameter: the lock is taken before any work."""
    output = tmp_path / "model.povmodel"
    killed, partial = _writer_killed_or_alive(output, tmp_path, "train", folder=True)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert os.path.isdir(partial) and os.path.basename(partial).startswith(".model.partial-")
    message = run_failing(
        "povmap:train",
        {
            "CHIPS": tiny_chips["night"],
            "GRID": tiny_chips["grid"],
            "SPLIT": 1,  # leave districts out, without TEST_DISTRICTS
            "OUTPUT": str(output),
        },
    )
    assert "TEST_DISTRICTS" in message
    assert not os.path.exists(partial) and sorted(os.listdir(tmp_path)) == ["train.ready"]


def test_a_second_run_aimed_at_the_same_output_is_refused_naming_it(povmap_provider, tmp_path):
    """Two runs writing one output: the second is refused at once (before: both ran, the last
    rename won). Here the first is a real qgis_process run, held in its worker's start."""
    survey = _survey(tmp_path)
    output = tmp_path / "grid.gpkg"
    started = tmp_path / "worker.pid"
    slow_python = tmp_path / "slow_python"
    slow_python.write_text(f'#!/bin/sh\necho $$ > {started}\nsleep 8\nexec {sys.executable} "$@"\n')
    slow_python.chmod(0o755)
    environment = dict(os.environ, POVMAP_PYTHON=str(slow_python))
    environment.pop("QGIS_CUSTOM_CONFIG_PATH", None)
    if os.environ.get("POVMAP_QGIS_CONFIG_ROOT"):
        environment["QGIS_CUSTOM_CONFIG_PATH"] = os.environ["POVMAP_QGIS_CONFIG_ROOT"]
    first = subprocess.Popen(
        [
            os.path.join(ROOT, "scripts", "qgis-process"),
            "run",
            "povmap:buildtraininggrid",
            "--",
            f"INPUT={survey}",
            "SCORE_FIELD=score",
            f"OUTPUT={output}",
        ],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists(), "the first run's worker never started"
        message = run_failing(
            "povmap:buildtraininggrid",
            {"INPUT": str(survey), "SCORE_FIELD": "score", "MIN_OBS": 3, "OUTPUT": str(output)},
        )
        assert "Labelled grid — OUTPUT: another run" in message
        assert str(output) in message and ".grid.gpkg.lock" in message
        assert not output.exists()  # the refused run wrote nothing
        printed, _ = first.communicate(timeout=180)
        assert first.returncode == 0, printed
    finally:
        if first.poll() is None:
            first.kill()
    assert output.exists()
    assert not os.path.exists(tmp_path / ".grid.gpkg.lock")


def test_a_child_algorithm_shares_its_parents_lock_and_other_threads_are_refused(tmp_path):
    import threading

    from povmap_qgis.core.errors import PovmapInputError
    from povmap_qgis.processing import outputs

    path = str(tmp_path / "p.gpkg")
    parent = outputs.acquire_output_lock(path, "OUTPUT")
    child = outputs.acquire_output_lock(path, "OUTPUT")  # same thread
    assert child is parent
    refused = []

    def other_run():
        try:
            outputs.acquire_output_lock(path, "OUTPUT")
        except PovmapInputError as error:
            refused.append(str(error))

    thread = threading.Thread(target=other_run)
    thread.start()
    thread.join()
    assert refused and "OUTPUT: another run" in refused[0]
    outputs.release_output_lock(child)
    assert os.path.exists(parent.lock)  # the parent still holds it
    outputs.release_output_lock(parent)
    assert not os.path.exists(parent.lock)
