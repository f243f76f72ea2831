"""Chained steps: the chip store and the model package wired in the Graphical Modeler,
the survey pipeline's .model3 file, and povmap:mappoverty (grid → chips → predict) in one run."""

import json
import os

import numpy as np
import pytest
from conftest import ROOT, run_qgis_process
from helpers import read_grid
from qgis_helpers import CapturingFeedback, run_algorithm, run_failing

# trains real models or runs whole pipelines: deselect with -m "not slow" for a quick loop
pytestmark = pytest.mark.slow

MODEL_FILE = os.path.join(ROOT, "resources", "models", "survey_pipeline.model3")
UNSURVEYED = "Sorabad"  # the tiny sample's district nobody surveyed


def _source(child_id, output):
    from qgis.core import QgsProcessingModelChildParameterSource

    return [QgsProcessingModelChildParameterSource.fromChildOutput(child_id, output)]


def _input(name):
    from qgis.core import QgsProcessingModelChildParameterSource

    return [QgsProcessingModelChildParameterSource.fromModelParameter(name)]


def _static(value):
    from qgis.core import QgsProcessingModelChildParameterSource

    return [QgsProcessingModelChildParameterSource.fromStaticValue(value)]


def _chain_in_code():
    """samplechips → train → predict → evaluate, each step fed by the previous one's outputs."""
    from qgis.core import (
        QgsProcessing,
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterFeatureSource,
        QgsProcessingParameterRasterLayer,
    )

    model = QgsProcessingModelAlgorithm("chain", "tests")
    for definition in (
        QgsProcessingParameterFeatureSource(
            "GRID", "Labelled grid", [QgsProcessing.SourceType.TypeVectorPolygon]
        ),
        QgsProcessingParameterRasterLayer("NIGHTLIGHTS", "Night lights"),
    ):
        model.addModelParameter(definition, QgsProcessingModelParameter(definition.name()))
    steps = [
        ("chips", "samplechips", {"GRID": _input("GRID"), "NIGHTLIGHTS": _input("NIGHTLIGHTS")}),
        (
            "train",
            "train",
            {
                "CHIPS": _source("chips", "OUTPUT"),
                "GRID": _input("GRID"),
                "PRESET": _static("compact"),  # a name, as on the command line
                "EPOCHS": _static(1),
            },
        ),
        (
            "predict",
            "predict",
            {
                "MODEL": _source("train", "OUTPUT"),
                "CHIPS": _source("chips", "OUTPUT"),
                "GRID": _input("GRID"),
            },
        ),
        (
            "evaluate",
            "evaluate",
            {"PREDICTIONS": _source("predict", "OUTPUT"), "TRUTH": _input("GRID")},
        ),
    ]
    outputs = {
        "chips": {"OUTPUT": "Chip store"},
        "train": {"OUTPUT": "Model package"},
        "predict": {"OUTPUT": "Predictions"},
        "evaluate": {"METRICS": "Metrics", "REPORT": "Report", "HITMISS": "Hits and misses"},
    }
    for child_id, algorithm, sources in steps:
        child = QgsProcessingModelChildAlgorithm(f"povmap:{algorithm}")
        child.setChildId(child_id)
        child.setDescription(algorithm)
        for name, source in sources.items():
            child.addParameterSources(name, source)
        model_outputs = {}
        for name, label in outputs[child_id].items():
            output = QgsProcessingModelOutput(label, label)
            output.setChildId(child_id)
            output.setChildOutputName(name)
            model_outputs[label] = output
        child.setModelOutputs(model_outputs)
        model.addChildAlgorithm(child)
    model.updateDestinationParameters()
    return model


def _run_model(model, parameters):
    import processing
    from qgis.core import QgsProcessingContext

    context = QgsProcessingContext()
    feedback = CapturingFeedback()
    ok, message = model.checkParameterValues(parameters, context)
    assert ok, message
    return processing.run(model, parameters, context=context, feedback=feedback), feedback


