"""Drives the real QGIS desktop through povmap's dialogs, as an analyst would (run by tests/test_desktop.py).

Started as ``qgis --code drive_qgis.py`` under Xvfb. It opens the sample project, opens
every povmap algorithm's dialog, runs a short pipeline through the dialogs (training grid,
prediction grid for the unsurveyed district, chips, predict with the bundled model,
ground-truth grid, evaluate; predict and evaluate again with a package that learned the
survey's cells; target), opens the bundled survey_pipeline.model3 in the Graphical Modeler
and presses Run, drops the outputs on the window, and writes what a user would see into POVMAP_DESKTOP_OUT:
report.json (layers with their renderers, classes, legend and styles; dialog logs; Python
errors; pop-ups) and PNG screenshots. Then it quits QGIS. Nothing here asserts: the test
reads the report.

Environment: POVMAP_DESKTOP_OUT (output folder), POVMAP_DESKTOP_SAMPLE (the sample project
folder), POVMAP_DESKTOP_BUDGET_S (seconds before the driver gives up and quits, default 150).
"""

import json
import os
import shutil
import time
import traceback

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsMapLayer,
    QgsProcessing,
    QgsProcessingFeatureSourceDefinition,
    QgsProcessingParameterFeatureSource,
    QgsProject,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QMimeData, QPoint, Qt, QTimer, QUrl
from qgis.PyQt.QtGui import QDragEnterEvent, QDropEvent
from qgis.PyQt.QtWidgets import QApplication, QComboBox, QDialog, QLabel, QMessageBox, QTextEdit
from qgis.utils import iface

OUT = os.environ["POVMAP_DESKTOP_OUT"]
SAMPLE = os.environ["POVMAP_DESKTOP_SAMPLE"]
BUDGET_S = float(os.environ.get("POVMAP_DESKTOP_BUDGET_S", "150"))
STARTED = time.monotonic()

# The pipeline run through dialogs; every other povmap algorithm's dialog is opened and closed.
PIPELINE = ("buildtraininggrid", "buildpredictiongrid", "samplechips", "predict", "evaluate")
UNSURVEYED = "Sorabad"  # the sample's district without survey; the 2019 ground truth is there

report = {
    "qgis_version": Qgis.QGIS_VERSION,
    "steps": [],
    "python_errors": [],
    "critical_log": [],
    "modal_dialogs": [],
    "windows": [],
    "opened": {},
    "dialogs": {},
    "runs": {},
    "canvas": {},
    "message_bar": [],
    "driver_error": None,
    "finished": False,
}
_own_dialogs = []  # the algorithm dialogs this driver opened (not pop-ups)


def save_report():
    report["elapsed_s"] = round(time.monotonic() - STARTED, 1)
    path = os.path.join(OUT, "report.json")
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=1, default=str)
    os.replace(path + ".tmp", path)


def step(name):
    report["steps"].append({"step": name, "at_s": round(time.monotonic() - STARTED, 1)})
    save_report()


# --- what goes wrong where a user would see it -------------------------------------------


def on_log_message(message, tag, level):
    if tag == "Python error" or "Traceback (most recent call last)" in message:
        report["python_errors"].append({"tag": tag, "message": message[-4000:]})
    elif level == Qgis.Critical:
        report["critical_log"].append({"tag": tag, "message": message[-2000:]})


def widget_text(widget):
    if isinstance(widget, QMessageBox):
        return f"{widget.text()}\n{widget.informativeText()}\n{widget.detailedText()}".strip()
    labels = [label.text() for label in widget.findChildren(QLabel) if label.text()]
    edits = [edit.toPlainText() for edit in widget.findChildren(QTextEdit)]
    return "\n".join(labels + edits)[-3000:]


