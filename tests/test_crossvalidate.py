"""povmap:crossvalidate through Processing and the worker: district folds, the tidy CSV, out-of-fold predictions."""

import base64
import csv
import io
import json
import os
import re

import numpy as np
import pytest
from helpers import carried_styles, read_grid
from qgis_helpers import CapturingFeedback, run_algorithm, run_failing
from report_checks import chromium, outcome_colours, pixels_of
from required_tools import need_chromium

FOLDS = 3
MEMBER = "compact_cnn"
SEED = 4


@pytest.fixture(scope="module")
def night_chips(tiny_chips):
    """The labelled tiny grid (with districts) and its night-lights-only chip store; each test writes in its own folder."""
    return {
        "grid": tiny_chips["grid"],
        "chips": tiny_chips["night"],
        "folder": tiny_chips["folder"],
    }


def parameters_for(chips, name, folds=FOLDS):
    folder = chips["folder"] / name
    folder.mkdir()
    return {
        "CHIPS": chips["chips"],
        "GRID": chips["grid"],
        "PRESET": 1,
        "MEMBERS": MEMBER,
        "SEED": SEED,
        "FOLDS": folds,
        "EPOCHS": 1,
        "REPORT": str(folder / "report.html"),
        "METRICS": str(folder / "metrics.json"),
        "OUTPUT_GRID": str(folder / "folds.gpkg"),
    }


@pytest.fixture(scope="module")
def crossvalidated(night_chips, qgis_processing):
    from qgis.core import QgsApplication

    from povmap_qgis.processing.provider import PovmapProvider

    if QgsApplication.processingRegistry().providerById("povmap") is None:
        crossvalidated.provider = (
            PovmapProvider()
        )  # kept alive: the registry does not own the Python object
        QgsApplication.processingRegistry().addProvider(crossvalidated.provider)
    results, feedback = run_algorithm("povmap:crossvalidate", parameters_for(night_chips, "base"))
    with open(results["METRICS"], encoding="utf-8") as handle:
        document = json.load(
            handle, parse_constant=lambda constant: pytest.fail(f"{constant} in the metrics JSON")
        )
    with open(results["METRICS_CSV"], encoding="utf-8", newline="") as handle:
        table = list(csv.reader(handle))
    return {
        "results": results,
        "feedback": feedback,
        "document": document,
        "table": table,
        "grid": read_grid(results["OUTPUT_GRID"]),
        "labelled": read_grid(night_chips["grid"]),
    }


def test_fold_assignment_keeps_districts_whole_balanced_and_repeatable():
    from povmap_qgis.core.validation.district_folds import assign_folds

    rng = np.random.default_rng(0)
    for trial in range(200):
        count = int(rng.integers(2, 15))
        sizes = rng.integers(1, 60, count)
        districts = np.repeat([f"d{index}" for index in range(count)], sizes)
        folds = int(rng.integers(2, count + 1))
        assignment = assign_folds(districts, folds, seed=trial)
        assert set(assignment) == set(districts) and set(assignment.values()) == set(
            range(1, folds + 1)
        )
        assert assign_folds(districts, folds, seed=trial) == assignment
        cells = np.bincount([assignment[name] for name in districts], minlength=folds + 1)[1:]
        # greedy bound: the largest fold exceeds the smallest by at most the largest district
        assert cells.max() - cells.min() <= sizes.max()


@pytest.mark.slow  # trains real models
def test_every_cell_is_in_exactly_one_test_fold_and_no_district_spans_two(crossvalidated):
    grid, labelled, document = (
        crossvalidated["grid"],
        crossvalidated["labelled"],
        crossvalidated["document"],
    )
    assert sorted(grid["cell_id"]) == sorted(labelled["cell_id"])
    cells = grid[grid["fold"].notna()]
    assert grid["label"].notna().sum() == len(cells) + document["data"]["flagged_cells"]
    assert cells["label"].notna().all() and set(cells["fold"].astype(int)) == set(
        range(1, FOLDS + 1)
    )
    assert (cells.groupby("district")["fold"].nunique() == 1).all()
    assert (
        sum(record["test_cells"] for record in document["folds"])
        == len(cells)
        == document["data"]["cells"]
    )
    held_out = [name for record in document["folds"] for name in record["districts"]]
    assert sorted(held_out) == sorted(set(cells["district"]))
    for record in document["folds"]:
        assert (cells["fold"] == record["fold"]).sum() == record["test_cells"]
        assert set(cells.loc[cells["fold"] == record["fold"], "district"]) == set(
            record["districts"]
        )