def test_the_modeler_offers_the_chip_store_and_the_model_package_to_the_next_step(
    povmap_provider,
):
    """What the 3.22 Graphical Modeler lists for a step's CHIPS and MODEL: the previous steps' folders."""
    from qgis.core import QgsApplication, QgsProcessingContext
    from qgis.gui import QgsGui
    from qgis.PyQt.QtWidgets import QComboBox

    model = _chain_in_code()
    registry = QgsApplication.processingRegistry()

    def offered(child_id, algorithm, name):
        widget = QgsGui.processingGuiRegistry().createModelerParameterWidget(
            model,
            child_id,
            registry.algorithmById(algorithm).parameterDefinition(name),
            QgsProcessingContext(),
        )
        return [
            combo.itemText(index)
            for combo in widget.findChildren(QComboBox)
            for index in range(combo.count())
        ]

    assert any(
        "Chip store (folder ending in .chips)" in text and "samplechips" in text
        for text in offered("train", "povmap:train", "CHIPS")
    )
    model_choices = offered("predict", "povmap:predict", "MODEL")
    assert any("Model package (.povmodel folder)" in text for text in model_choices)
    assert any("Chip store" in text for text in offered("predict", "povmap:predict", "CHIPS"))


def test_a_model_built_in_code_chains_chips_train_predict_evaluate(
    povmap_provider, tiny_sample, tiny_chips, tmp_path
):
    model = _chain_in_code()
    results, feedback = _run_model(
        model,
        {
            "GRID": tiny_chips["grid"],
            "NIGHTLIGHTS": os.path.join(tiny_sample, "synthetic_viirs_15arcsec.tif"),
            "chips:Chip store": str(tmp_path / "night"),  # .chips added
            "train:Model package": str(tmp_path / "model"),
            "predict:Predictions": str(tmp_path / "predictions.gpkg"),
            "evaluate:Metrics": str(tmp_path / "metrics.json"),
            "evaluate:Report": str(tmp_path / "report.html"),
            "evaluate:Hits and misses": str(tmp_path / "hitmiss.gpkg"),
        },
    )
    assert results["chips:Chip store"] == str(tmp_path / "night.chips")
    assert results["train:Model package"] == str(tmp_path / "model.povmodel")
    with open(tmp_path / "model.povmodel" / "manifest.json", encoding="utf-8") as handle:
        assert [spec["name"] for spec in json.load(handle)["inputs"]] == ["nightlights"]
    grid = read_grid(tiny_chips["grid"])
    predictions = read_grid(str(tmp_path / "predictions.gpkg"))
    assert sorted(predictions["cell_id"]) == sorted(grid["cell_id"])
    with open(tmp_path / "metrics.json", encoding="utf-8") as handle:
        metrics = json.load(handle)
    assert "ensemble" in json.dumps(metrics)
    assert os.path.getsize(tmp_path / "report.html") > 1000, feedback.text()


def test_the_survey_pipeline_model_file_runs_headless(povmap_provider, tiny_sample, tmp_path):
    from qgis.core import QgsProcessingModelAlgorithm

    model = QgsProcessingModelAlgorithm()
    assert model.fromFile(MODEL_FILE), MODEL_FILE
    assert [child.algorithmId() for child in _in_order(model)] == [
        "povmap:buildtraininggrid",
        "povmap:samplechips",
        "povmap:train",
        "povmap:buildtraininggrid",
        "povmap:samplechips",
        "povmap:predict",
        "povmap:evaluate",
    ]
    assert all(definition.help() for definition in model.parameterDefinitions())
    results, feedback = _run_model(
        model,
        {
            "SURVEY": os.path.join(tiny_sample, "synthetic_survey.gpkg"),
            "SCORE_FIELD": "score",
            "GROUND_TRUTH": os.path.join(tiny_sample, "synthetic_ground_truth_survey.gpkg"),
            "TRUTH_SCORE_FIELD": "score",
            "DISTRICTS": os.path.join(tiny_sample, "synthetic_districts.gpkg"),
            "DISTRICT_FIELD": "name",
            "NIGHTLIGHTS": os.path.join(tiny_sample, "synthetic_viirs_15arcsec.tif"),
            "PRESET": 1,  # compact
            "EPOCHS": 1,
            "train:Model package": str(tmp_path / "model"),
            "predict:Predictions": str(tmp_path / "predictions.gpkg"),
            "evaluate:Hits and misses": str(tmp_path / "hitmiss.gpkg"),
            "evaluate:Report": str(tmp_path / "report.html"),
            "evaluate:Metrics": str(tmp_path / "metrics.json"),
        },
    )
    assert os.path.isfile(tmp_path / "model.povmodel" / "manifest.json")
    predictions = read_grid(str(tmp_path / "predictions.gpkg"))
    assert len(predictions) > 0 and set(predictions["district"]) == {UNSURVEYED}
    hitmiss = read_grid(str(tmp_path / "hitmiss.gpkg"))
    assert sorted(hitmiss["cell_id"]) == sorted(predictions["cell_id"])  # same CRS and ids
    assert os.path.getsize(tmp_path / "report.html") > 1000, feedback.text()