def watch_popups():
    """Record and close any modal pop-up and any other dialog window this driver did not open."""
    try:
        modal = QApplication.activeModalWidget()
        if modal is not None and modal not in _own_dialogs and report.get("expect_modal"):
            record_expected_modal(modal)
        elif modal is not None and modal not in _own_dialogs:
            index = len(report["modal_dialogs"])
            modal.grab().save(os.path.join(OUT, f"popup_{index}.png"))
            report["modal_dialogs"].append(
                {
                    "class": type(modal).__name__,
                    "title": modal.windowTitle(),
                    "text": widget_text(modal),
                    "during": report["steps"][-1]["step"] if report["steps"] else None,
                }
            )
            save_report()
            modal.reject() if isinstance(modal, QDialog) else modal.close()
        for widget in QApplication.topLevelWidgets():
            if (
                isinstance(widget, QDialog)
                and widget.isVisible()
                and widget not in _own_dialogs
                and not widget.isModal()
            ):
                entry = {"class": type(widget).__name__, "title": widget.windowTitle()}
                if entry not in report["windows"]:
                    entry["text"] = widget_text(widget)
                    report["windows"].append(entry)
                    widget.grab().save(os.path.join(OUT, f"window_{len(report['windows'])}.png"))
                    save_report()
                    widget.close()
    except Exception:  # the watcher must never stop the run
        report.setdefault("watcher_errors", []).append(traceback.format_exc())


def record_expected_modal(modal):
    """A modal window a step opens on purpose (Run in the Graphical Modeler): what it is, the
    inputs of a run dialog in the order shown, a screenshot; then it is closed."""
    name = report["expect_modal"]
    entries = report.setdefault(name, [])
    entry = {
        "class": type(modal).__name__,
        "title": modal.windowTitle(),
        "text": widget_text(modal),
    }
    if hasattr(modal, "mainWidget"):
        entry["inputs"] = list(modal.mainWidget().wrappers)
    modal.grab().save(os.path.join(OUT, f"{name}_{len(entries)}.png"))
    entries.append(entry)
    if not isinstance(modal, QMessageBox):
        report["expect_modal"] = None
    save_report()
    modal.reject() if isinstance(modal, QDialog) else modal.close()


# --- a linear scenario on Qt's event loop ---------------------------------------------------
# The scenario is a generator: ``yield seconds`` waits, ``yield (predicate, timeout_s)`` waits
# until predicate() is true (or the timeout passes); the event loop keeps running meanwhile.


def pump(scenario, value=None):
    try:
        if time.monotonic() - STARTED > BUDGET_S:
            raise TimeoutError(f"the driver's budget of {BUDGET_S:.0f} s ran out")
        wait = scenario.send(value)
    except StopIteration:
        finish()
        return
    except Exception:
        report["driver_error"] = traceback.format_exc()
        finish()
        return
    if isinstance(wait, tuple):
        predicate, timeout_s = wait
        deadline = time.monotonic() + timeout_s
        poll(scenario, predicate, deadline)
    else:
        QTimer.singleShot(int(wait * 1000), lambda: pump(scenario))


def poll(scenario, predicate, deadline):
    try:
        done = bool(predicate())
    except Exception:
        done = False
    if done or time.monotonic() > deadline:
        QTimer.singleShot(0, lambda: pump(scenario, done))
    else:
        QTimer.singleShot(200, lambda: poll(scenario, predicate, deadline))


def finish():
    report["message_bar"].extend(message_bar_items())
    report["finished"] = report["driver_error"] is None
    save_report()
    # Unload the project while the window is alive: QGIS 3.22 crashes in its destructor when
    # the layers go after the style dock does.
    iface.setActiveLayer(None)
    QgsProject.instance().clear()
    QTimer.singleShot(500, QApplication.instance().quit)


# --- looking at layers, legend and canvas ---------------------------------------------------


def colour(symbol):
    return symbol.color().name() if symbol is not None else None