@pytest.mark.slow  # trains real models
def test_csv_has_a_row_per_fold_and_model_then_median_min_and_max(crossvalidated):
    table, document = crossvalidated["table"], crossvalidated["document"]
    assert table[0] == [
        "fold",
        "districts",
        "model",
        "n",
        "recall",
        "precision",
        "accuracy",
        "auc",
    ] + [
        "coverage",
        "nominal",
        "mean_width",
    ]
    models = [MEMBER, "ensemble", "baseline", "random"]
    expected = [(str(fold), model) for fold in range(1, FOLDS + 1) for model in models]
    expected += [(statistic, model) for statistic in ("median", "min", "max") for model in models]
    # then the intervals' coverage of the pooled out-of-fold cells (one member: no spread rows
    # differ, they are there all the same)
    intervals = [row for row in table[1:] if row[0] == "pooled"]
    assert [(row[0], row[2]) for row in table[1:] if row[0] != "pooled"] == expected
    assert [row[2] for row in intervals] == [
        "prob_low–prob_high per bin",
        "prob_low–prob_high per bin, all folds' cells in one set of bins",
        "prob_low–prob_high per district",
        "members' spread per bin",
        "members' spread per district",
    ]
    coverage = document["interval_coverage"]
    assert float(intervals[0][8]) == coverage["coverage"]
    assert float(intervals[1][8]) == coverage["pooled_coverage"]
    assert float(intervals[2][8]) == coverage["districts"]["coverage"]
    assert {row[9] for row in intervals} == {repr(coverage["nominal"])}
    for row in table[1:]:
        assert len(row) == 11
        for value in row[4:]:
            assert value == "" or 0 <= float(value) <= 1
    for record in document["folds"]:
        rows = [row for row in table[1:] if row[0] == str(record["fold"])]
        assert {row[1] for row in rows} == {"; ".join(record["districts"])}
        assert {int(row[3]) for row in rows} == {record["test_cells"]}
    ensemble_aucs = [
        float(row[7]) for row in table[1 : FOLDS * 4 + 1] if row[2] == "ensemble" and row[7]
    ]
    median = next(row for row in table[1:] if row[0] == "median" and row[2] == "ensemble")
    assert float(median[7]) == pytest.approx(np.median(ensemble_aucs))
    assert crossvalidated["results"]["AUC"] == pytest.approx(np.median(ensemble_aucs))


@pytest.mark.slow  # trains real models
def test_out_of_fold_predictions_reproduce_the_fold_metrics_with_scikit_learn(crossvalidated):
    from sklearn.metrics import accuracy_score, precision_score, recall_score, roc_auc_score

    grid, table = crossvalidated["grid"], crossvalidated["table"]
    cells = grid[grid["fold"].notna()]
    assert len(cells) == crossvalidated["document"]["data"]["cells"]
    for column in (f"prob_{MEMBER}", "prob_mean", "votes", "pred"):
        assert cells[column].notna().all(), column
    assert ((cells[f"prob_{MEMBER}"] >= 0) & (cells[f"prob_{MEMBER}"] <= 1)).all()
    # the class: the mean probability calibrated in the cell's fold at the share of poor cells
    # among the fold's training cells (a stratified part of the other folds: about their share)
    # (0.5 on the members' balanced scale in a fold whose calibration could not be fitted)
    for record in crossvalidated["document"]["folds"]:
        threshold = record["decision_threshold"]
        if record["calibration"]["method"] != "platt":
            assert threshold == 0.5
            continue
        assert threshold == record["train_poor"] / record["train_cells"]
        others = cells[cells["fold"] != record["fold"]]
        assert threshold == pytest.approx(others["label"].astype(int).mean(), abs=0.01)
        group = cells[cells["fold"] == record["fold"]]
        assert (group["pred"] == (group["prob_mean"] >= threshold).astype(int)).all()
    assert (cells["votes"] == (cells[f"prob_{MEMBER}"] >= 0.5).astype(int)).all()  # information
    checked = 0
    for fold in range(1, FOLDS + 1):
        group = cells[cells["fold"] == fold]
        labels = group["label"].astype(int)
        if labels.nunique() < 2 or group["pred"].sum() == 0:
            continue  # undefined metrics are left empty; checked elsewhere
        for model, probability, predicted in (
            (MEMBER, group[f"prob_{MEMBER}"], (group[f"prob_{MEMBER}"] >= 0.5).astype(int)),
            ("ensemble", group["prob_mean"], group["pred"].astype(int)),
        ):
            row = next(row for row in table[1:] if row[0] == str(fold) and row[2] == model)
            expected = [
                recall_score(labels, predicted),
                precision_score(labels, predicted),
                accuracy_score(labels, predicted),
                roc_auc_score(labels, probability),
            ]
            assert [float(value) for value in row[4:8]] == pytest.approx(expected, abs=1e-9), (
                fold,
                model,
            )
        checked += 1
    assert checked >= 1


