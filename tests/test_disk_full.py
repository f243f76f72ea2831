"""A full disk is a message, not a traceback, and leaves nothing published (issue 24 item 4).

No mocks: the worker runs under a real file-size limit (``ulimit -f``, RLIMIT_FSIZE), so
its writes fail with the operating system's own EFBIG ("File too large") as they would on a
full disk (ENOSPC takes the same path: core/errors.write_failure); for a report written in
QGIS itself the limit is set on the test process for the call. Each algorithm must name its
output parameter, print no traceback and leave its output folder empty.
"""

import os
import resource
import shutil
import stat
import sys

import pytest
from qgis_helpers import run_algorithm, run_failing

from povmap_qgis.paths import bundled_model_path

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")

LIMIT_KB = 24  # smaller than any GeoPackage, weights file or chip store array written here


@pytest.fixture()
def limited_worker(tmp_path, monkeypatch):
    """The worker Python started under ``ulimit -f`` (the runner accepts any executable)."""
    wrapper = tmp_path / "limited-python"
    wrapper.write_text(f'#!/bin/bash\nulimit -f {LIMIT_KB}\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("POVMAP_PYTHON", str(wrapper))
    return wrapper


def cases(tiny_chips, tiny_sample, tiny_predictions):
    survey = os.path.join(tiny_sample, "synthetic_survey.gpkg")
    population = os.path.join(tiny_sample, "synthetic_population_3arcsec.tif")
    return {
        "buildtraininggrid": (
            "OUTPUT",
            {"INPUT": survey, "SCORE_FIELD": "score", "OUTPUT": "{out}/grid.gpkg"},
        ),
        "samplechips": (
            "OUTPUT",
            {
                "GRID": tiny_chips["grid"],
                "NIGHTLIGHTS": os.path.join(tiny_sample, "synthetic_viirs_15arcsec.tif"),
                "OUTPUT": "{out}/night.chips",
            },
        ),
        "train": (
            "OUTPUT",
            {
                "GRID": tiny_chips["grid"],
                "CHIPS": tiny_chips["night"],
                "PRESET": "compact",
                "MEMBERS": "compact_cnn",
                "EPOCHS": 1,
                "OUTPUT": "{out}/model.povmodel",
            },
        ),
        "predict": (
            "OUTPUT",
            {
                "GRID": tiny_chips["grid"],
                "CHIPS": tiny_chips["chips"],
                "MODEL": bundled_model_path(),
                "OUTPUT": "{out}/predictions.gpkg",
            },
        ),
        "evaluate": (
            "HITMISS",
            {
                "PREDICTIONS": tiny_predictions,
                "TRUTH": tiny_chips["grid"],
                "HITMISS": "{out}/hitmiss.gpkg",
                "METRICS": "{out}/metrics.json",
                "REPORT": "{out}/report.html",
            },
        ),
        "target": (
            "OUTPUT",
            {
                "PREDICTIONS": tiny_predictions,
                "POPULATION": population,
                "BUDGET_UNIT": "share_of_people",
                "BUDGET": 0.3,
                "OUTPUT": "{out}/target.gpkg",
                "ALLOCATION": "{out}/allocation.csv",
                "REPORT": "{out}/target.html",
            },
        ),
    }


@pytest.mark.parametrize(
    "algorithm",
    ["buildtraininggrid", "samplechips", "train", "predict", "evaluate", "target"],
)
def test_a_full_disk_names_the_output_and_publishes_nothing(
    povmap_provider, limited_worker, tiny_chips, tiny_sample, tiny_predictions, tmp_path, algorithm
):
    parameter, template = cases(tiny_chips, tiny_sample, tiny_predictions)[algorithm]
    output = tmp_path / "output"
    output.mkdir()
    parameters = {
        key: value.format(out=output) if isinstance(value, str) else value
        for key, value in template.items()
    }
    message = run_failing(f"povmap:{algorithm}", parameters)
    print(f"\n[{algorithm}] {message}")
    assert f" — {parameter}: " in message, message
    assert "File too large" in message and "nothing was published" in message, message
    assert "Traceback" not in message, message
    assert sorted(os.listdir(output)) == [], os.listdir(output)


def test_evaluate_whose_report_cannot_be_written_unpublishes_its_layer_and_metrics(
    povmap_provider, tiny_chips, tiny_predictions, tmp_path
):
    """The report is written in QGIS after the worker published the hit/miss layer and the
    metrics: when it fails they are removed, not left published beside a missing report."""
    output = tmp_path / "output"
    output.mkdir()
    parameters = {
        "PREDICTIONS": tiny_predictions,
        "TRUTH": tiny_chips["grid"],
        "HITMISS": str(output / "hitmiss.gpkg"),
        "METRICS": str(output / "metrics.json"),
        "REPORT": str(output / "report.html"),
    }
    reference = tmp_path / "reference"
    reference.mkdir()
    sizes = {}
    run_algorithm(
        "povmap:evaluate",
        {key: str(value).replace(str(output), str(reference)) for key, value in parameters.items()},
    )
    for name in os.listdir(reference):
        sizes[name] = os.path.getsize(reference / name)
    largest_other = max(size for name, size in sizes.items() if name != "report.html")
    assert sizes["report.html"] > largest_other + 4096, sizes  # a limit between them exists
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (largest_other + 4096, hard))
    try:
        message = run_failing("povmap:evaluate", parameters)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert " — REPORT: " in message and "File too large" in message, message
    assert "Traceback" not in message
    assert sorted(os.listdir(output)) == [], os.listdir(output)
    shutil.rmtree(reference)