def describe_layer(layer):
    entry = {
        "name": layer.name(),
        "source": layer.source().split("|")[0],
        "type": "vector" if layer.type() == QgsMapLayer.VectorLayer else "raster",
        "styles": layer.styleManager().styles(),
        "current_style": layer.styleManager().currentStyle(),
        "opacity": layer.opacity(),
    }
    node = QgsProject.instance().layerTreeRoot().findLayer(layer.id())
    entry["visible"] = bool(node and node.isVisible())
    model = iface.layerTreeView().layerTreeModel()
    entry["legend"] = [
        legend.data(Qt.DisplayRole) for legend in (model.layerLegendNodes(node) if node else [])
    ]
    if layer.type() != QgsMapLayer.VectorLayer:
        entry["renderer"] = layer.renderer().type() if layer.renderer() else None
        return entry
    renderer = layer.renderer()
    entry["geometry"] = QgsWkbTypes.geometryDisplayString(layer.geometryType())
    entry["feature_count"] = layer.featureCount()
    entry["renderer"] = renderer.type() if renderer else None
    if renderer is None:
        return entry
    if hasattr(renderer, "classAttribute"):
        entry["attribute"] = renderer.classAttribute()
    if renderer.type() == "categorizedSymbol":
        entry["categories"] = [
            {
                "value": category.value(),
                "label": category.label(),
                "colour": colour(category.symbol()),
                "render": category.renderState(),
            }
            for category in renderer.categories()
        ]
    elif renderer.type() == "graduatedSymbol":
        entry["ranges"] = [
            {
                "lower": item.lowerValue(),
                "upper": item.upperValue(),
                "label": item.label(),
                "colour": colour(item.symbol()),
            }
            for item in renderer.ranges()
        ]
    elif renderer.type() == "singleSymbol":
        entry["colour"] = colour(renderer.symbol())
    return entry


def layer_by_source(path):
    wanted = os.path.realpath(path)
    found = [
        layer
        for layer in QgsProject.instance().mapLayers().values()
        if os.path.realpath(layer.source().split("|")[0]) == wanted
    ]
    return found[-1] if found else None


def layer_by_name(name):
    layers = QgsProject.instance().mapLayersByName(name)
    if not layers:
        raise LookupError(f"no layer named {name!r} in the project")
    return layers[0]


def message_bar_items():
    items = []
    for item in iface.messageBar().items():
        items.append({"title": item.title(), "text": item.text(), "level": int(item.level())})
    return items


def drop_file(path):
    """Drag ``path`` from a file manager and drop it on the QGIS window (real Qt drag events)."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(path)])
    window = iface.mainWindow()
    point = QPoint(window.width() // 2, window.height() // 2)
    # Qt delivers a drop only to the widget the drag entered (QDragManager's current target).
    for event_type in (QDragEnterEvent, QDropEvent):
        event = event_type(point, Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
        QApplication.sendEvent(window, event)
    return mime  # QGIS reads the file names when the drop arrives; kept alive regardless


def add_by_hand(paths):
    """Drop each output file on QGIS as a user would; what each added and any question asked."""
    added = {}
    for path in paths:
        before = set(QgsProject.instance().mapLayers())
        questions = len(report["modal_dialogs"])
        keep = drop_file(path)
        yield (lambda before=before: set(QgsProject.instance().mapLayers()) - before, 15)
        yield 1.0  # a question ("Select Items to Add") would be open by now: the watcher records it
        new = [
            QgsProject.instance().mapLayer(i)
            for i in set(QgsProject.instance().mapLayers()) - before
        ]
        added[os.path.relpath(path, OUT)] = {
            "layers": [describe_layer(layer) for layer in new],
            "questions": report["modal_dialogs"][questions:],
        }
        del keep
    report["added_by_hand"] = added
    save_report()


def canvas_idle():
    canvas = iface.mapCanvas()
    return not canvas.isDrawing()


def show_only(layer, name):
    """Show ``layer`` alone on the canvas, zoomed to it, and grab the canvas and the window."""
    root = QgsProject.instance().layerTreeRoot()
    for node in root.findLayers():
        node.setItemVisibilityChecked(node.layerId() == layer.id())
    iface.setActiveLayer(layer)
    # QGIS's "Task complete" notices sit above the canvas and shrink it: note them, dismiss them.
    report["message_bar"].extend(message_bar_items())
    iface.messageBar().clearWidgets()
    yield 0.3
    canvas = iface.mapCanvas()
    extent = canvas.mapSettings().layerExtentToOutputExtent(layer, layer.extent())
    canvas.setExtent(extent.buffered(0.03 * max(extent.width(), extent.height())))
    canvas.refresh()
    yield 0.5
    yield (canvas_idle, 20)
    yield 0.5
    canvas.grab().save(os.path.join(OUT, f"canvas_{name}.png"))
    iface.mainWindow().grab().save(os.path.join(OUT, f"main_{name}.png"))
    report["canvas"][name] = {
        "layer": layer.name(),
        "style": layer.styleManager().currentStyle(),
        "size": [canvas.width(), canvas.height()],
    }
    save_report()


# --- dialogs ------------------------------------------------------------------------------


def open_dialog(algorithm_id, parameters):
    import processing

    dialog = processing.createAlgorithmDialog(f"povmap:{algorithm_id}", parameters)
    if dialog is None:
        raise LookupError(f"no dialog for povmap:{algorithm_id}: is the plugin loaded?")
    _own_dialogs.append(dialog)
    dialog.show()
    report["opened"].setdefault(algorithm_id, dialog.windowTitle())
    return dialog


def parameter_values(dialog):
    """What the dialog's widgets hold (as the user sees them before pressing Run)."""
    values = {}
    for name, wrapper in dialog.mainWidget().wrappers.items():
        try:
            values[name] = str(wrapper.parameterValue())
        except Exception as error:
            values[name] = f"<{error}>"
    return values


