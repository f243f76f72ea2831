"""Training, model packages and prediction: real TensorFlow on the tiny sample, through the worker."""

import glob
import json
import os
import shutil

import numpy as np
import pytest
from helpers import carried_styles, read_grid
from qgis_helpers import CapturingFeedback, run_algorithm, run_failing

from povmap_qgis.core.names import RANDOM_DRAWS

# trains real models or runs whole pipelines: deselect with -m "not slow" for a quick loop
pytestmark = pytest.mark.slow

TINY_EPOCHS = 2


@pytest.fixture(scope="module")
def trained(tiny_chips, qgis_processing):
    """A two-member compact package trained through Processing and the worker."""
    from qgis.core import QgsApplication

    from povmap_qgis.processing.provider import PovmapProvider

    if QgsApplication.processingRegistry().providerById("povmap") is None:
        provider = PovmapProvider()
        trained.provider = provider
        QgsApplication.processingRegistry().addProvider(provider)
    output = str(tiny_chips["folder"] / "tiny.povmodel")
    results, feedback = run_algorithm(
        "povmap:train",
        {
            "CHIPS": tiny_chips["chips"],
            "GRID": tiny_chips["grid"],
            "PRESET": 1,
            "MEMBERS": "compact_cnn,compact_residual",
            "EPOCHS": TINY_EPOCHS,
            "SEED": 3,
            "OUTPUT": output,
        },
    )
    return results, feedback


def manifest_of(path):
    with open(os.path.join(path, "manifest.json"), encoding="utf-8") as handle:
        return json.load(handle)


def test_train_writes_a_model_package_with_metrics_hashes_and_versions(trained, tiny_chips):
    from povmap_qgis.core.model.model_package import sha256_of

    results, feedback = trained
    manifest = manifest_of(results["OUTPUT"])
    assert (
        results["OUTPUT"].endswith("tiny.povmodel")
        and results["MEMBERS_TRAINED"] == "compact_cnn,compact_residual"
    )
    assert manifest["format_version"] == "1.2" and manifest["preset"] == "compact"
    assert [spec["name"] for spec in manifest["inputs"]] == [
        "daytime",
        "nightlights",
        "accessibility",
    ]
    assert (
        manifest["inputs"][0]["shape"] == [100, 100, 3]
        and manifest["chip_size"] == 100
        and manifest["resolution"] == 10.0
    )
    assert (
        manifest["label"]["cutoff"] == 19.0
        and manifest["label"]["poor_below"] is True
        and manifest["threshold"] == 0.5
    )
    assert set(manifest["normalisation"]) == {"daytime", "nightlights", "accessibility"}
    for member in manifest["members"]:
        assert member["sha256"] == sha256_of(os.path.join(results["OUTPUT"], member["weights"]))
        assert 1 <= member["epochs_trained"] <= TINY_EPOCHS
    holdout = manifest["metrics"]["holdout"]
    assert set(holdout) == {"compact_cnn", "compact_residual", "ensemble", "baseline", "random"}
    assert holdout["ensemble"]["n"] == manifest["training"]["cells"]["test"] > 0
    assert results["ACCURACY"] == pytest.approx(holdout["ensemble"]["accuracy"])
    assert (
        holdout["random"]["draws"] == RANDOM_DRAWS
    )  # AUCs: against scikit-learn in test_same_seed_…
    assert (
        manifest["software"]["tensorflow"]
        and manifest["software"]["keras"]
        and manifest["software"]["device"] == "cpu"
    )
    # the split follows the paper's proportions and normalisation uses training cells only
    cells = manifest["training"]["cells"]
    assert cells["train"] > cells["test"] > 0 and cells["validation"] > 0
    assert (
        sum(manifest["training"]["districts_seen"].values()) == cells["train"] + cells["validation"]
    )
    assert "member 1/2 compact_cnn epoch 1" in feedback.text()
    assert not glob.glob(str(tiny_chips["folder"] / ".tiny.partial-*"))


