"""The real QGIS desktop, driven through povmap's dialogs under a virtual display (Xvfb).

One QGIS session (tests/desktop/drive_qgis.py) opens the tiny sample project, opens every
povmap dialog, and runs training grid → prediction grid (the unsurveyed district) →
chips → predict (bundled model) → ground-truth grid → evaluate through the dialogs, then
predict and evaluate again with a package that learned the survey's cells, target, and
opens the bundled survey_pipeline.model3 in the Graphical Modeler. The
tests check what an analyst sees: each loaded output has povmap's categorized or
graduated renderer with its classes and legend, the extra styles are in the layer's
style list, the map canvas shows the style's colours in the proportions of the data
(screenshot pixels), and no Python error or pop-up appeared.

Needs the ``qgis`` binary and ``xvfb-run`` (Debian ``xvfb``, ``xauth``; scripts/setup).
QGIS is killed (its whole process group) after QGIS_TIMEOUT_S, so a hang fails the test.
What QGIS showed (screenshots, report.json, qgis.log) is copied to build/desktop-test/.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import time
from xml.etree import ElementTree

import numpy as np
import pyogrio
import pytest
from conftest import INSTALLED_PLUGIN, ROOT
from qgis.PyQt.QtGui import QImage
from report_checks import pixels_of
from required_tools import missing, xvfb_run

pytestmark = pytest.mark.slow

DRIVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "desktop", "drive_qgis.py")
QGIS_TIMEOUT_S = 380  # the driver gives up after DRIVER_BUDGET_S and writes what it saw
DRIVER_BUDGET_S = 320
SCREEN = "1600x1000x24"
ARTIFACTS = os.path.join(ROOT, "build", "desktop-test")

PROFILE_SETTINGS = """[PythonPlugins]
povmap_qgis=true
processing=true

[qgis]
checkVersion=false
allowVersionCheck=false

[app]
plugin_installer\\checkOnStart=false

[core]
NewsFeed\\httpsfeedqgisorg\\disabled=true

