"""povmap:evaluate through Processing and the worker: metrics against scikit-learn, the hit/miss layer
cell by cell and rendered by QGIS, the HTML report in headless Chromium, bad input named."""

import base64
import csv
import io
import json
import os
import re

import numpy as np
import pytest
from helpers import read_grid
from qgis_helpers import run_algorithm, run_failing
from report_checks import chromium, outcome_colours, pixels_of, symbol_colours
from required_tools import need_chromium

MEMBERS = ("compact_cnn", "compact_wide", "compact_residual")
THRESHOLD = 0.4  # not the default 0.5: the threshold must come from the layer metadata
ROWS, COLUMNS = (
    12,
    20,
)  # predicted cells; the truth covers 200 of them plus 15 cells nobody predicted
DRAWS = 200
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HITMISS_QML = os.path.join(ROOT, "resources", "styles", "hitmiss.qml")


def cell_ids(rows, columns):
    """cell_id of the data contract for a 1 km grid in a UTM zone."""
    return (rows + 500000000) * 10**9 + (columns + 500000000)


def grid_frame(rows, columns, crs="EPSG:32642", **fields):
    import geopandas
    import shapely

    geometries = [
        shapely.box(column * 1000, row * 1000, (column + 1) * 1000, (row + 1) * 1000)
        for row, column in zip(rows, columns, strict=True)
    ]
    return geopandas.GeoDataFrame(
        {"cell_id": cell_ids(rows, columns), **fields}, geometry=geometries, crs=crs
    )