def polygon_picker_choices(dialog):
    """For each parameter that takes polygons only: the layers its picker offers."""
    choices = {}
    for definition in dialog.algorithm().parameterDefinitions():
        if not isinstance(definition, QgsProcessingParameterFeatureSource):
            continue
        if definition.dataTypes() != [QgsProcessing.TypeVectorPolygon]:
            continue
        wrapper = dialog.mainWidget().wrappers.get(definition.name())
        combos = wrapper.wrappedWidget().findChildren(QComboBox) if wrapper else []
        choices[definition.name()] = (
            # items read "name [EPSG:…]"
            [combos[0].itemText(index).rsplit(" [", 1)[0] for index in range(combos[0].count())]
            if combos
            else None
        )
    return choices


def look_at_dialog(algorithm_id, parameters=None):
    """Open a dialog, screenshot it, record its defaults and help, close it."""
    dialog = open_dialog(algorithm_id, parameters or {})
    yield 0.6
    dialog.grab().save(os.path.join(OUT, f"dialog_{algorithm_id}.png"))
    report["dialogs"][algorithm_id] = {
        "title": dialog.windowTitle(),
        "defaults": parameter_values(dialog),
        "polygon_pickers": polygon_picker_choices(dialog),
    }
    dialog.close()
    _own_dialogs.remove(dialog)
    save_report()


def run_dialog(algorithm_id, parameters, name=None, timeout_s=90):
    """Open a dialog with ``parameters``, press Run, wait for the result to be loaded."""
    name = name or algorithm_id
    step(f"run {name}")
    dialog = open_dialog(algorithm_id, parameters)
    outcome = {}
    dialog.algorithmFinished.connect(
        lambda ok, results: outcome.update(ok=bool(ok), results=dict(results))
    )
    yield 0.6
    dialog.grab().save(os.path.join(OUT, f"dialog_{name}.png"))
    started = time.monotonic()
    dialog.runAlgorithm()
    finished = yield (lambda: "ok" in outcome, timeout_s)
    yield 0.3
    log_widget = dialog.findChild(QTextEdit, "txtLog")
    log_text = log_widget.toPlainText() if log_widget else ""
    dialog.grab().save(os.path.join(OUT, f"dialog_{name}_after.png"))
    report["runs"][name] = {
        "finished": bool(finished),
        "ok": outcome.get("ok"),
        "seconds": round(time.monotonic() - started, 1),
        "results": {key: str(value) for key, value in outcome.get("results", {}).items()},
        "log_tail": log_text[-3000:],
        "style_warnings": [
            line for line in log_text.splitlines() if "style was not applied" in line
        ],
    }
    dialog.close()
    _own_dialogs.remove(dialog)
    save_report()
    if not outcome.get("ok"):
        raise RuntimeError(f"{name} did not complete in its dialog; see runs.{name}.log_tail")
    return outcome["results"]


