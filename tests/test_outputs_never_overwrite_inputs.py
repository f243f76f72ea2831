"""An output that is an input is refused before any work, in every algorithm (issue 14, item 1).

Each case runs the real algorithm through Processing on copies of the tiny
sample and checks: the message names the output and the input (label and id),
every input's bytes are unchanged, and nothing was written.
"""

import hashlib
import os
import shutil

import pytest
from qgis_helpers import run_failing

from povmap_qgis.core.atomic import overwritten_input


def _sha256(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def _tree(folder):
    """Every path under ``folder`` with its size and content hash (files) — what "nothing written" means."""
    found = {}
    for root, folders, files in os.walk(folder):
        for name in folders:
            found[os.path.relpath(os.path.join(root, name), folder)] = "folder"
        for name in files:
            path = os.path.join(root, name)
            found[os.path.relpath(path, folder)] = "link" if os.path.islink(path) else _sha256(path)
    return found


@pytest.fixture()
def files(tiny_sample, tmp_path):
    """Copies of the sample's layers (the cached sample itself must never be at risk)."""
    for name in ("synthetic_survey.gpkg", "synthetic_districts.gpkg"):
        shutil.copy(os.path.join(tiny_sample, name), tmp_path / name)
    shutil.copy(tmp_path / "synthetic_districts.gpkg", tmp_path / "grid.gpkg")
    (tmp_path / "empty.chips").mkdir()
    (tmp_path / "old.povmodel").mkdir()
    shutil.copy(tmp_path / "synthetic_districts.gpkg", tmp_path / "old.povmodel" / "grid.gpkg")
    (tmp_path / "truth.csv").write_text("cell_id,label\n1,0\n2,1\n", encoding="utf-8")
    os.symlink(tmp_path / "synthetic_survey.gpkg", tmp_path / "link_to_survey.gpkg")
    (tmp_path / "sub").mkdir()
    return tmp_path


def _training_grid(f):
    return {
        "INPUT": str(f / "synthetic_survey.gpkg"),
        "SCORE_FIELD": "score",
        "DISTRICTS": str(f / "synthetic_districts.gpkg"),
        "DISTRICT_FIELD": "name",
    }


# (algorithm, parameters from the copies' folder f and the sample s, output label, input label,
#  the input file at risk)
CASES = {
    "training grid over the survey": (
        "povmap:buildtraininggrid",
        lambda f, s: {**_training_grid(f), "OUTPUT": str(f / "synthetic_survey.gpkg")},
        "Labelled grid (OUTPUT)",
        "Household survey points (INPUT)",
        "synthetic_survey.gpkg",
    ),
    "training grid over the districts": (
        "povmap:buildtraininggrid",
        lambda f, s: {**_training_grid(f), "OUTPUT": str(f / "synthetic_districts.gpkg")},
        "Labelled grid (OUTPUT)",
        "Districts (DISTRICTS)",
        "synthetic_districts.gpkg",
    ),
    "training grid through a symlink to the survey": (
        "povmap:buildtraininggrid",
        lambda f, s: {**_training_grid(f), "OUTPUT": str(f / "link_to_survey.gpkg")},
        "Labelled grid (OUTPUT)",
        "Household survey points (INPUT)",
        "synthetic_survey.gpkg",
    ),
    "training grid through a relative path to the survey": (
        "povmap:buildtraininggrid",
        lambda f, s: {
            **_training_grid(f),
            "OUTPUT": os.path.join("sub", "..", "synthetic_survey.gpkg"),
        },
        "Labelled grid (OUTPUT)",
        "Household survey points (INPUT)",
        "synthetic_survey.gpkg",
    ),
    "prediction grid over the area": (
        "povmap:buildpredictiongrid",
        lambda f, s: {
            "AREA": str(f / "synthetic_districts.gpkg"),
            "OUTPUT": str(f / "synthetic_districts.gpkg"),
        },
        "Prediction grid (OUTPUT)",
        "Districts or area to map (AREA)",
        "synthetic_districts.gpkg",
    ),
    "nodata grid over the grid": (
        "povmap:samplechips",
        lambda f, s: {
            "GRID": str(f / "grid.gpkg"),
            "NIGHTLIGHTS": os.path.join(s, "synthetic_viirs_15arcsec.tif"),
            "OUTPUT": str(f / "new.chips"),
            "NODATA_GRID": str(f / "grid.gpkg"),
        },
        "Grid with nodata fractions (NODATA_GRID)",
        "Grid (GRID)",
        "grid.gpkg",
    ),
    "predictions over the grid": (
        "povmap:predict",
        lambda f, s: {
            "CHIPS": str(f / "empty.chips"),
            "GRID": str(f / "grid.gpkg"),
            "OUTPUT": str(f / "grid.gpkg"),
        },
        "Predictions (OUTPUT)",
        "Grid (GRID)",
        "grid.gpkg",
    ),
    "cross-validated grid over the grid": (
        "povmap:crossvalidate",
        lambda f, s: {
            "CHIPS": str(f / "empty.chips"),
            "GRID": str(f / "grid.gpkg"),
            "REPORT": str(f / "cv.html"),
            "METRICS": str(f / "cv.json"),
            "OUTPUT_GRID": str(f / "grid.gpkg"),
        },
        "Grid with folds and out-of-fold predictions (OUTPUT_GRID)",
        "Labelled grid (with district) (GRID)",
        "grid.gpkg",
    ),
    "metrics CSV written beside METRICS over the truth CSV": (
        "povmap:evaluate",
        lambda f, s: {
            "PREDICTIONS": str(f / "grid.gpkg"),
            "TRUTH": str(f / "truth.csv"),
            "HITMISS": str(f / "hitmiss.gpkg"),
            "REPORT": str(f / "report.html"),
            "METRICS": str(f / "truth.json"),
        },
        "Metrics (JSON) (METRICS)",
        "Ground truth (labelled grid) (TRUTH)",
        "truth.csv",
    ),
    "model package folder holding the grid": (
        "povmap:train",
        lambda f, s: {
            "CHIPS": str(f / "empty.chips"),
            "GRID": str(f / "old.povmodel" / "grid.gpkg"),
            "OUTPUT": str(f / "old.povmodel"),
        },
        "Model package (.povmodel folder) (OUTPUT)",
        "Labelled grid (GRID)",
        os.path.join("old.povmodel", "grid.gpkg"),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_an_output_that_is_an_input_is_refused_before_any_work(
    case, povmap_provider, files, tiny_sample, monkeypatch
):
    monkeypatch.chdir(files)
    algorithm, parameters, output_label, input_label, input_file = CASES[case]
    before = _tree(files)
    digest = _sha256(files / input_file)

    message = run_failing(algorithm, parameters(files, tiny_sample))

    assert output_label in message and input_label in message, message
    assert "Choose another name" in message and "Nothing was written" in message, message
    assert _sha256(files / input_file) == digest
    assert _tree(files) == before


def test_the_rule_resolves_links_relative_parts_and_folders(tmp_path, monkeypatch):
    survey = tmp_path / "survey.gpkg"
    survey.write_bytes(b"households")
    os.symlink(survey, tmp_path / "link.gpkg")
    os.link(survey, tmp_path / "hard.gpkg")
    (tmp_path / "model.povmodel").mkdir()
    monkeypatch.chdir(tmp_path)
    inside = str(tmp_path / "model.povmodel" / "grid.gpkg")

    assert overwritten_input(["link.gpkg"], [str(survey)]) == ("link.gpkg", str(survey))
    assert overwritten_input(["./x/../survey.gpkg"], [str(survey)])
    assert overwritten_input([str(tmp_path / "hard.gpkg")], [str(survey)])
    assert overwritten_input([str(tmp_path / "model.povmodel")], [inside])
    assert overwritten_input(["new.gpkg", "survey.csv"], [str(survey)]) is None
    assert (
        overwritten_input([str(tmp_path / "model")], [inside]) is None
    )  # a prefix is not a parent
    assert overwritten_input([None, ""], [str(survey)]) is None