@pytest.fixture(scope="module")
def layers(tmp_path_factory):
    """A prediction layer written as povmap:predict writes it (fields, metadata, styles) and labelled grids to compare it with."""
    from povmap_qgis.core.geopackage import write_layer
    from povmap_qgis.paths import style_path

    folder = tmp_path_factory.mktemp("evaluate")
    rng = np.random.default_rng(5)
    rows, columns = np.divmod(np.arange(ROWS * COLUMNS), COLUMNS)
    district = np.array(["Dadu", "Khairpur", "Sanghar"])[columns // 7].astype(object)
    district[:6] = None  # cells without a district count in "all" only
    latent = rng.normal(0, 1, len(rows))
    label = (latent + rng.normal(0, 0.8, len(rows)) > 0.2).astype("int32")
    probabilities = {
        member: np.round(1 / (1 + np.exp(-(latent + rng.normal(0, 0.9, len(rows))) - 0.3)), 5)
        for member in MEMBERS
    }
    probabilities["compact_wide"][:40] = np.round(probabilities["compact_wide"][:40], 1)  # ties
    stacked = np.vstack([probabilities[member] for member in MEMBERS])
    votes = (stacked >= THRESHOLD).sum(axis=0).astype("int32")
    predictions = grid_frame(
        rows,
        columns,
        district=district,
        **{f"prob_{m}": probabilities[m] for m in MEMBERS},
        prob_mean=np.round(stacked.mean(axis=0), 5),
        votes=votes,
        pred=(votes * 2 > len(MEMBERS)).astype("int32"),
        disagreement=np.round(stacked.std(axis=0), 5),
        chip_flagged=(np.arange(len(rows)) % 50 == 0).astype("int32"),
    )
    paths = {"predictions": str(folder / "predictions.gpkg")}
    write_layer(
        predictions,
        paths["predictions"],
        style_path("prediction_class"),
        "povmap prediction (class)",
        metadata={
            "povmap:model": "/nowhere/demo.povmodel",
            "povmap:threshold": THRESHOLD,
            "povmap:members": ",".join(MEMBERS),
            "povmap:label": "1 = poor",
        },
    )
    # truth: 200 predicted cells (other order) + 15 cells outside the predicted area
    chosen = np.sort(rng.choice(len(rows), 200, replace=False))[::-1]
    extra_rows, extra_columns = np.full(15, ROWS + 3), np.arange(15)
    truth = grid_frame(
        np.concatenate([rows[chosen], extra_rows]),
        np.concatenate([columns[chosen], extra_columns]),
        district=np.concatenate(
            [np.array(["Dadu", "Khairpur", "Sanghar"])[columns[chosen] // 7], ["Dadu"] * 15]
        ),
        n_obs=np.full(215, 5, "int32"),
        median_score=np.full(215, 20.0),
        label=np.concatenate([label[chosen], np.ones(15, "int32")]),
    )
    truth_metadata = {
        "povmap_grid_kind": "training",
        "cell_size": 1000.0,
        "cutoff": 19.0,
        "poor_below": True,
    }
    for name, frame in (
        ("truth", truth),
        ("truth_lonlat", truth.to_crs("EPSG:4326")),
        ("truth_one_class", truth.assign(label=np.ones(len(truth), "int32"))),
        ("truth_unlabelled", truth.drop(columns=["label"])),
        ("truth_elsewhere", grid_frame(rows + 700, columns, crs="EPSG:32643", label=label)),
    ):
        paths[name] = str(folder / f"{name}.gpkg")
        write_layer(
            frame,
            paths[name],
            style_path("training_grid"),
            "povmap training grid",
            metadata=truth_metadata,
        )
    paths["predictions_without_probabilities"] = str(folder / "bare_predictions.gpkg")
    write_layer(
        predictions[["cell_id", "district", "pred", "geometry"]],
        paths["predictions_without_probabilities"],
    )
    return {"paths": paths, "folder": folder, "predictions": predictions, "truth": truth}


def evaluate(layers, name, truth="truth", draws=DRAWS):
    folder = layers["folder"] / name
    folder.mkdir()
    parameters = {
        "PREDICTIONS": layers["paths"]["predictions"],
        "TRUTH": layers["paths"][truth],
        "RANDOM_DRAWS": draws,
        "SEED": 3,
        "HITMISS": str(folder / "hitmiss.gpkg"),
        "REPORT": str(folder / "report.html"),
        "METRICS": str(folder / "metrics.json"),
    }
    results, feedback = run_algorithm("povmap:evaluate", parameters)
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
        "folder": folder,
    }


@pytest.fixture(scope="module")
def evaluated(layers, qgis_processing):
    from qgis.core import QgsApplication

    from povmap_qgis.processing.provider import PovmapProvider

    if QgsApplication.processingRegistry().providerById("povmap") is None:
        evaluated.provider = (
            PovmapProvider()
        )  # kept alive: the registry does not own the Python object
        QgsApplication.processingRegistry().addProvider(evaluated.provider)
    return evaluate(layers, "base")


def matched_cells(layers):
    """Predictions with the observed label; a district missing in the predictions is taken from the truth."""
    truth = layers["truth"][["cell_id", "label", "district"]].rename(
        columns={"label": "observed", "district": "truth_district"}
    )
    cells = layers["predictions"].merge(truth, on="cell_id")
    return cells.assign(district=cells["district"].fillna(cells["truth_district"]))


def expected_rows(cells, draws, seed):
    """The tidy CSV as scikit-learn computes it: scope all then districts, members, ensemble, random."""
    from sklearn.metrics import accuracy_score, precision_score, recall_score, roc_auc_score

    from povmap_qgis.core.validation.metrics import random_baseline

    scopes = [("all", cells)] + [(name, group) for name, group in sorted(cells.groupby("district"))]
    rows = []
    for scope, group in scopes:
        labels = group["observed"].to_numpy()
        for model in MEMBERS + ("ensemble",):
            probability = group["prob_mean" if model == "ensemble" else f"prob_{model}"].to_numpy()
            predicted = (
                group["pred"].to_numpy()
                if model == "ensemble"
                else (probability >= THRESHOLD).astype(int)
            )
            rows.append(
                [
                    scope,
                    model,
                    len(group),
                    recall_score(labels, predicted),
                    precision_score(labels, predicted),
                    accuracy_score(labels, predicted),
                    roc_auc_score(labels, probability),
                ]
            )
        chance = random_baseline(labels, draws, seed)
        rows.append(
            [
                scope,
                "random",
                len(group),
                chance["recall"],
                chance["precision"],
                chance["accuracy"],
                chance["auc"],
            ]
        )
    return rows


def test_metrics_match_scikit_learn_and_the_csv_is_one_row_per_scope_and_model(evaluated, layers):
    table, document, results = evaluated["table"], evaluated["document"], evaluated["results"]
    assert table[0] == ["scope", "model", "n", "recall", "precision", "accuracy", "auc"] + [
        "coverage",
        "nominal",
        "mean_width",
    ]  # the last three on the intervals' rows only: this layer has no prob_low/prob_high
    expected = expected_rows(matched_cells(layers), DRAWS, 3)
    assert [row[:3] for row in table[1:]] == [
        [scope, model, str(n)] for scope, model, n, *_ in expected
    ]
    for written, wanted in zip(table[1:], expected, strict=True):
        assert [float(value) for value in written[3:7]] == pytest.approx(wanted[3:], abs=1e-12), (
            written
        )
        assert written[7:] == ["", "", ""]
    assert (
        document["format"] == "povmap-evaluation"
        and document["threshold"] == THRESHOLD
        and document["members"] == list(MEMBERS)
    )
    assert (
        document["data"]["common_cells"] == 200
        and document["data"]["truth_without_prediction"] == 15
    )
    assert document["data"]["predictions_without_truth"] == ROWS * COLUMNS - 200
    assert document["settings"]["threshold_source"] == "layer metadata povmap:threshold"
    ensemble = document["metrics"]["all"]["ensemble"]
    assert (results["RECALL"], results["PRECISION"], results["ACCURACY"], results["AUC"]) == (
        ensemble["recall"],
        ensemble["precision"],
        ensemble["accuracy"],
        ensemble["auc"],
    )
    assert (
        results["RANDOM_RECALL"] == document["metrics"]["all"]["random"]["recall"]
        and results["CELLS"] == 200
    )
    # ROC points and confusion counts of every member and the ensemble
    from sklearn.metrics import confusion_matrix, roc_curve

    cells = matched_cells(layers)
    for model in MEMBERS + ("ensemble",):
        probability = cells["prob_mean" if model == "ensemble" else f"prob_{model}"]
        false_positive_rate, true_positive_rate, _ = roc_curve(cells["observed"], probability)
        assert document["roc"][model]["fpr"] == pytest.approx(false_positive_rate.tolist())
        assert document["roc"][model]["tpr"] == pytest.approx(true_positive_rate.tolist())
        predicted = cells["pred"] if model == "ensemble" else (probability >= THRESHOLD).astype(int)
        values = document["metrics"]["all"][model]
        assert [[values["tn"], values["fp"]], [values["fn"], values["tp"]]] == confusion_matrix(
            cells["observed"], predicted
        ).tolist()
    assert not any("have no district" in note for note in document["notes"])  # filled from TRUTH


def test_hitmiss_layer_holds_the_prediction_fields_label_and_outcome_cell_by_cell(
    evaluated, layers
):
    from qgis.core import QgsVectorLayer

    hitmiss = read_grid(evaluated["results"]["HITMISS"])
    predictions = layers["predictions"]
    assert list(hitmiss.columns) == [
        column for column in predictions.columns if column != "geometry"
    ] + ["label", "outcome", "geometry"]
    cells = matched_cells(layers).set_index("cell_id")
    assert sorted(hitmiss["cell_id"]) == sorted(cells.index)
    outcome_of = {(1, 1): "hit", (1, 0): "miss", (0, 1): "false_alarm", (0, 0): "correct_rejection"}
    for row in hitmiss.itertuples():
        expected = cells.loc[row.cell_id]
        assert row.label == expected["observed"]
        assert row.outcome == outcome_of[(expected["observed"], expected["pred"])], row.cell_id
        assert row.prob_compact_wide == expected["prob_compact_wide"] and row.geometry.equals(
            expected["geometry"]
        )
    counts = hitmiss["outcome"].value_counts().to_dict()
    assert evaluated["document"]["outcomes"]["all"] == {
        outcome: counts.get(outcome, 0) for outcome in outcome_of.values()
    }
    assert (
        evaluated["results"]["HITS"] == counts["hit"]
        and evaluated["results"]["MISSES"] == counts["miss"]
    )
    # styled from the GeoPackage, each legend entry with its count
    layer = QgsVectorLayer(evaluated["results"]["HITMISS"], "hitmiss", "ogr")
    renderer = layer.renderer()
    assert renderer.type() == "categorizedSymbol" and renderer.classAttribute() == "outcome"
    labels = {category.value(): category.label() for category in renderer.categories()}
    assert labels["hit"] == f"Hit: poor, predicted poor ({counts['hit']})"
    assert labels["false_alarm"].endswith(f"({counts['false_alarm']})")


def render_to_array(path, width=800):
    """The layer drawn by QGIS's map renderer with its saved style, as RGB pixels."""
    from PIL import Image
    from qgis.core import QgsMapRendererParallelJob, QgsMapSettings, QgsVectorLayer
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor

    layer = QgsVectorLayer(path, "hitmiss", "ogr")
    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setDestinationCrs(layer.crs())
    settings.setExtent(layer.extent())
    settings.setOutputSize(
        QSize(width, int(width * layer.extent().height() / layer.extent().width()))
    )
    settings.setBackgroundColor(QColor("white"))
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    png = os.path.join(os.path.dirname(path), "hitmiss_render.png")
    assert job.renderedImage().save(png, "PNG")
    return np.asarray(Image.open(png).convert("RGB"))


def test_hitmiss_layer_renders_in_qgis_with_the_four_outcome_colours(evaluated):
    pixels = render_to_array(evaluated["results"]["HITMISS"]).reshape(-1, 3)
    colours = outcome_colours()
    assert set(colours) == {"hit", "miss", "false_alarm", "correct_rejection"}
    assert len({tuple(colour) for colour in colours.values()}) == 4
    counts = evaluated["document"]["outcomes"]["all"]
    for outcome, colour in colours.items():
        share = pixels_of(pixels, colour).mean()
        # each outcome covers about its share of the cells (outlines and the empty cells take the rest)
        expected = counts[outcome] / (ROWS * COLUMNS)
        assert 0.5 * expected < share < 1.1 * expected, (outcome, colour, share, expected)


def test_report_renders_in_headless_chromium_with_its_tables_and_decoded_images(
    evaluated, tmp_path
):
    need_chromium()
    from PIL import Image

    report = evaluated["results"]["REPORT"]
    with open(report, encoding="utf-8") as handle:
        source = handle.read()
    assert (
        not re.search(r'(src|href)="(https?:|file:|//)', source) and "<link" not in source
    )  # nothing outside the file
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', source)
    images = [Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB") for data in embedded]
    sizes = [image.size for image in images]
    assert (
        len(embedded) == 6
    )  # ROC, reliability, confusion matrices, predicted class, probability, hits and misses
    # each map is drawn with its own style: the probability map shows the graduated colours, the class map does not
    probability_colours = symbol_colours("prediction_probability")[0].values()
    class_map, probability_map = (np.asarray(image).reshape(-1, 3) for image in images[3:5])
    assert (
        sum(pixels_of(probability_map, colour).sum() > 500 for colour in probability_colours) >= 3
    )
    assert sum(pixels_of(class_map, colour).sum() > 500 for colour in probability_colours) == 0

    dom = chromium("--dump-dom", f"file://{report}", profile=tmp_path / "profile")
    decoded = re.findall(r'<img [^>]*data-natural-size="(\d+)x(\d+)"', dom)
    assert [
        (int(width), int(height)) for width, height in decoded
    ] == sizes  # every image decoded at its size
    assert "broken" not in re.findall(r'<img [^>]*class="([^"]*)"', dom)
    tables = re.findall(r"<table>.*?</table>", dom, flags=re.S)
    assert len(tables) == 7  # metrics, calibration, its bins, confusion counts, per district,
    # outcomes, outcomes per district
    metrics_table = tables[0]
    for model in MEMBERS + ("ensemble", f"random (median of {DRAWS})"):
        assert f'<td class="text">{model}</td>' in metrics_table
    ensemble = evaluated["document"]["metrics"]["all"]["ensemble"]
    assert (
        f"{ensemble['recall']:.3f}" in metrics_table and f"{ensemble['auc']:.3f}" in metrics_table
    )
    for district in ("Dadu", "Khairpur", "Sanghar"):
        assert district in tables[4]
    assert "Hit: poor, predicted poor" in tables[5]

    screenshot = tmp_path / "report.png"
    chromium(
        "--window-size=1200,9000",
        f"--screenshot={screenshot}",
        f"file://{report}",
        profile=tmp_path / "profile",
    )
    pixels = np.asarray(Image.open(screenshot).convert("RGB")).reshape(-1, 3)
    assert pixels.std() > 20  # not a blank page
    counts = evaluated["document"]["outcomes"]["all"]
    for (
        outcome,
        colour,
    ) in outcome_colours().items():  # the hit/miss map is drawn on the page: ~50 × 50 px a cell
        assert pixels_of(pixels, colour, tolerance=4).sum() > 1000 * counts[outcome] > 0, outcome


def test_run_as_the_dialog_runs_it_no_qt_object_crosses_threads(evaluated, layers):
    """The dialog prepares the algorithm in the main thread and runs it in a QgsTask's thread.
    The report's maps were drawn from copies of the prediction layer made in the main thread,
    styled and dropped in the task's: Qt warned "QObject::setParent: Cannot set parent, new
    parent is in a different thread" and QGIS now and then crashed delivering an event to
    such a layer. Every object the run makes must belong to the thread that uses it."""
    from qgis.core import (
        QgsApplication,
        QgsProcessingAlgRunnerTask,
        QgsProcessingContext,
        QgsProcessingFeedback,
        QgsTask,
    )
    from qgis.PyQt.QtCore import QCoreApplication, QThread, qInstallMessageHandler

    folder = layers["folder"] / "task"
    folder.mkdir()
    parameters = {
        "PREDICTIONS": layers["paths"]["predictions"],
        "TRUTH": layers["paths"]["truth"],
        "RANDOM_DRAWS": 20,
        "SEED": 3,
        "HITMISS": str(folder / "hitmiss.gpkg"),
        "REPORT": str(folder / "report.html"),
        "METRICS": str(folder / "metrics.json"),
    }
    messages = []
    previous = qInstallMessageHandler(lambda mode, context, message: messages.append(message))
    try:
        algorithm = QgsApplication.processingRegistry().createAlgorithmById("povmap:evaluate")
        context, feedback = QgsProcessingContext(), QgsProcessingFeedback()
        task = QgsProcessingAlgRunnerTask(algorithm, parameters, context, feedback)  # prepares
        finished = {}
        task.executed.connect(lambda ok, results: finished.update(ok=ok, results=results))
        QgsApplication.taskManager().addTask(task)
        for _ in range(12000):  # the main thread serves the print layouts while the task runs
            QCoreApplication.processEvents()
            if finished:
                break
            QThread.msleep(10)
    finally:
        qInstallMessageHandler(previous)
    assert finished.get("ok"), (finished, messages)
    assert task.status() == QgsTask.TaskStatus.Complete
    crossing = [message for message in messages if "different thread" in message]
    assert not crossing, crossing
    with open(parameters["REPORT"], encoding="utf-8") as handle:
        report = handle.read()
    assert len(re.findall(r'src="data:image/png;base64,', report)) == 6  # its three maps too
    assert "Maps drawn without a print layout" not in report


def test_truth_in_another_crs_is_matched_by_cell_id(evaluated, layers):
    other = evaluate(layers, "lonlat", truth="truth_lonlat")
    assert other["table"] == evaluated["table"]
    assert other["document"]["outcomes"] == evaluated["document"]["outcomes"]
    assert (
        "PREDICTIONS is in EPSG:32642 and TRUTH in EPSG:4326: cells are matched by cell_id"
        in other["feedback"].text()
    )
    assert read_grid(other["results"]["HITMISS"]).crs.to_epsg() == 32642


def test_one_class_truth_reports_defined_metrics_and_leaves_auc_empty(layers, evaluated):
    run = evaluate(layers, "one_class", truth="truth_one_class", draws=50)
    assert "one class" in " ".join(run["feedback"].warnings)
    rows = run["table"][1:]
    assert all(row[6] == "" for row in rows)  # AUC undefined everywhere
    assert all(row[3] != "" and row[5] != "" for row in rows)  # recall and accuracy defined
    all_ensemble = next(row for row in rows if row[:2] == ["all", "ensemble"])
    assert float(all_ensemble[3]) == pytest.approx(
        float(all_ensemble[5])
    )  # all poor: recall = accuracy
    assert (
        run["document"]["metrics"]["all"]["ensemble"]["auc"] is None
        and run["document"]["roc"]["ensemble"] is None
    )
    assert (
        "all · ensemble: AUC undefined: the cells hold one class only" in run["document"]["notes"]
    )
    assert run["results"]["AUC"] is None
    with open(run["results"]["METRICS_CSV"], encoding="utf-8") as handle:
        assert "nan" not in handle.read().lower()
    with open(run["results"]["REPORT"], encoding="utf-8") as handle:
        text = re.sub(r'src="data:[^"]+"', "", handle.read())
    assert "ROC curves are undefined" in text and not re.search(r"\bnan\b", text, flags=re.I)


@pytest.mark.parametrize(
    "case, parameter, message",
    [
        ("no_common_cells", "TRUTH", "no cell_id of the TRUTH layer is in PREDICTIONS"),
        ("truth_without_labels", "TRUTH", "has no label field"),
        ("predictions_without_probabilities", "PREDICTIONS", "has no prob_mean field"),
    ],
)
def test_bad_input_is_refused_naming_the_parameter_and_writes_nothing(
    evaluated, layers, tmp_path, case, parameter, message
):
    paths = layers["paths"]
    predictions, truth = {
        "no_common_cells": (paths["predictions"], paths["truth_elsewhere"]),
        "truth_without_labels": (paths["predictions"], paths["truth_unlabelled"]),
        "predictions_without_probabilities": (
            paths["predictions_without_probabilities"],
            paths["truth"],
        ),
    }[case]
    text = run_failing(
        "povmap:evaluate",
        {
            "PREDICTIONS": predictions,
            "TRUTH": truth,
            "HITMISS": str(tmp_path / "hitmiss.gpkg"),
            "REPORT": str(tmp_path / "report.html"),
            "METRICS": str(tmp_path / "metrics.json"),
        },
    )
    assert f"{parameter}: " in text and message in text, text
    if case == "no_common_cells":
        assert "EPSG:32642" in text and "EPSG:32643" in text  # the message says where each layer is
    assert os.listdir(tmp_path) == []


def test_unsurveyed_district_stage_with_the_bundled_model(povmap_provider, tiny_sample, tmp_path):
    """The paper's third stage on the tiny sample: grid the new ground-truth survey, predict it with the bundled model, evaluate."""
    from sklearn.metrics import roc_auc_score

    from povmap_qgis.core.chips.sampling import ChipInput, ChipOptions, sample_chips
    from povmap_qgis.core.grid.training_grid import TrainingGridOptions, build_training_grid
    from povmap_qgis.core.model.model_package import read_package
    from povmap_qgis.paths import bundled_model_path

    grid = str(tmp_path / "ground_truth_grid.gpkg")
    build_training_grid(
        TrainingGridOptions(
            points_path=os.path.join(tiny_sample, "synthetic_ground_truth_survey.gpkg"),
            score_field="score",
            output_path=grid,
            crs="EPSG:32642",
            districts_path=os.path.join(tiny_sample, "synthetic_districts.gpkg"),
            district_field="name",
        )
    )
    sample_chips(
        ChipOptions(
            grid_path=grid,
            output_path=str(tmp_path / "ground_truth.chips"),
            inputs=[
                ChipInput(
                    "daytime",
                    os.path.join(tiny_sample, "synthetic_daytime_s2l2a_10m.tif"),
                    [1, 2, 3],
                ),
                ChipInput(
                    "nightlights", os.path.join(tiny_sample, "synthetic_viirs_15arcsec.tif"), [1]
                ),
                ChipInput(
                    "accessibility",
                    os.path.join(tiny_sample, "synthetic_accessibility_30arcsec.tif"),
                    [1],
                ),
            ],
        )
    )
    predicted, _ = run_algorithm(
        "povmap:predict",
        {
            "CHIPS": str(tmp_path / "ground_truth.chips"),
            "GRID": grid,
            "OUTPUT": str(tmp_path / "predictions.gpkg"),
        },
    )
    results, feedback = run_algorithm(
        "povmap:evaluate",
        {
            "PREDICTIONS": predicted["OUTPUT"],
            "TRUTH": grid,
            "HITMISS": str(tmp_path / "hitmiss.gpkg"),
            "REPORT": str(tmp_path / "report.html"),
            "METRICS": str(tmp_path / "metrics.json"),
        },
    )
    with open(results["METRICS"], encoding="utf-8") as handle:
        document = json.load(handle)
    manifest = read_package(bundled_model_path())
    cells = read_grid(grid)
    assert results["CELLS"] == len(cells) == predicted["CELLS"]
    assert document["members"] == [member["name"] for member in manifest["members"]]
    assert (
        document["threshold"] == manifest["threshold"]
        and document["settings"]["threshold_source"] == "layer metadata povmap:threshold"
    )
    frame = read_grid(predicted["OUTPUT"])
    assert results["AUC"] == pytest.approx(roc_auc_score(frame["label"], frame["prob_mean"]))
    assert sum(document["outcomes"]["all"].values()) == len(cells)
    assert document["data"]["districts"] == sorted(set(cells["district"]))
    with open(results["REPORT"], encoding="utf-8") as handle:
        html = handle.read()
    assert "NOT FOR POLICY USE" in html  # the demonstration model's notice reaches the report
    # the report says, per district, how many labelled cells the model learned from there (none: an unsurveyed district)
    seen = manifest["training"]["districts_seen"]
    assert document["training_districts"] == seen
    section = html[html.index("Districts the model never trained on") :]
    # a package that records its training cells (since 0.3) says how many of each district's
    # cells were training cells; the bundled model may predate that: "unknown"
    known = document["training_cells"]["known"]
    among = document["training_cells"]["districts"]
    for district in set(cells["district"]):
        training = among.get(district, 0) if known else "unknown"
        if district in seen:
            shown = seen[district]
        elif not known:
            shown = r"none recorded \(training cells unknown\)"
        else:
            shown = "none: new to the model" if not training else "none by district, but"
        assert re.search(
            rf"<td[^>]*>{district}</td><td[^>]*>\d+</td><td[^>]*>{training}</td><td[^>]*>{shown}",
            section,
        ), district


def test_report_states_the_strict_rule_when_poor_is_above_the_cutoff(evaluated, layers):
    """POOR_BELOW=false: 'above the cutoff' strictly (a median equal to the cutoff is not poor)."""
    from povmap_qgis.core.geopackage import write_layer
    from povmap_qgis.paths import style_path

    path = layers["folder"] / "truth_poor_above.gpkg"
    metadata = {"povmap_grid_kind": "training", "cell_size": 1000.0, "cutoff": 19.0}
    write_layer(
        layers["truth"],
        str(path),
        style_path("training_grid"),
        "povmap training grid",
        metadata={**metadata, "poor_below": False},
    )
    layers["paths"]["truth_poor_above"] = str(path)
    run = evaluate(layers, "poor_above", truth="truth_poor_above", draws=20)
    with open(run["results"]["REPORT"], encoding="utf-8") as handle:
        report = handle.read()
    assert "median score is above the cutoff 19.0 (strictly)" in report
    assert "at or above" not in report


def test_training_cells_are_never_called_new_and_are_counted_apart(evaluated, layers):
    """Predictions whose training_cell field marks the cells the model learned from: the report
    says how many compared cells those were, never calls a district holding some new (even one
    the training grid filed none under: border cells) and gives the other cells' numbers,
    which scikit-learn reproduces; without the field it says this cannot be known."""
    from sklearn.metrics import recall_score, roc_auc_score

    from povmap_qgis.core.geopackage import write_layer
    from povmap_qgis.paths import style_path

    predictions = layers["predictions"].copy()
    columns = (predictions["cell_id"] % 10**9) - 500000000
    # Dadu (columns 0-6) trained on; in Sanghar (14-19) none by district, but column 14 holds
    # training cells (a border); Khairpur not at all
    predictions["training_cell"] = ((columns <= 3) | (columns == 14)).astype("int32")
    path = layers["folder"] / "predictions_seen.gpkg"
    write_layer(
        predictions,
        str(path),
        style_path("prediction_class"),
        "povmap prediction (class)",
        metadata={
            "povmap:model": "/nowhere/demo.povmodel",
            "povmap:threshold": THRESHOLD,
            "povmap:members": ",".join(MEMBERS),
            "povmap_training_districts": json.dumps({"Dadu": 40}),
            "povmap_training_cells": json.dumps({"known": True, "count": 0}),
        },
    )
    layers["paths"]["predictions_seen"] = str(path)
    saved = layers["paths"]["predictions"]
    layers["paths"]["predictions"] = str(path)
    try:
        run = evaluate(layers, "seen", draws=20)
    finally:
        layers["paths"]["predictions"] = saved
    cells = matched_cells(layers).merge(predictions[["cell_id", "training_cell"]], on="cell_id")
    seen = cells["training_cell"] == 1
    document = run["document"]
    assert document["training_cells"]["known"] is True
    assert document["training_cells"]["compared"] == int(seen.sum()) > 0
    fresh = cells[~seen]
    new_cells = document["metrics"]["new_cells"]["ensemble"]
    assert new_cells["n"] == len(fresh)
    assert new_cells["auc"] == pytest.approx(roc_auc_score(fresh["observed"], fresh["prob_mean"]))
    assert new_cells["recall"] == pytest.approx(recall_score(fresh["observed"], fresh["pred"]))
    assert ["all (new cells)", "ensemble"] == [
        row[:2] for row in run["table"] if row[:2] == ["all (new cells)", "ensemble"]
    ][0]
    with open(run["results"]["REPORT"], encoding="utf-8") as handle:
        html = handle.read()
    section = html[html.index("Districts the model never trained on") :]
    assert f"{int(seen.sum())} of the {len(cells)} compared cells were training cells" in section
    border = int((seen & (cells["district"] == "Sanghar")).sum())
    assert re.search(
        rf"<td[^>]*>Sanghar</td><td[^>]*>\d+</td><td[^>]*>{border}</td>"
        rf"<td[^>]*>none by district, but {border} of its cells were training cells</td>",
        section,
    ), section[:3000]
    assert re.search(r"<td[^>]*>Khairpur</td>.*?none: new to the model", section)
    assert "Sanghar: the model learned from no cell filed under this district" in section
    # the Sanghar row gives the numbers of its cells that were not training cells
    sanghar = fresh[fresh["district"] == "Sanghar"]
    district_new = document["metrics"]["districts_new_cells"]["Sanghar"]["ensemble"]
    assert district_new["n"] == len(sanghar)
    assert district_new["auc"] == pytest.approx(
        roc_auc_score(sanghar["observed"], sanghar["prob_mean"])
    )
    # a layer without the field (an older package): it cannot be known, and the report says so
    with open(evaluated["results"]["REPORT"], encoding="utf-8") as handle:
        old = handle.read()
    assert "was a training cell of the model cannot be known" in old
    assert evaluated["document"]["training_cells"]["known"] is False