def package_trained_on(grid_path, chips_path, folder):
    """A copy of the bundled model package that records the cells of ``grid_path`` as the cells
    it learned from (and their districts), as Train records them: predictions over those cells
    are not predictions for new cells (issue 23, item 3)."""
    from collections import Counter

    from qgis.core import QgsVectorLayer

    from povmap_qgis.core.model import model_package
    from povmap_qgis.paths import bundled_model_path

    shutil.copytree(bundled_model_path(), folder)
    with open(os.path.join(folder, "manifest.json"), encoding="utf-8") as handle:
        manifest = json.load(handle)
    with open(os.path.join(chips_path, "manifest.json"), encoding="utf-8") as handle:
        settings = json.load(handle)["settings"]
    grid = QgsVectorLayer(grid_path, "grid", "ogr")
    cells = [(int(f["cell_id"]), str(f["district"])) for f in grid.getFeatures()]
    manifest["training_cells"] = model_package.write_training_cells(
        folder, [cell for cell, _ in cells], "cell_id", settings["crs"], settings["cell_size"]
    )
    counts = Counter(district for _, district in cells)
    manifest["training"]["districts_seen"] = {name: counts[name] for name in sorted(counts)}
    manifest.pop("notice", None)
    model_package.write_manifest(folder, manifest)
    return len({cell for cell, _ in cells})


def look_at_model(path):
    """Open a .model3 in the Graphical Modeler (Processing ▸ Graphical Modeler ▸ Open Model),
    record whether QGIS finds it valid, press Run as a user does and see what opens."""
    from processing.modeler.ModelerDialog import ModelerDialog

    step("open the bundled model in the Graphical Modeler")
    designer = ModelerDialog.create()
    designer.loadModel(path)
    designer.show()
    yield 1.0
    designer.grab().save(os.path.join(OUT, "modeler.png"))
    model = designer.model()
    valid, issues = model.validate()
    report["modeler"] = {
        "valid": bool(valid),
        "issues": list(issues),
        "children": {
            child_id: list(model.validateChildAlgorithm(child_id)[1])
            for child_id in model.childAlgorithms()
        },
        "inputs": [d.name() for d in model.parameterDefinitions() if not d.isDestination()],
    }
    report["expect_modal"] = "model_run"
    QTimer.singleShot(0, designer.actionRun().trigger)
    yield (lambda: report.get("model_run") and not report.get("expect_modal"), 20)
    report["expect_modal"] = None
    yield 0.5
    designer.close()
    save_report()


# --- the scenario ---------------------------------------------------------------------------