[locale]
overrideFlag=true
userLocale=en_US
"""


def _missing_tools():
    return [tool for tool in ("qgis", "xvfb-run", "xauth") if shutil.which(tool) is None]


@pytest.fixture(scope="module")
def desktop(tiny_sample, tmp_path_factory):
    """Run the driver in a real QGIS desktop once; its report and screenshot folder."""
    tools = _missing_tools()
    if tools:
        missing(f"the desktop test needs {', '.join(tools)} (scripts/setup installs them)")
    root = tmp_path_factory.mktemp("desktop")
    out = root / "out"
    out.mkdir()
    # A fresh profile holding a copy of the installed plugin, enabled (never the user's own).
    config = root / "qgis-config"  # --profiles-path: QGIS adds profiles/<name>
    profile = config / "profiles" / "default"
    shutil.copytree(
        INSTALLED_PLUGIN,
        profile / "python" / "plugins" / "povmap_qgis",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    (profile / "QGIS").mkdir(parents=True)
    (profile / "QGIS" / "QGIS3.ini").write_text(PROFILE_SETTINGS, encoding="utf-8")
    environment = dict(os.environ)
    environment.pop("QT_QPA_PLATFORM", None)  # the desktop crashes offscreen: it gets Xvfb
    for name in ("QGIS_CUSTOM_CONFIG_PATH", "QGIS_OPTIONS_PATH"):  # pytest-qgis's scratch settings
        environment.pop(name, None)
    environment.update(
        POVMAP_DESKTOP_OUT=str(out),
        POVMAP_DESKTOP_SAMPLE=tiny_sample,
        POVMAP_DESKTOP_BUDGET_S=str(DRIVER_BUDGET_S),
        POVMAP_TRACKING="off",
    )
    command = [
        *xvfb_run(SCREEN),
        "qgis",
        "--nologo",
        "--noversioncheck",
        "--profiles-path",
        str(config),
        "--code",
        DRIVER,
    ]
    started = time.monotonic()
    with open(root / "qgis.log", "wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=environment, start_new_session=True
        )
        try:
            returncode = process.wait(timeout=QGIS_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            returncode = "killed"
    seconds = time.monotonic() - started
    # Keep what QGIS showed where a person (or CI, as an artifact) can look at it afterwards.
    try:
        shutil.rmtree(ARTIFACTS, ignore_errors=True)
        shutil.copytree(out, ARTIFACTS, ignore=shutil.ignore_patterns("*.chips"))
        shutil.copy(root / "qgis.log", ARTIFACTS)
    except OSError as error:  # another session copying at the same moment: keep going
        print(f"screenshots not copied to {ARTIFACTS}: {error}")
    qgis_log = (root / "qgis.log").read_text(encoding="utf-8", errors="replace")
    report_path = out / "report.json"
    report = json.loads(report_path.read_text(encoding="utf-8")) if report_path.exists() else None
    print(f"desktop run: {seconds:.0f} s, QGIS exit {returncode}, screenshots in {ARTIFACTS}")
    assert report is not None, f"QGIS wrote no report (exit {returncode}):\n{qgis_log[-3000:]}"
    assert returncode != "killed", (
        f"QGIS did not quit within {QGIS_TIMEOUT_S} s; last step {report['steps'][-1:]}\n"
        f"{qgis_log[-3000:]}"
    )
    return {"report": report, "out": out, "log": qgis_log, "returncode": returncode}


def _layer(report, file_name):
    for layer in report.get("layers", []):
        if os.path.basename(layer["source"]) == file_name:
            return layer
    raise AssertionError(
        f"{file_name} is not loaded in QGIS: {[x['source'] for x in report.get('layers', [])]}"
    )


def _canvas_pixels(out, name):
    image = QImage(str(out / f"canvas_{name}.png")).convertToFormat(QImage.Format_RGB888)
    assert not image.isNull(), f"no screenshot canvas_{name}.png"
    pointer = image.constBits()
    pointer.setsize(image.sizeInBytes())
    rows = np.frombuffer(pointer, np.uint8).reshape(image.height(), image.bytesPerLine())
    return rows[:, : image.width() * 3].reshape(-1, 3).copy()


def _shares(pixels, colours):
    counts = {
        key: int(pixels_of(pixels, colour, tolerance=4).sum()) for key, colour in colours.items()
    }
    total = sum(counts.values())
    assert total > 0, f"none of the style's colours is on the canvas: {counts}"
    return {key: count / total for key, count in counts.items()}, counts


def _qml_colours(style):
    """class key -> (r, g, b) of resources/styles/STYLE.qml's fill colours as drawn on white.

    Keys are category values (categorized) or range indexes (graduated); the layer opacity is
    applied as QGIS composes the layer over the canvas's white background.
    """
    root = ElementTree.parse(os.path.join(ROOT, "resources", "styles", f"{style}.qml")).getroot()
    opacity = float(root.findtext("layerOpacity", "1"))
    renderer = root.find("renderer-v2")
    symbols = {}
    for symbol in renderer.find("symbols"):
        layer = symbol.find("layer")
        value = layer.find("prop[@k='color']")
        text = (
            value.get("v")
            if value is not None
            else layer.find(".//Option[@name='color']").get("value")
        )
        rgb = np.array([int(part) for part in text.split(",")[:3]], dtype=float)
        symbols[symbol.get("name")] = opacity * rgb + (1 - opacity) * 255
    if renderer.find("categories") is not None:
        return {
            category.get("value"): symbols[category.get("symbol")]
            for category in renderer.find("categories")
        }
    return {
        index: symbols[item.get("symbol")] for index, item in enumerate(renderer.find("ranges"))
    }


def _read(out, name, columns):
    return pyogrio.read_dataframe(out / f"{name}.gpkg", layer=name, columns=columns)


def test_session_ran_without_errors_or_popups(desktop):
    report = desktop["report"]
    assert report["driver_error"] is None, report["driver_error"]
    assert report["finished"], report["steps"][-3:]
    assert report["plugin_active"], "povmap_qgis is not an active plugin in the desktop"
    assert report["python_errors"] == [], report["python_errors"]
    assert report["modal_dialogs"] == [], report["modal_dialogs"]
    assert report["windows"] == [], report["windows"]
    assert report["critical_log"] == [], report["critical_log"]
    errors_in_bar = [
        item
        for item in report["message_bar"]
        if item["level"] >= 2 or "error" in item["title"].lower()
    ]
    assert errors_in_bar == [], errors_in_bar
    assert desktop["returncode"] == 0, desktop["log"][-3000:]


def test_every_algorithm_dialog_opens(desktop):
    report = desktop["report"]
    algorithms = {name.split(":", 1)[1] for name in report["algorithms"]}
    assert {"buildtraininggrid", "buildpredictiongrid", "samplechips", "predict"} <= algorithms
    assert {"train", "evaluate", "crossvalidate", "target"} <= algorithms
    assert set(report["opened"]) == algorithms, "dialogs not opened: " + str(
        algorithms - set(report["opened"])
    )
    for algorithm_id, title in report["opened"].items():
        assert title, f"the dialog of {algorithm_id} has no title"
        assert (desktop["out"] / f"dialog_{algorithm_id}.png").exists() or any(
            desktop["out"].glob("dialog_*_after.png")
        )


def test_dialogs_preselect_sensible_inputs(desktop):
    """The score field defaults to ``score``; polygon pickers never offer the household points."""
    report = desktop["report"]
    defaults = report["dialogs"]["buildtraininggrid_defaults"]["defaults"]
    assert defaults["SCORE_FIELD"] == "score", defaults
    points = {
        layer["name"] for layer in report["project_layers"] if layer.get("geometry") == "Point"
    }
    assert "Synthetic survey households (2016–17)" in points
    pickers = {
        f"{algorithm_id}.{name}": choices
        for algorithm_id, dialog in report["dialogs"].items()
        for name, choices in dialog["polygon_pickers"].items()
    }
    assert "evaluate_defaults.TRUTH" in pickers and "evaluate_defaults.PREDICTIONS" in pickers
    for picker, choices in pickers.items():
        assert choices, f"{picker} offers no layer"
        assert not points & set(choices), f"{picker} offers point layers: {points & set(choices)}"
        assert "Synthetic districts" in choices, (picker, choices)


def test_pipeline_runs_through_the_dialogs(desktop):
    runs = desktop["report"]["runs"]
    for name in (
        "training_grid",
        "prediction_grid",
        "chips",
        "predict",
        "ground_truth_grid",
        "evaluate",
    ):
        assert name in runs, f"{name} was not run: {list(runs)}"
        assert runs[name]["ok"], runs[name]["log_tail"]
        assert "Execution completed" in runs[name]["log_tail"], runs[name]["log_tail"]
        assert runs[name]["style_warnings"] == [], runs[name]["style_warnings"]
        assert "Traceback" not in runs[name]["log_tail"], runs[name]["log_tail"]


def test_predict_with_the_bundled_model_logs_each_warning_once(desktop):
    """What an analyst reads after Predict with the bundled model: the demonstration notice,
    at most one drift warning (naming every shifted input), no contradictions."""
    log = desktop["report"]["runs"]["predict"]["log_tail"]
    assert log.count("NOT FOR POLICY USE") == 1, log
    assert log.count("the chips of this area differ from the training cells") <= 1, log
    outside = re.search(r"(\d+) of (\d+) cells lie outside the training range", log)
    assert outside and int(outside.group(1)) < int(outside.group(2)), log
    assert "votes as information" not in log and "Traceback" not in log, log


def test_training_grid_is_categorized_poor_not_poor(desktop):
    layer = _layer(desktop["report"], "training_grid.gpkg")
    assert layer["renderer"] == "categorizedSymbol"
    assert layer["attribute"] == "label"
    assert {str(c["value"]): c["label"] for c in layer["categories"]} == {
        "1": "Poor (label 1)",
        "0": "Not poor (label 0)",
    }
    assert "povmap training grid" in layer["styles"]
    assert layer["legend"][:2] == ["Poor (label 1)", "Not poor (label 0)"] or set(
        layer["legend"]
    ) >= {"Poor (label 1)", "Not poor (label 0)"}


def test_training_grid_canvas_shows_poor_and_not_poor_in_proportion(desktop):
    out = desktop["out"]
    labels = _read(out, "training_grid", ["label"])["label"]
    expected_poor = float((labels == 1).mean())
    shares, counts = _shares(_canvas_pixels(out, "training_grid"), _qml_colours("training_grid"))
    # Equal cells: the share of poor pixels is the share of poor cells (outlines aside).
    assert shares["1"] == pytest.approx(expected_poor, abs=0.04), (counts, expected_poor)
    assert counts["0"] > 0 and counts["1"] > 0


def test_prediction_layer_styles_and_canvas(desktop):
    report, out = desktop["report"], desktop["out"]
    layer = _layer(report, "predictions.gpkg")
    assert layer["renderer"] == "categorizedSymbol"
    assert layer["attribute"] == "pred"
    assert {str(c["value"]) for c in layer["categories"]} >= {"0", "1"}
    assert any("probability" in name for name in layer["styles"]), layer["styles"]
    assert any("disagreement" in name for name in layer["styles"]), layer["styles"]
    predicted = _read(out, "predictions", ["pred", "prob_mean"])
    shares, counts = _shares(
        _canvas_pixels(out, "predictions_class"), _qml_colours("prediction_class")
    )
    assert shares["1"] == pytest.approx(float((predicted["pred"] == 1).mean()), abs=0.04), counts

    probability = report["predictions_probability_layer"]
    assert probability["renderer"] == "graduatedSymbol"
    assert probability["attribute"] == "prob_mean"
    assert [r["label"] for r in probability["ranges"]][-1].startswith("0.8–1.0")
    ranges = probability["ranges"]
    shares, counts = _shares(
        _canvas_pixels(out, "predictions_probability"), _qml_colours("prediction_probability")
    )
    for index, item in enumerate(ranges):
        inside = predicted["prob_mean"].between(item["lower"], item["upper"], inclusive="right")
        if index == 0:
            inside |= predicted["prob_mean"] == item["lower"]
        assert shares[index] == pytest.approx(float(inside.mean()), abs=0.04), (item, counts)


def test_nodata_grid_and_prediction_grid_are_styled(desktop):
    report = desktop["report"]
    nodata = _layer(report, "nodata_grid.gpkg")
    assert nodata["renderer"] == "categorizedSymbol"
    assert nodata["attribute"] == "chip_flagged"
    assert {str(c["value"]) for c in nodata["categories"]} == {"0", "1"}
    # Complete chips are filled green, flagged ones red: the cells are visible on load, in the
    # proportion of flagged cells (none in the sample).
    flagged = _read(desktop["out"], "nodata_grid", ["chip_flagged"])["chip_flagged"]
    pixels = _canvas_pixels(desktop["out"], "nodata_grid")
    shares, counts = _shares(pixels, _qml_colours("chip_nodata"))
    assert shares["1"] == pytest.approx(float((flagged == 1).mean()), abs=0.04), counts
    assert counts["0"] > 0.2 * len(pixels) * float((flagged == 0).mean()), counts
    grid = _layer(report, "prediction_grid.gpkg")
    assert "povmap prediction grid" in grid["styles"], grid["styles"]
    assert grid["feature_count"] > 0


def test_outputs_load_under_names_that_tell_them_apart(desktop):
    """The training grid and the ground-truth grid (both from Build training grid) load named
    after their surveys; no two outputs share a name."""
    report = desktop["report"]
    names = {os.path.basename(layer["source"]): layer["name"] for layer in report["layers"]}
    survey, truth = "Synthetic survey households (2016–17)", "Synthetic ground-truth survey (2019)"
    assert names["training_grid.gpkg"] == f"Labelled grid: {survey}", names
    assert names["ground_truth_grid.gpkg"] == f"Labelled grid: {truth}", names
    outputs = [name for source, name in names.items() if source.endswith(".gpkg")]
    outputs = [name for name in outputs if not name.startswith("Synthetic")]
    assert len(outputs) >= 6 and len(set(outputs)) == len(outputs), outputs


def test_hit_miss_layer_and_canvas(desktop):
    report, out = desktop["report"], desktop["out"]
    layer = _layer(report, "hitmiss.gpkg")
    assert layer["renderer"] == "categorizedSymbol"
    assert layer["attribute"] == "outcome"
    labels = {c["value"]: c["label"] for c in layer["categories"]}
    assert set(labels) == {"hit", "miss", "false_alarm", "correct_rejection"}
    assert labels["hit"].startswith("Hit: poor, predicted poor"), labels
    outcomes = _read(out, "hitmiss", ["outcome"])["outcome"]
    shares, counts = _shares(_canvas_pixels(out, "hitmiss"), _qml_colours("hitmiss"))
    for outcome in labels:
        assert shares[outcome] == pytest.approx(float((outcomes == outcome).mean()), abs=0.04), (
            outcome,
            counts,
        )
    assert (out / "evaluation.html").stat().st_size > 10_000


def test_outputs_added_by_hand_open_at_once_with_their_style(desktop):
    """Each output dropped on the QGIS window from a file manager (issue 12, item 3) adds one
    layer, asks nothing ("Select Items to Add" would be a modal dialog), and is drawn as the
    same output loaded by the Processing dialog: same renderer, field and classes, the same
    other styles in its list. So is the predictions file moved alone, without its .qml."""
    report = desktop["report"]
    added = report["added_by_hand"]
    assert len(added) == 8, sorted(added)
    for file_name, outcome in added.items():
        assert outcome["questions"] == [], (file_name, outcome["questions"])
        assert len(outcome["layers"]) == 1, (file_name, outcome["layers"])
        by_hand = outcome["layers"][0]
        by_processing = _layer(report, file_name.replace("moved_alone/", ""))
        for key in ("renderer", "attribute", "categories", "ranges", "colour"):
            assert by_hand.get(key) == by_processing.get(key), (file_name, key)
        extra = set(by_processing["styles"]) - {by_processing["current_style"]}
        assert set(by_hand["styles"]) - {by_hand["current_style"]} == extra, file_name


# --- issue 23: what an analyst tripped over ------------------------------------------------


def test_the_bundled_pipeline_model_opens_valid_in_the_modeler(desktop):
    """Processing ▸ Graphical Modeler ▸ Open Model on survey_pipeline.model3: QGIS finds every
    step valid, and Run opens the run dialog at once (no "This model is not valid" question)
    with the survey inputs first."""
    report = desktop["report"]
    modeler = report["modeler"]
    assert modeler["valid"] and modeler["issues"] == [], modeler["issues"]
    assert len(modeler["children"]) == 7
    assert all(issues == [] for issues in modeler["children"].values()), modeler["children"]
    assert modeler["inputs"][:2] == ["SURVEY", "SCORE_FIELD"], modeler["inputs"]
    [run] = report["model_run"]  # one window: the run dialog, no question before it
    assert run["class"] == "AlgorithmDialog", run
    assert run["inputs"][:4] == ["SURVEY", "SCORE_FIELD", "GROUND_TRUTH", "TRUTH_SCORE_FIELD"]
    assert (desktop["out"] / "modeler.png").exists()


def test_targets_output_dropped_on_qgis_opens_without_a_question(desktop):
    """Target's selection dropped from a file manager: one layer, no "Select Items to Add"."""
    report = desktop["report"]
    assert report["runs"]["target"]["ok"], report["runs"]["target"]["log_tail"]
    dropped = report["added_by_hand"]["selection.gpkg"]
    assert dropped["questions"] == [] and len(dropped["layers"]) == 1, dropped
    assert dropped["layers"][0]["attribute"] == "selected"
    assert pyogrio.list_layers(desktop["out"] / "selection.gpkg")[:, 0].tolist() == ["selection"]
    assert (desktop["out"] / "allocation.csv").stat().st_size > 0