@pytest.mark.slow  # trains real models
def test_grid_holds_each_cells_out_of_fold_outcome_and_its_styles(crossvalidated):
    grid = crossvalidated["grid"]
    cells = grid[grid["fold"].notna()]
    label, pred = cells["label"].astype(int), cells["pred"].astype(int)
    expected = np.select(
        [(label == 1) & (pred == 1), (label == 1) & (pred == 0), (label == 0) & (pred == 1)],
        ["hit", "miss", "false_alarm"],
        "correct_rejection",
    )
    assert (cells["outcome"].to_numpy() == expected).all()
    assert grid.loc[grid["fold"].isna(), "outcome"].isna().all()
    assert crossvalidated["document"]["outcomes"] == {
        name: int((expected == name).sum()) for name in outcome_colours()
    }
    assert list(carried_styles(crossvalidated["results"]["OUTPUT_GRID"])) == [
        "povmap cross-validation (out-of-fold hits and misses)",
        "folds",
        "out-of-fold class",
        "out-of-fold probability",
    ]


def png_pixels(data):
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")).reshape(-1, 3)


@pytest.mark.slow  # trains real models
def test_report_has_fold_tables_roc_curves_confusion_matrices_and_qgis_maps(crossvalidated):
    from povmap_qgis.processing.rendering import CATEGORY_COLOURS

    with open(crossvalidated["results"]["REPORT"], encoding="utf-8") as handle:
        html = handle.read()
    for heading in ("Metrics per fold", "Across folds", "ROC curves", "Confusion matrices", "Maps"):
        assert f">{heading}" in html, heading
    for record in crossvalidated["document"]["folds"]:
        for district in record["districts"]:
            assert district in html
    assert not re.search(r'(src|href)="(https?:|file:|//)', html)  # opens offline
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    # pooled ROC, ROC per fold, reliability, confusion matrices, map of folds, hits and misses
    assert len(embedded) == 6
    fold_map, hitmiss_map = (png_pixels(data) for data in embedded[4:])
    # the fold map shows each fold in its own colour; the hit/miss map each outcome that occurs
    for colour in CATEGORY_COLOURS[:FOLDS]:
        rgb = np.array([int(colour[index : index + 2], 16) for index in (1, 3, 5)])
        assert pixels_of(fold_map, rgb, tolerance=4).sum() > 200, colour
    for outcome, colour in outcome_colours().items():
        drawn = pixels_of(hitmiss_map, colour, tolerance=4).sum()
        assert (drawn > 100) == (crossvalidated["document"]["outcomes"][outcome] > 0), outcome


@pytest.mark.slow  # trains real models
def test_report_renders_in_headless_chromium(crossvalidated, tmp_path):
    need_chromium()
    dom = chromium(
        "--dump-dom", "file://" + crossvalidated["results"]["REPORT"], profile=tmp_path / "profile"
    )
    assert len(re.findall(r'<img [^>]*data-natural-size="[1-9]\d*x[1-9]\d*"', dom)) == 6
    assert "broken" not in re.findall(r'<img [^>]*class="([^"]*)"', dom)
    assert len(re.findall(r"<table>", dom)) >= 5


@pytest.mark.slow  # trains real models
def test_cancel_within_a_fold_stops_and_writes_nothing(night_chips, crossvalidated):
    from qgis.core import QgsProcessingException

    parameters = parameters_for(night_chips, "cancelled")
    parameters["EPOCHS"] = 10
    feedback = CapturingFeedback(cancel_at_progress=36)  # early in fold 2 of 3 (it spans 34–64 %)
    with pytest.raises(QgsProcessingException, match="Cancelled"):
        run_algorithm("povmap:crossvalidate", parameters, feedback)
    assert any(
        info.startswith("fold 1 (") for info in feedback.infos
    )  # fold 1 finished, fold 2 was under way
    assert not any(info.startswith("fold 2 (") for info in feedback.infos)
    assert os.listdir(night_chips["folder"] / "cancelled") == []


@pytest.mark.slow  # trains real models
def test_fewer_districts_than_folds_is_a_clear_error_naming_folds(night_chips, crossvalidated):
    message = run_failing(
        "povmap:crossvalidate", parameters_for(night_chips, "too_many_folds", folds=40)
    )
    assert "FOLDS" in message and "40 folds" in message and "district" in message


def test_an_unknown_balance_is_refused_naming_balance_before_any_work(tmp_path):
    """Cross-validation refuses a class balance train would refuse, with train's message."""
    from povmap_qgis.core.errors import PovmapInputError
    from povmap_qgis.core.validation.crossvalidation import CrossValidateOptions, crossvalidate

    options = CrossValidateOptions(
        chips_path=str(tmp_path / "missing.chips"),
        grid_path=str(tmp_path / "missing.gpkg"),
        metrics_path=str(tmp_path / "metrics.json"),
        output_grid_path=str(tmp_path / "folds.gpkg"),
        balance="oversample",
    )
    with pytest.raises(PovmapInputError) as caught:
        crossvalidate(options)
    assert caught.value.parameter == "BALANCE"
    assert str(caught.value) == (
        "BALANCE: unknown balance 'oversample' (undersample or class_weights)."
    )
    assert os.listdir(tmp_path) == []