def _in_order(model):
    """The model's child algorithms in an order their dependencies allow (child ids break ties)."""
    done, ordered = set(), []
    children = model.childAlgorithms()
    while len(ordered) < len(children):
        ready = sorted(
            child_id
            for child_id in children
            if child_id not in done and model.dependsOnChildAlgorithms(child_id) <= done
        )
        first = min(ready, key=lambda child_id: (child_id.startswith("truth"), child_id))
        done.add(first)
        ordered.append(children[first])
    return ordered


@pytest.fixture(scope="module")
def unsurveyed_area(tiny_sample):
    path = os.path.join(tiny_sample, "synthetic_districts.gpkg")
    return f"{path}|layername=synthetic_districts|subset=\"name\" = '{UNSURVEYED}'"


def _rasters(sample):
    return {
        "DAYTIME": os.path.join(sample, "synthetic_daytime_s2l2a_10m.tif"),
        "NIGHTLIGHTS": os.path.join(sample, "synthetic_viirs_15arcsec.tif"),
        "ACCESSIBILITY": os.path.join(sample, "synthetic_accessibility_30arcsec.tif"),
    }


def test_map_poverty_gives_what_the_three_steps_give_separately(
    povmap_provider, tiny_sample, unsurveyed_area, tmp_path
):
    feedback = CapturingFeedback()
    percents = []
    feedback.progressChanged.connect(percents.append)
    results, _ = run_algorithm(
        "povmap:mappoverty",
        {
            "AREA": unsurveyed_area,
            "DISTRICT_FIELD": "name",
            **_rasters(tiny_sample),
            "NIGHTLIGHTS_RESAMPLING": "bilinear",  # names work
            "OUTPUT": str(tmp_path / "mapped.gpkg"),
        },  # CHIPS left out: a temporary folder
        feedback,
    )
    assert results["OUTPUT"] == str(tmp_path / "mapped.gpkg")
    assert results["CHIPS"].endswith(".chips") and os.path.isdir(results["CHIPS"])
    assert not results["CHIPS"].startswith(str(tmp_path))
    assert percents and max(percents) <= 100 and percents[-1] >= 99

    grid, _ = run_algorithm(
        "povmap:buildpredictiongrid",
        {"AREA": unsurveyed_area, "DISTRICT_FIELD": "name", "OUTPUT": str(tmp_path / "grid.gpkg")},
    )
    chips, _ = run_algorithm(
        "povmap:samplechips",
        {"GRID": grid["OUTPUT"], **_rasters(tiny_sample), "OUTPUT": str(tmp_path / "separate")},
    )
    run_algorithm(
        "povmap:predict",
        {
            "CHIPS": chips["OUTPUT"],
            "GRID": grid["OUTPUT"],
            "OUTPUT": str(tmp_path / "separate.gpkg"),
        },
    )
    mapped = read_grid(str(tmp_path / "mapped.gpkg")).sort_values("cell_id")
    separate = read_grid(str(tmp_path / "separate.gpkg")).sort_values("cell_id")
    assert len(mapped) == results["CELLS"] > 0 and set(mapped["district"]) == {UNSURVEYED}
    assert mapped["cell_id"].tolist() == separate["cell_id"].tolist()
    probabilities = [column for column in separate.columns if column.startswith("prob_")]
    assert "prob_mean" in probabilities
    np.testing.assert_array_equal(mapped[probabilities].values, separate[probabilities].values)
    assert mapped["pred"].tolist() == separate["pred"].tolist()
    assert results["PREDICTED_POOR"] == int(separate["pred"].sum())