def scenario():
    yield 1.0
    step("plugin loaded")
    import qgis.utils

    report["plugin_active"] = "povmap_qgis" in qgis.utils.active_plugins
    provider = QgsApplication.processingRegistry().providerById("povmap")
    report["algorithms"] = sorted(a.id() for a in provider.algorithms()) if provider else []

    step("open the sample project")
    iface.mainWindow().resize(1400, 900)
    project_file = next(f for f in os.listdir(SAMPLE) if f.endswith(".qgz"))
    iface.addProject(os.path.join(SAMPLE, project_file))
    yield 1.0
    yield (canvas_idle, 20)
    iface.mainWindow().grab().save(os.path.join(OUT, "main_project.png"))
    report["project_layers"] = [
        describe_layer(layer) for layer in QgsProject.instance().mapLayers().values()
    ]

    step("open every dialog")
    survey = layer_by_name("Synthetic survey households (2016–17)")
    for algorithm_id in report["algorithms"]:
        short = algorithm_id.split(":", 1)[1]
        if short not in PIPELINE:
            yield from look_at_dialog(short)
    # What the dialogs preselect before the user picks anything (issue 12, item 2).
    yield from look_at_dialog("buildtraininggrid", {"INPUT": survey.id()})
    report["dialogs"]["buildtraininggrid_defaults"] = report["dialogs"].pop("buildtraininggrid")
    yield from look_at_dialog("evaluate")
    report["dialogs"]["evaluate_defaults"] = report["dialogs"].pop("evaluate")

    districts = layer_by_name("Synthetic districts")
    training_path = os.path.join(OUT, "training_grid.gpkg")
    yield from run_dialog(
        "buildtraininggrid",
        {
            "INPUT": survey.id(),
            "SCORE_FIELD": "score",
            "DISTRICTS": districts.id(),
            "DISTRICT_FIELD": "name",
            "CRS": "EPSG:32642",
            "OUTPUT": training_path,
        },
        name="training_grid",
    )
    training = layer_by_source(training_path)
    yield from show_only(training, "training_grid")

    step("prediction grid for the unsurveyed district")
    districts.selectByExpression(f"\"name\" = '{UNSURVEYED}'")
    prediction_grid_path = os.path.join(OUT, "prediction_grid.gpkg")
    yield from run_dialog(
        "buildpredictiongrid",
        {
            "AREA": QgsProcessingFeatureSourceDefinition(districts.id(), True),
            "DISTRICT_FIELD": "name",
            "CRS": "EPSG:32642",
            "OUTPUT": prediction_grid_path,
        },
        name="prediction_grid",
    )
    districts.removeSelection()
    prediction_grid = layer_by_source(prediction_grid_path)
    yield from show_only(prediction_grid, "prediction_grid")

    chips_path = os.path.join(OUT, "sorabad.chips")
    nodata_path = os.path.join(OUT, "nodata_grid.gpkg")
    yield from run_dialog(
        "samplechips",
        {
            "GRID": prediction_grid.id(),
            "DAYTIME": layer_by_name("Synthetic daytime (Sentinel-2 like)").id(),
            "NIGHTLIGHTS": layer_by_name("Synthetic night lights (VIIRS like, nW/cm²/sr)").id(),
            "ACCESSIBILITY": layer_by_name("Synthetic travel time to towns (minutes)").id(),
            "OUTPUT": chips_path,
            "NODATA_GRID": nodata_path,
        },
        name="chips",
    )
    yield from show_only(layer_by_source(nodata_path), "nodata_grid")

    predictions_path = os.path.join(OUT, "predictions.gpkg")
    yield from run_dialog(
        "predict",
        {"CHIPS": chips_path, "GRID": prediction_grid.id(), "OUTPUT": predictions_path},
        name="predict",
        timeout_s=120,
    )
    predictions = layer_by_source(predictions_path)
    yield from show_only(predictions, "predictions_class")
    class_style = predictions.styleManager().currentStyle()
    probability = [s for s in predictions.styleManager().styles() if "probability" in s]
    report["probability_style"] = probability[0] if probability else None
    if probability:
        predictions.styleManager().setCurrentStyle(probability[0])
        iface.layerTreeView().refreshLayerSymbology(predictions.id())
        report["predictions_probability_layer"] = describe_layer(predictions)
        yield from show_only(predictions, "predictions_probability")
        predictions.styleManager().setCurrentStyle(class_style)

    ground_truth = layer_by_name("Synthetic ground-truth survey (2019)")
    truth_path = os.path.join(OUT, "ground_truth_grid.gpkg")
    yield from run_dialog(
        "buildtraininggrid",
        {
            "INPUT": ground_truth.id(),
            "SCORE_FIELD": "score",
            "DISTRICTS": districts.id(),
            "DISTRICT_FIELD": "name",
            "CRS": "EPSG:32642",
            "OUTPUT": truth_path,
        },
        name="ground_truth_grid",
    )

    hitmiss_path = os.path.join(OUT, "hitmiss.gpkg")
    yield from run_dialog(
        "evaluate",
        {
            "PREDICTIONS": predictions.id(),
            "TRUTH": layer_by_source(truth_path).id(),
            "HITMISS": hitmiss_path,
            "REPORT": os.path.join(OUT, "evaluation.html"),
            "METRICS": os.path.join(OUT, "metrics.json"),
        },
        name="evaluate",
    )
    yield from show_only(layer_by_source(hitmiss_path), "hitmiss")

    # Predict again, with a model that learned the training grid's cells, and evaluate it on
    # them: Sorabad's border cells were training cells (issue 23, items 3 and 6)
    step("a model trained on the survey's cells")
    seen_model = os.path.join(OUT, "seen_training.povmodel")
    report["seen_model_cells"] = package_trained_on(training_path, chips_path, seen_model)
    seen_path = os.path.join(OUT, "predictions_seen.gpkg")
    yield from run_dialog(
        "predict",
        {
            "MODEL": seen_model,
            "CHIPS": chips_path,
            "GRID": prediction_grid.id(),
            "OUTPUT": seen_path,
        },
        name="predict_seen",
        timeout_s=120,
    )
    yield from run_dialog(
        "evaluate",
        {
            "PREDICTIONS": layer_by_source(seen_path).id(),
            "TRUTH": training.id(),
            "RANDOM_DRAWS": 50,
            "HITMISS": os.path.join(OUT, "hitmiss_seen.gpkg"),
            "REPORT": os.path.join(OUT, "evaluation_seen.html"),
            "METRICS": os.path.join(OUT, "metrics_seen.json"),
        },
        name="evaluate_seen",
    )

    selection_path = os.path.join(OUT, "selection.gpkg")  # issue 23, item 2
    yield from run_dialog(
        "target",
        {
            "PREDICTIONS": predictions.id(),
            "OUTPUT": selection_path,
            "ALLOCATION": os.path.join(OUT, "allocation.csv"),
            "REPORT": os.path.join(OUT, "targeting.html"),
        },
        name="target",
    )
    yield from show_only(layer_by_source(selection_path), "selection")

    import povmap_qgis

    yield from look_at_model(
        os.path.join(
            os.path.dirname(povmap_qgis.__file__), "resources", "models", "survey_pipeline.model3"
        )
    )

    step("describe the layers")
    report["layers"] = [
        describe_layer(layer) for layer in QgsProject.instance().mapLayers().values()
    ]
    report["style_names"] = {
        layer["source"]: layer["styles"] for layer in report["layers"] if layer["type"] == "vector"
    }

    step("add the outputs by hand")  # drag and drop from a file manager (issue 12, item 3)
    outputs = (
        "training_grid",
        "prediction_grid",
        "nodata_grid",
        "predictions",
        "ground_truth_grid",
        "hitmiss",
        "selection",
    )
    moved = os.path.join(OUT, "moved_alone")  # the GeoPackage copied without its .qml
    os.makedirs(moved)
    shutil.copy(os.path.join(OUT, "predictions.gpkg"), moved)
    paths = [os.path.join(OUT, f"{name}.gpkg") for name in outputs]
    yield from add_by_hand([*paths, os.path.join(moved, "predictions.gpkg")])
    yield (canvas_idle, 20)
    iface.mainWindow().grab().save(os.path.join(OUT, "main_added_by_hand.png"))
    iface.layerTreeView().grab().save(os.path.join(OUT, "layers_panel.png"))
    report["layers_panel"] = [
        node.name() for node in QgsProject.instance().layerTreeRoot().findLayers()
    ]
    step("done")


def start():
    QgsApplication.messageLog().messageReceived.connect(on_log_message)
    watcher = QTimer(QApplication.instance())
    watcher.timeout.connect(watch_popups)
    watcher.start(250)
    globals()["_watcher"] = watcher  # keep it alive
    pump(scenario())


QTimer.singleShot(2000, start)