def test_predict_writes_the_prediction_layer_styled(trained, tiny_chips, tmp_path):
    from qgis.core import QgsVectorLayer

    results, _ = trained
    predicted, _ = run_algorithm(
        "povmap:predict",
        {
            "MODEL": results["OUTPUT"],
            "CHIPS": tiny_chips["chips"],
            "GRID": tiny_chips["grid"],
            "OUTPUT": str(tmp_path / "pred.gpkg"),
        },
    )
    frame = read_grid(predicted["OUTPUT"])
    grid = read_grid(tiny_chips["grid"])
    assert len(frame) == len(grid) == predicted["CELLS"]
    for field in (
        "cell_id",
        "district",
        "prob_compact_cnn",
        "prob_compact_residual",
        "prob_mean",
        "votes",
        "pred",
        "disagreement",
    ):
        assert field in frame.columns
    members = frame[["prob_compact_cnn", "prob_compact_residual"]].to_numpy()
    stack = manifest_of(results["OUTPUT"])["stacking"]
    if stack.get("method") == "nonnegative_logistic_regression":
        # prob_raw is the stacking written out: sigmoid(intercept + sum of weight x logit) over the
        # members' and the baseline's raw probabilities (the baseline's from the cells' chips)
        from povmap_qgis.core.chips.chip_features import package_features
        from povmap_qgis.core.chips.chip_store import ChipStore
        from povmap_qgis.core.model import baseline

        store = ChipStore(tiny_chips["chips"])
        order = np.argsort(store.cell_ids)
        rows = order[np.searchsorted(store.cell_ids[order], frame["cell_id"].to_numpy())]
        assert (store.cell_ids[rows] == frame["cell_id"].to_numpy()).all()
        package = manifest_of(results["OUTPUT"])
        raw = {
            "compact_cnn": members[:, 0],
            "compact_residual": members[:, 1],
            "baseline": baseline.probabilities(
                package["baseline"], package_features(store, rows, package)
            ),
        }
        z = stack["intercept"] + sum(
            weight
            * np.log(np.clip(raw[name], 1e-6, 1 - 1e-6) / (1 - np.clip(raw[name], 1e-6, 1 - 1e-6)))
            for name, weight in zip(stack["candidates"], stack["weights"], strict=True)
        )
        assert np.allclose(frame["prob_raw"], 1 / (1 + np.exp(-z)), atol=1e-3)
    else:  # no stacking fitted: the members' mean
        assert np.allclose(frame["prob_raw"], members.mean(axis=1), atol=1e-4)
    from povmap_qgis.core.model.calibration import calibrate

    calibration = manifest_of(results["OUTPUT"])["calibration"]
    assert np.allclose(frame["prob_mean"], calibrate(frame["prob_raw"], calibration), atol=2e-3)
    assert (frame["votes"] == (members >= 0.5).sum(axis=1)).all()  # votes: information
    # the class: the calibrated mean at the package's decision threshold (without TARGET_RECALL:
    # the training cells' share of poor cells, before undersampling)
    manifest = manifest_of(results["OUTPUT"])
    decision = manifest["decision_threshold"]
    training = manifest["training"]
    assert decision == training["poor"]["train"] / training["cells"]["train"]
    assert (frame["pred"] == (frame["prob_mean"] >= decision).astype(int)).all()
    assert np.allclose(frame["disagreement"], members.std(axis=1), atol=1e-4)
    assert predicted["PREDICTED_POOR"] == int(frame["pred"].sum())
    layer = QgsVectorLayer(predicted["OUTPUT"], "pred", "ogr")
    assert (
        layer.renderer().type() == "categorizedSymbol"
        and layer.renderer().classAttribute() == "pred"
    )
    styles = carried_styles(predicted["OUTPUT"])
    assert {"povmap probability (mean of members)", "povmap member disagreement"} <= set(styles)
    from povmap_qgis.core.geopackage import read_layer_metadata

    metadata = read_layer_metadata(predicted["OUTPUT"], "pred")
    assert (
        json.loads(metadata["povmap_training_districts"])
        == manifest_of(results["OUTPUT"])["training"]["districts_seen"]
    )