def test_map_poverty_from_the_rasters_gives_the_same_predictions_and_no_chip_store(
    povmap_provider, tiny_sample, unsurveyed_area, tmp_path
):
    common = {"AREA": unsurveyed_area, "DISTRICT_FIELD": "name", **_rasters(tiny_sample)}
    via_store, _ = run_algorithm(
        "povmap:mappoverty",
        {**common, "CHIPS": str(tmp_path / "kept"), "OUTPUT": str(tmp_path / "store.gpkg")},
    )
    direct, feedback = run_algorithm(
        "povmap:mappoverty",
        {
            **common,
            "SOURCE": "rasters",
            "CHIPS": str(tmp_path / "not_written"),
            "OUTPUT": str(tmp_path / "rasters.gpkg"),
        },
    )
    assert not direct.get("CHIPS") and "no chips are stored" in feedback.text()
    assert sorted(os.listdir(tmp_path)) == [
        "kept.chips",
        "rasters.gpkg",
        "rasters.qml",
        "store.gpkg",
        "store.qml",
    ]
    stored = read_grid(via_store["OUTPUT"]).sort_values("cell_id")
    read = read_grid(direct["OUTPUT"]).sort_values("cell_id")
    assert stored["cell_id"].tolist() == read["cell_id"].tolist() and len(read) > 0
    probabilities = [column for column in stored.columns if column.startswith("prob_")]
    np.testing.assert_allclose(read[probabilities].values, stored[probabilities].values, atol=2e-5)
    assert read["pred"].tolist() == stored["pred"].tolist()
    assert direct["CELLS"] == via_store["CELLS"]


class ProgressTextFeedback(CapturingFeedback):
    """Keeps the progress texts too (QGIS shows them under the progress bar)."""

    def __init__(self):
        super().__init__()
        self.progress_texts = []

    def setProgressText(self, text):  # noqa: N802 (QGIS API)
        self.progress_texts.append(text)
        super().setProgressText(text)


def test_map_poverty_on_spark_gives_the_local_engine_predictions_and_a_time_left(
    povmap_provider, tiny_sample, unsurveyed_area, tmp_path, monkeypatch
):
    """ENGINE=spark by name reaches samplechips and predict; each step's progress text estimates
    the time left (shown from the first seconds here instead of after 10 s)."""
    import shutil

    from povmap_qgis.core import progress

    pytest.importorskip("pyspark")
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        pytest.skip("no Java runtime")
    monkeypatch.setattr(progress, "TIME_LEFT_AFTER_S", 0.0)
    monkeypatch.setattr(progress, "TIME_LEFT_EVERY_S", 0.0)
    common = {"AREA": unsurveyed_area, "DISTRICT_FIELD": "name", **_rasters(tiny_sample)}
    local, _ = run_algorithm(
        "povmap:mappoverty", {**common, "OUTPUT": str(tmp_path / "local.gpkg")}
    )
    feedback = ProgressTextFeedback()
    spark, _ = run_algorithm(
        "povmap:mappoverty",
        {
            **common,
            "ENGINE": "spark",
            "SPARK_MASTER": "local[2]",
            "CHIPS": str(tmp_path / "spark"),
            "OUTPUT": str(tmp_path / "spark.gpkg"),
        },
        feedback,
    )
    said = feedback.text()
    assert said.count("Spark (local[2])") == 2, said  # samplechips and predict
    assert os.path.isdir(spark["CHIPS"]) and spark["CHIPS"].endswith("spark.chips")
    assert feedback.progress_texts and all(
        text.startswith("about ") and text.endswith(" left") for text in feedback.progress_texts
    ), feedback.progress_texts
    expected = read_grid(local["OUTPUT"]).sort_values("cell_id")
    found = read_grid(spark["OUTPUT"]).sort_values("cell_id")
    assert expected["cell_id"].tolist() == found["cell_id"].tolist() and len(found) > 0
    probabilities = [column for column in expected.columns if column.startswith("prob_")]
    np.testing.assert_allclose(
        found[probabilities].values, expected[probabilities].values, atol=2e-5
    )
    assert found["pred"].tolist() == expected["pred"].tolist()
    assert spark["CELLS"] == local["CELLS"]


