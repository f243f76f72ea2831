"""The test session ends through pytest, not os._exit: the layers a test made itself are
deleted while QGIS still runs (tests/conftest.py), which is what keeps the interpreter's
teardown from crashing after QGIS has exited."""

import os
import subprocess
import sys

from conftest import BUILD_DIR


def _session(mode, tiny_sample, folder):
    return subprocess.run(
        [
            sys.executable,
            os.path.join(os.path.dirname(__file__), "exit_check.py"),
            BUILD_DIR,
            os.path.join(tiny_sample, "synthetic_survey.gpkg"),
            os.path.join(tiny_sample, "synthetic_viirs_15arcsec.tif"),
            str(folder),
            mode,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, QT_QPA_PLATFORM="offscreen"),
    )


def test_layers_kept_alive_by_a_failed_run_are_released_and_python_exits_cleanly(
    tiny_sample, tmp_path
):
    released = _session("release", tiny_sample, tmp_path)
    said = released.stdout + released.stderr
    assert "alive 6" in released.stdout and "released 6" in released.stdout, said
    assert released.returncode == 0 and released.stdout.rstrip().endswith("exited"), said
    # the same session without the release: the layers outlive QGIS and crash the teardown
    kept = _session("keep", tiny_sample, tmp_path)
    assert "alive 6" in kept.stdout and "exited" in kept.stdout
    assert kept.returncode != 0, kept.stdout + kept.stderr
    # how the control dies depends on the heap: a segfault, or glibc aborting on the corruption
    assert "Segmentation fault" in kept.stderr or "Fatal Python error: Aborted" in kept.stderr, (
        kept.stderr[-2000:]
    )