def test_tampered_or_mismatched_packages_are_refused(trained, tiny_chips, tmp_path):
    results, _ = trained

    def predict_fails(model, chips=tiny_chips["chips"]):
        return run_failing(
            "povmap:predict",
            {
                "MODEL": model,
                "CHIPS": chips,
                "GRID": tiny_chips["grid"],
                "OUTPUT": str(tmp_path / "p.gpkg"),
            },
        )

    altered = str(tmp_path / "altered.povmodel")
    shutil.copytree(results["OUTPUT"], altered)
    weights = os.path.join(altered, "compact_cnn.weights.h5")
    with open(weights, "r+b") as handle:  # flip 16 bytes in the middle of the weights
        handle.seek(os.path.getsize(weights) // 2)
        original = handle.read(16)
        handle.seek(os.path.getsize(weights) // 2)
        handle.write(bytes(byte ^ 0xFF for byte in original))
    assert "do not match their sha256" in predict_fails(altered)
    os.remove(weights)
    assert "is missing" in predict_fails(altered)
    future = str(tmp_path / "future.povmodel")
    shutil.copytree(results["OUTPUT"], future)
    manifest = manifest_of(future)
    manifest["format_version"] = "9.0"
    with open(os.path.join(future, "manifest.json"), "w", encoding="utf-8") as handle:
        json.dump(manifest, handle)
    assert "version 9.0" in predict_fails(future)
    assert "has no 'daytime' input" in predict_fails(results["OUTPUT"], tiny_chips["night"])
    assert not os.path.exists(tmp_path / "p.gpkg")


def test_cancel_stops_training_and_leaves_no_package(povmap_provider, tiny_chips, tmp_path):
    from qgis.core import QgsProcessingException

    feedback = CapturingFeedback(cancel_at_progress=8)
    with pytest.raises(QgsProcessingException, match="Cancelled"):
        run_algorithm(
            "povmap:train",
            {
                "CHIPS": tiny_chips["chips"],
                "GRID": tiny_chips["grid"],
                "MEMBERS": "compact_cnn",
                "EPOCHS": 50,
                "OUTPUT": str(tmp_path / "stopped.povmodel"),
            },
            feedback,
        )
    assert not os.listdir(tmp_path)


def train_in_worker(**options):
    """The core train step in a real worker process (TensorFlow never loads into the QGIS test process)."""
    from povmap_qgis import runner

    return runner.run_worker("train", options)


def test_same_seed_same_weights_and_options_work(tiny_chips, tmp_path):
    """Training twice with one seed gives identical weights; night lights only, district holdout, target recall."""
    from povmap_qgis.core.model import model_package
    from povmap_qgis.core.model.model_package import read_package

    districts = sorted(set(read_grid(tiny_chips["grid"])["district"]))
    runs = []
    for name in ("a", "b"):
        summary = train_in_worker(
            chips_path=tiny_chips["night"],
            grid_path=tiny_chips["grid"],
            output_path=str(tmp_path / f"{name}.povmodel"),
            members=["compact_cnn"],
            epochs=1,
            seed=7,
            split="districts",
            test_districts=[districts[0]],
            target_recall=0.8,
            # one member of one epoch: a stacking of it and the baseline is nearly constant, and
            # the layer's rounded probabilities then tie where train's did not; the stacking has
            # its own tests (test_stacking.py, and the bundled package through predict above)
            stacking="off",
        )
        runs.append(read_package(summary["output"]))
    assert runs[0]["members"][0]["sha256"] == runs[1]["members"][0]["sha256"]
    manifest = runs[0]
    assert [spec["name"] for spec in manifest["inputs"]] == ["nightlights"]
    assert manifest["training"]["test_districts"] == [districts[0]]
    assert manifest["threshold_rule"].startswith("target recall 0.8")
    test_cells = (read_grid(tiny_chips["grid"])["district"] == districts[0]).sum()
    assert manifest["training"]["cells"]["test"] == test_cells
    # the held-out district is recorded as unseen: the evaluation's unsurveyed-district section relies on it
    seen = manifest["training"]["districts_seen"]
    assert districts[0] not in seen and set(seen) == set(districts[1:])
    assert (
        sum(seen.values())
        == manifest["training"]["cells"]["train"] + manifest["training"]["cells"]["validation"]
    )
    # predicted and evaluated, the held-out district is reported as new to the model
    from povmap_qgis import runner
    from povmap_qgis.core.validation.evaluation_report import report_document

    predictions = str(tmp_path / "held_out.gpkg")
    runner.run_worker(
        "predict",
        {
            "model_path": os.path.join(tmp_path, "a.povmodel"),
            "chips_path": tiny_chips["night"],
            "grid_path": tiny_chips["grid"],
            "output_path": predictions,
        },
    )
    summary = runner.run_worker(
        "evaluate",
        {
            "predictions_path": predictions,
            "truth_path": tiny_chips["grid"],
            "hitmiss_path": str(tmp_path / "hitmiss.gpkg"),
            "metrics_path": str(tmp_path / "metrics.json"),
            "random_draws": 10,
        },
    )
    # the recorded holdout metrics are those of the held-out district's cells: scikit-learn on
    # the prediction layer (calibrated prob_mean, per-member prob_*) gives the same AUCs
    from sklearn.metrics import roc_auc_score

    truth = read_grid(tiny_chips["grid"])[["cell_id", "district", "label"]]
    predicted = ["cell_id", "prob_mean", "prob_compact_cnn", "chip_flagged"]
    layer = read_grid(predictions)[predicted].merge(truth, on="cell_id")
    held_out = layer[(layer["district"] == districts[0]) & (layer["chip_flagged"] == 0)]
    holdout = manifest["metrics"]["holdout"]
    assert len(held_out) == holdout["ensemble"]["n"] > 0
    assert holdout["ensemble"]["auc"] == pytest.approx(
        roc_auc_score(held_out["label"], held_out["prob_mean"]), abs=0.01
    )
    assert holdout["compact_cnn"]["auc"] == pytest.approx(
        roc_auc_score(held_out["label"], held_out["prob_compact_cnn"]), abs=0.01
    )
    section = next(
        section
        for section in report_document(summary)["sections"]
        if section.title == "Districts the model never trained on"
    )
    table = next(block for block in section.blocks if hasattr(block, "rows"))
    rows = {row[0]: row[3] for row in table.rows}
    assert rows == {
        district: seen.get(district, "none: new to the model") for district in districts
    }
    assert any(districts[0] in getattr(block, "text", "") for block in section.blocks)
    # the package lists its training cells (training + validation); the prediction layer marks
    # them, and the evaluation counts the compared ones apart: the test cells stay new
    ids, record = model_package.read_training_cells(manifest)
    cells_seen = (
        manifest["training"]["cells"]["train"] + manifest["training"]["cells"]["validation"]
    )
    assert record["count"] == len(ids) == cells_seen
    flags = read_grid(predictions)[["cell_id", "training_cell"]]
    assert set(flags.loc[flags["training_cell"] == 1, "cell_id"]) == set(ids.tolist())
    compared = layer.merge(flags, on="cell_id")
    assert summary["training_cells"]["compared"] == int(compared["training_cell"].sum())
    assert not compared.loc[compared["district"] == districts[0], "training_cell"].any()
    fresh = compared[compared["training_cell"] == 0]
    assert summary["metrics"]["new_cells"]["ensemble"]["auc"] == pytest.approx(
        roc_auc_score(fresh["label"], fresh["prob_mean"])
    )


def test_bad_training_input_is_named(tiny_chips, tmp_path):
    from povmap_qgis.runner import WorkerError

    def fails(parameter, text, **options):
        arguments = {
            "chips_path": tiny_chips["chips"],
            "grid_path": tiny_chips["grid"],
            "output_path": str(tmp_path / "x.povmodel"),
            "epochs": 1,
        }
        arguments.update(options)
        with pytest.raises(WorkerError) as caught:
            train_in_worker(**arguments)
        assert (
            caught.value.kind == "input"
            and caught.value.parameter == parameter
            and text in str(caught.value)
        ), str(caught.value)
        assert not os.listdir(tmp_path) or os.listdir(tmp_path) == ["keras-home"]

    fails("MEMBERS", "unknown member", members=["vgg16"])
    fails("PRESET", "unknown preset", preset="huge")
    fails(
        "BALANCE",
        "unknown balance 'oversample' (undersample or class_weights)",
        balance="oversample",
    )
    fails(
        "TEST_DISTRICTS",
        "no labelled cells in Atlantis",
        split="districts",
        test_districts=["Atlantis"],
    )
    keras_home = tmp_path / "keras-home"
    os.environ["KERAS_HOME"] = str(keras_home)
    # an empty cache and no way to download (a closed loopback port): offline, said at once
    os.environ["POVMAP_IMAGENET_BASE_URL"] = "http://127.0.0.1:9/"
    try:
        fails(
            "PRETRAINED",
            "this machine seems offline",
            preset="paper",
            members=["resnet50"],
            pretrained="imagenet",
        )
    finally:
        del os.environ["KERAS_HOME"], os.environ["POVMAP_IMAGENET_BASE_URL"]
    fails("GRID", "no label field", grid_path=tiny_chips["grid_unlabelled"])


@pytest.mark.parametrize(
    "check",
    [
        "paper_members_build_run_and_take_a_training_step",
        "pretrained_backbone_weights_come_from_a_local_file",
        "architectures_are_what_their_versions_recorded",
    ],
)
def test_keras_checks_outside_qgis(check, tmp_path):
    """tests/keras_checks.py, run by the worker Python (TensorFlow's HDF5 must not load next to QGIS's)."""
    import subprocess
    import sys

    import povmap_qgis

    build = os.path.dirname(os.path.dirname(os.path.abspath(povmap_qgis.__file__)))
    completed = subprocess.run(
        [
            sys.executable,
            os.path.join(os.path.dirname(__file__), "keras_checks.py"),
            check,
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, PYTHONPATH=build, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    assert completed.returncode == 0 and completed.stdout.strip().endswith(f"{check}: ok"), (
        completed.stdout + completed.stderr
    )


def test_checkenvironment_reports_the_worker(povmap_provider):
    from importlib.metadata import version

    results, feedback = run_algorithm("povmap:checkenvironment", {})
    assert results["TENSORFLOW"] == version("tensorflow-cpu") and results["PYTHON"]
    assert "GPU:" in feedback.text() and isinstance(results["GPU"], bool)


def test_checkenvironment_names_what_a_bare_python_lacks(povmap_provider, monkeypatch):
    """Debian's own python3 has no TensorFlow: the check says so instead of failing."""
    monkeypatch.setenv("POVMAP_PYTHON", "/usr/bin/python3")
    results, feedback = run_algorithm("povmap:checkenvironment", {})
    assert results["TENSORFLOW"] == "not installed" and results["PYTHON"] == "/usr/bin/python3"
    assert "tensorflow" in " ".join(feedback.warnings) and "scripts/setup" in " ".join(
        feedback.warnings
    )


def test_training_without_tensorflow_says_what_to_install(
    povmap_provider, tiny_chips, tmp_path, monkeypatch
):
    monkeypatch.setenv("POVMAP_PYTHON", "/usr/bin/python3")
    message = run_failing(
        "povmap:train",
        {
            "CHIPS": tiny_chips["chips"],
            "GRID": tiny_chips["grid"],
            "OUTPUT": str(tmp_path / "m.povmodel"),
        },
    )
    assert "lacks the package" in message and "requirements.txt" in message
    assert not os.listdir(tmp_path)


def test_the_bundled_model_is_a_small_verified_demonstration(
    povmap_provider, tiny_chips, tmp_path, monkeypatch
):
    """Also: paths relative to the working directory, as typed on a qgis_process command line, reach the worker whole."""
    from povmap_qgis.core.model.model_package import read_package
    from povmap_qgis.paths import bundled_model_path

    manifest = read_package(bundled_model_path())  # hashes checked
    size = sum(
        os.path.getsize(os.path.join(bundled_model_path(), name))
        for name in os.listdir(bundled_model_path())
    )
    assert size < 20e6
    assert "NOT FOR POLICY USE" in manifest["notice"] and "synthetic" in manifest["notice"]
    # the compact preset's CNNs (and, since stacking, stats_gbm once the lead retrains it)
    assert [member["architecture"] for member in manifest["members"]][:3] == [
        "compact_cnn",
        "compact_wide",
        "compact_residual",
    ]
    monkeypatch.chdir(tiny_chips["folder"])
    results, feedback = run_algorithm(
        "povmap:predict",
        {"CHIPS": "tiny.chips", "GRID": "training_grid.gpkg", "OUTPUT": str(tmp_path / "p.gpkg")},
    )
    assert "NOT FOR POLICY USE" in " ".join(feedback.warnings)
    frame = read_grid(results["OUTPUT"])
    assert {"prob_compact_cnn", "prob_compact_wide", "prob_compact_residual", "pred"} <= set(
        frame.columns
    )
    # trained on the demo sample, it separates the tiny sample's poor cells better than chance
    from sklearn.metrics import roc_auc_score

    assert (
        roc_auc_score(frame["label"], frame["prob_mean"]) > 0.6
    )  # the grid's own label field is kept


HAND_NORMALISED_PREDICTION = """
import json, sys
import numpy as np
from povmap_qgis.core.model import model_package

package, store, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
manifest = model_package.read_package(package)
chips = {}
for spec in manifest["inputs"]:  # the store's band order is the one the model learned
    values = np.load(f"{store}/{spec['name']}.npy", mmap_mode="r")[:rows].astype("float64")
    entry = manifest["normalisation"][spec["name"]]
    if entry.get("transform") == "log1p":
        values = np.log1p(values / np.asarray(entry["scale"]))
    values = (values - np.asarray(entry["mean"])) / np.asarray(entry["std"])
    chips[spec["name"]] = np.nan_to_num(values, nan=0.0).astype("float32")
out = {}
for member, model in zip(manifest["members"], model_package.load_members(manifest)):
    out[member["name"]] = model.predict(chips, verbose=0).reshape(-1).tolist()
print("EXPECTED=" + json.dumps(out))
"""


def test_predict_equals_keras_on_chips_normalised_by_hand(trained, tiny_chips, tmp_path):
    """Each member's probabilities in the prediction layer are what Keras gives on the store's
    chips normalised here with the manifest's numbers: a wrong band order, transform or
    normalisation at prediction time fails this test. (Keras runs in a subprocess.)"""
    import subprocess
    import sys

    results, _ = trained
    rows = 40
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            HAND_NORMALISED_PREDICTION,
            results["OUTPUT"],
            tiny_chips["chips"],
            str(rows),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(
            os.environ,
            PYTHONPATH=os.path.dirname(os.path.dirname(_plugin_file())),
            TF_CPP_MIN_LOG_LEVEL="2",
        ),
    )
    line = [text for text in completed.stdout.splitlines() if text.startswith("EXPECTED=")]
    assert line, completed.stdout + completed.stderr
    expected = json.loads(line[0][len("EXPECTED=") :])
    predicted, _ = run_algorithm(
        "povmap:predict",
        {
            "MODEL": results["OUTPUT"],
            "CHIPS": tiny_chips["chips"],
            "GRID": tiny_chips["grid"],
            "OUTPUT": str(tmp_path / "hand.gpkg"),
        },
    )
    frame = read_grid(predicted["OUTPUT"]).set_index("cell_id")
    cell_ids = np.load(os.path.join(tiny_chips["chips"], "cell_ids.npy"))[:rows]
    assert set(expected) == {"compact_cnn", "compact_residual"}
    for name, probabilities in expected.items():
        written = frame.loc[cell_ids, f"prob_{name}"].to_numpy()
        np.testing.assert_allclose(written, probabilities, atol=2e-5, err_msg=name)


def _plugin_file():
    import povmap_qgis

    return povmap_qgis.__file__


def test_a_separable_toy_store_is_learnt(tiny_chips, tmp_path):
    """Poor cells dim, the others bright (with noise): the compact member must find it."""
    from povmap_qgis.core.chips.chip_store_writer import ChipStoreWriter

    grid = read_grid(tiny_chips["grid"])
    labels = grid["label"].to_numpy()
    rng = np.random.default_rng(7)
    size = 24
    level = np.where(labels == 1, 0.3, 2.0)[:, None, None, None]
    chips = (level + rng.normal(0, 0.15, (len(grid), size, size, 1))).astype("float16")
    inputs = [
        {
            "name": "nightlights",
            "source": "toy",
            "bands": [1],
            "dtype": "float16",
            "resampling": "bilinear",
        }
    ]
    settings = {
        "grid": tiny_chips["grid"],
        "resolution": 1000 / size,
        "cell_size": 1000.0,
        "crs": "EPSG:32642",
    }
    writer = ChipStoreWriter(
        str(tmp_path / "toy.chips"), grid["cell_id"].to_numpy("int64"), inputs, size, settings
    ).open()
    writer.write(
        np.arange(len(grid)), {"nightlights": chips}, np.zeros((len(grid), 1), dtype="float32")
    )
    store = writer.finish()
    result = train_in_worker(
        chips_path=store,
        grid_path=tiny_chips["grid"],
        output_path=str(tmp_path / "toy.povmodel"),
        members=["compact_cnn"],
        epochs=8,
        seed=1,
    )
    assert result["metrics"]["compact_cnn"]["auc"] >= 0.95, result["metrics"]