def test_map_poverty_asks_for_the_rasters_the_model_needs_before_any_work(
    povmap_provider, tiny_sample, unsurveyed_area, tmp_path
):
    message = run_failing(
        "povmap:mappoverty",
        {
            "AREA": unsurveyed_area,
            "NIGHTLIGHTS": os.path.join(tiny_sample, "synthetic_viirs_15arcsec.tif"),
            "OUTPUT": str(tmp_path / "mapped.gpkg"),
            "CHIPS": str(tmp_path / "store"),
        },
    )
    assert "DAYTIME" in message and "ACCESSIBILITY" in message and "Nothing was written" in message
    assert not os.listdir(tmp_path)


def test_map_poverty_refuses_an_edited_model_package_before_any_work(
    povmap_provider, tiny_sample, unsurveyed_area, tmp_path
):
    """MODEL is read as predict reads it (hashes, schema), not past its checks."""
    import json
    import shutil

    from povmap_qgis.paths import bundled_model_path

    package = tmp_path / "edited.povmodel"
    shutil.copytree(bundled_model_path(), package)
    manifest = json.loads((package / "manifest.json").read_text(encoding="utf-8"))
    manifest["resolution"] = 5.0  # an edit that would change every chip the run samples
    (package / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    output = tmp_path / "out"
    output.mkdir()
    message = run_failing(
        "povmap:mappoverty",
        {
            "AREA": unsurveyed_area,
            "MODEL": str(package),
            "DAYTIME": os.path.join(tiny_sample, "synthetic_daytime_s2l2a_10m.tif"),
            "NIGHTLIGHTS": os.path.join(tiny_sample, "synthetic_viirs_15arcsec.tif"),
            "ACCESSIBILITY": os.path.join(tiny_sample, "synthetic_accessibility_30arcsec.tif"),
            "OUTPUT": str(output / "mapped.gpkg"),
            "CHIPS": str(output / "store"),
        },
    )
    assert "MODEL" in message and "manifest_sha256" in message, message
    assert "Nothing was written" in message and not os.listdir(output)


def test_map_poverty_has_help_on_every_parameter(povmap_provider):
    from qgis.core import QgsApplication

    algorithm = QgsApplication.processingRegistry().algorithmById("povmap:mappoverty")
    for definition in algorithm.parameterDefinitions():
        assert len(definition.help()) > 20, definition.name()
    assert "bilinear (1)" in algorithm.parameterDefinition("DAYTIME_RESAMPLING").help()


def test_map_poverty_stops_on_cancel_and_writes_no_predictions(
    povmap_provider, tiny_sample, unsurveyed_area, tmp_path
):
    from qgis.core import QgsProcessingException

    feedback = CapturingFeedback(cancel_at_progress=40)  # while the chips are sampled
    with pytest.raises(QgsProcessingException, match="Cancelled"):
        run_algorithm(
            "povmap:mappoverty",
            {
                "AREA": unsurveyed_area,
                **_rasters(tiny_sample),
                "OUTPUT": str(tmp_path / "mapped.gpkg"),
                "CHIPS": str(tmp_path / "store"),
            },
            feedback,
        )
    assert not os.path.exists(tmp_path / "mapped.gpkg")


def test_map_poverty_on_the_command_line_with_names(tiny_sample, tmp_path):
    sample = tiny_sample
    completed = run_qgis_process(
        "run",
        "povmap:mappoverty",
        "--",
        f"AREA={sample}/synthetic_districts.gpkg|layername=synthetic_districts"
        f"|subset=\"name\" = '{UNSURVEYED}'",
        "DISTRICT_FIELD=name",
        *(f"{name}={path}" for name, path in _rasters(sample).items()),
        "DAYTIME_RESAMPLING=average",
        f"CHIPS={tmp_path / 'sorabad'}",
        f"OUTPUT={tmp_path / 'sorabad.gpkg'}",
    )
    assert "PREDICTED_POOR" in completed.stdout
    assert os.path.isdir(tmp_path / "sorabad.chips")
    predictions = read_grid(str(tmp_path / "sorabad.gpkg"))
    assert len(predictions) > 0 and set(predictions["district"]) == {UNSURVEYED}