def test_evaluating_over_training_cells_says_so_and_never_calls_them_new(desktop):
    """The Sorabad map's border cells are cells of the survey grid: evaluated against that grid
    with a package that learned it, the report counts them as training cells (as many as the
    package's list and the layers' ids give, read here with numpy) and does not file Sorabad
    under "new to the model"."""
    out = desktop["out"]
    runs = desktop["report"]["runs"]
    assert runs["predict_seen"]["ok"] and runs["evaluate_seen"]["ok"], runs["evaluate_seen"]
    learned = np.load(out / "seen_training.povmodel" / "training_cells.npy", allow_pickle=False)
    predicted = pyogrio.read_dataframe(
        out / "predictions_seen.gpkg", columns=["cell_id", "training_cell"], read_geometry=False
    )
    assert (predicted["training_cell"] == np.isin(predicted["cell_id"], learned)).all()
    truth = pyogrio.read_dataframe(out / "training_grid.gpkg", columns=["cell_id"])
    compared = predicted[predicted["cell_id"].isin(truth["cell_id"])]
    seen = int(np.isin(compared["cell_id"], learned).sum())
    assert seen > 0, "the unsurveyed district's map holds no cell of the survey grid"
    metrics = json.loads((out / "metrics_seen.json").read_text(encoding="utf-8"))
    assert metrics["training_cells"]["known"] and metrics["training_cells"]["compared"] == seen
    html = (out / "evaluation_seen.html").read_text(encoding="utf-8")
    section = html[html.index("Districts the model never trained on") :]
    assert f"{seen} of the {len(compared)} compared cells were training cells" in section
    assert "none: new to the model" not in section
    assert "were training cells (cells of the training grid" in section
    # the bundled model's own evaluation: its package may predate the list; then it says so
    first = (out / "evaluation.html").read_text(encoding="utf-8")
    first = first[first.index("Districts the model never trained on") :]
    assert (
        "cannot be known" in first
        or "compared cells were training cells" in first
        or "None of the" in first
    )


def test_two_predictions_are_told_apart_in_the_layers_panel(desktop):
    """Predict run twice (two models): the Layers panel names each output what, where and from
    which model; the other outputs too; the evaluation report names its input by that name."""
    report = desktop["report"]
    names = {os.path.basename(layer["source"]): layer["name"] for layer in report["layers"]}
    assert names["predictions.gpkg"] == "Predictions — Sorabad (demo_compact)", names
    assert names["predictions_seen.gpkg"] == "Predictions — Sorabad (seen_training)", names
    assert names["hitmiss.gpkg"] == "Hits and misses — Sorabad (demo_compact)", names
    assert names["selection.gpkg"] == "Selection — Sorabad (30 % of the cells)", names
    assert names["prediction_grid.gpkg"] == "Prediction grid — Sorabad", names
    panel = report["layers_panel"]
    for name in ("Predictions — Sorabad (demo_compact)", "Predictions — Sorabad (seen_training)"):
        assert name in panel, panel
    html = (desktop["out"] / "evaluation.html").read_text(encoding="utf-8")
    assert "Predictions — Sorabad (demo_compact) against" in html
