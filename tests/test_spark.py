"""ENGINE=spark: the same chips and predictions as the local engine, with Spark in local mode.

One SparkSession for the module (two task threads, a failed task retried once:
``local[2,2]``; Spark's local mode ignores spark.task.maxFailures and reads the
retries from the master URL). Fault injection is real: a task's Python worker
is killed on its first attempt and Spark reruns it.
"""

import filecmp
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from required_tools import need_spark

# trains real models or runs whole pipelines: deselect with -m "not slow" for a quick loop
pytestmark = pytest.mark.slow

need_spark()


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    from povmap_qgis.core.engines import spark_session

    marker = str(tmp_path_factory.mktemp("spark-fault") / "crash")
    previous = {
        name: os.environ.get(name)
        for name in (spark_session.EXTRA_CONF_VARIABLE, spark_session.FAULT_VARIABLE)
    }
    os.environ[spark_session.EXTRA_CONF_VARIABLE] = (
        "spark.ui.enabled=false;spark.driver.memory=512m;spark.sql.shuffle.partitions=2"
    )
    os.environ[spark_session.FAULT_VARIABLE] = marker  # inherited by the executors
    session, _ = spark_session.spark_session("local[2,2]", "povmap-tests")
    session.sparkContext.setLogLevel("ERROR")
    yield {"session": session, "fault_marker": marker}
    session.stop()
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def tiny_inputs(sample):
    """The inputs of the tiny_chips fixture's store (conftest.py)."""
    from povmap_qgis.core.chips.sampling import ChipInput

    return [
        ChipInput("daytime", os.path.join(sample, "synthetic_daytime_s2l2a_10m.tif"), [1, 2, 3]),
        ChipInput("nightlights", os.path.join(sample, "synthetic_viirs_15arcsec.tif"), [1]),
        ChipInput(
            "accessibility", os.path.join(sample, "synthetic_accessibility_30arcsec.tif"), [1]
        ),
    ]


def sample_on_spark(tiny_sample, tiny_chips, output, reporter=None):
    from povmap_qgis.core.engines.steps import ChipOptions, sample_chips

    return sample_chips(
        ChipOptions(
            grid_path=tiny_chips["grid"],
            inputs=tiny_inputs(tiny_sample),
            output_path=str(output),
            engine="spark",
        ),
        reporter,
    )


def assert_same_store(local, other):
    names = sorted(os.listdir(local))
    assert names == sorted(os.listdir(other))
    assert {"manifest.json", "cell_ids.npy", "nodata_fraction.npy", "daytime.npy"} <= set(names)
    for name in names:
        assert filecmp.cmp(os.path.join(local, name), os.path.join(other, name), shallow=False), (
            name
        )
    with open(os.path.join(other, "manifest.json"), encoding="utf-8") as handle:
        statistics = {spec["name"]: spec["statistics"] for spec in json.load(handle)["inputs"]}
    assert statistics["daytime"]["count"][0] > 0


def test_spark_chip_store_is_byte_identical_to_the_local_engine(
    spark, tiny_sample, tiny_chips, tmp_path
):
    summary = sample_on_spark(tiny_sample, tiny_chips, tmp_path / "spark.chips")
    assert summary["sampled"] == summary["cells"] > 0
    assert_same_store(tiny_chips["chips"], summary["output"])


def test_a_task_whose_worker_dies_is_retried_and_the_store_is_still_identical(
    spark, tiny_sample, tiny_chips, tmp_path
):
    crash = spark["fault_marker"] + ".sample"
    open(crash, "w").close()
    summary = sample_on_spark(tiny_sample, tiny_chips, tmp_path / "retried.chips")
    assert not os.path.exists(crash), "the fault was not injected"
    assert_same_store(tiny_chips["chips"], summary["output"])


def test_a_failed_job_keeps_the_finished_tasks_and_the_next_run_resumes(
    spark, tiny_sample, tiny_chips, tmp_path
):
    from povmap_qgis.core.chips.chip_store import partial_store_path
    from povmap_qgis.core.progress import RecordingReporter

    crash = spark["fault_marker"] + ".sample.last"  # the last task's worker dies every attempt
    open(crash, "w").close()
    output = tmp_path / "resumed.chips"
    try:
        with pytest.raises(RuntimeError, match="the Spark job failed: Task .* failed 2 times"):
            sample_on_spark(tiny_sample, tiny_chips, output)
    finally:
        os.remove(crash)
    assert not output.exists() and os.path.isdir(partial_store_path(str(output)))
    reporter = RecordingReporter()
    summary = sample_on_spark(tiny_sample, tiny_chips, output, reporter)
    assert 0 < summary["resumed_cells"] < summary["cells"]
    assert summary["sampled"] + summary["resumed_cells"] == summary["cells"]
    assert any("Resuming the chip store" in message for message in reporter.infos)
    # Chips and the manifest's statistics (combined per cell in row order) alike.
    assert_same_store(tiny_chips["chips"], str(output))


def test_cancel_cancels_the_spark_job_and_publishes_nothing(
    spark, tiny_sample, tiny_chips, tmp_path
):
    from povmap_qgis.core.errors import PovmapCanceledError
    from povmap_qgis.core.progress import Reporter

    class CancelAtOnce(Reporter):
        def canceled(self):
            return True

    output = tmp_path / "canceled.chips"
    with pytest.raises(PovmapCanceledError):
        sample_on_spark(tiny_sample, tiny_chips, output, CancelAtOnce())
    assert not output.exists()
    assert not [name for name in os.listdir(tmp_path) if not name.startswith(".")]
    tracker = spark["session"].sparkContext.statusTracker()
    assert tracker.getActiveJobsIds() == []


def run_cli(*arguments, environment=None):
    """``python -m povmap_qgis.cli …`` on the built plugin (TensorFlow stays out of this process)."""
    from conftest import BUILD_DIR

    completed = subprocess.run(
        [sys.executable, "-m", "povmap_qgis.cli", *arguments],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=BUILD_DIR,
        env=dict(os.environ, PYTHONPATH=BUILD_DIR, **(environment or {})),
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1]), completed.stderr


def test_spark_predictions_equal_local_predictions_through_the_command_line(
    spark, tiny_chips, tmp_path
):
    """The bundled demo ensemble on the tiny store; on Spark one task's worker dies once."""
    from helpers import read_grid

    crash = spark["fault_marker"] + ".predict"
    open(crash, "w").close()
    frames = {}
    for engine in ("local", "spark"):
        output = str(tmp_path / f"{engine}.gpkg")
        result, log = run_cli(
            "predict",
            "--chips",
            tiny_chips["chips"],
            "--grid",
            tiny_chips["grid"],
            "--output",
            output,
            "--batch-rows",
            "16",
            "--engine",
            engine,
            *(["--spark-master", "local[2,2]"] if engine == "spark" else []),
        )
        assert result["cells"] > 16 and result["output"] == output
        frames[engine] = read_grid(output)
    assert "Spark (local[2,2])" in log
    assert not os.path.exists(crash), "the fault was not injected"
    local, spark_frame = frames["local"], frames["spark"]
    assert list(local.columns) == list(spark_frame.columns)
    assert local["cell_id"].tolist() == spark_frame["cell_id"].tolist()
    probabilities = [name for name in local.columns if name.startswith("prob_")]
    assert "prob_compact_cnn" in probabilities and "prob_mean" in probabilities
    for name in probabilities:
        np.testing.assert_allclose(spark_frame[name], local[name], atol=2e-5, err_msg=name)
    assert (spark_frame["pred"] == local["pred"]).mean() >= 0.99


def test_extra_settings_are_read_and_bad_ones_name_the_variable():
    from povmap_qgis.core.engines.spark_session import extra_conf
    from povmap_qgis.core.errors import PovmapInputError

    assert extra_conf("spark.executor.memory=4g; spark.task.cpus = 2;") == {
        "spark.executor.memory": "4g",
        "spark.task.cpus": "2",
    }
    with pytest.raises(PovmapInputError, match="POVMAP_SPARK_CONF"):
        extra_conf("spark.executor.memory")


def test_engine_spark_by_name_through_processing_and_the_worker(
    povmap_provider, tiny_sample, tiny_chips, tmp_path
):
    """ENGINE=spark typed as a name, as on a qgis_process command line; progress reaches QGIS."""
    from qgis_helpers import run_algorithm

    results, feedback = run_algorithm(
        "povmap:samplechips",
        {
            "GRID": tiny_chips["grid"],
            "DAYTIME": os.path.join(tiny_sample, "synthetic_daytime_s2l2a_10m.tif"),
            "NIGHTLIGHTS": os.path.join(tiny_sample, "synthetic_viirs_15arcsec.tif"),
            "ACCESSIBILITY": os.path.join(tiny_sample, "synthetic_accessibility_30arcsec.tif"),
            "ENGINE": "spark",
            "SPARK_MASTER": "local[2]",
            "OUTPUT": str(tmp_path / "processing.chips"),
        },
    )
    assert "Spark (local[2])" in feedback.text()
    for name in ("cell_ids.npy", "daytime.npy", "nightlights.npy", "nodata_fraction.npy"):
        assert filecmp.cmp(
            os.path.join(tiny_chips["chips"], name),
            os.path.join(results["OUTPUT"], name),
            shallow=False,
        ), name
    with open(os.path.join(results["OUTPUT"], "manifest.json"), encoding="utf-8") as handle:
        spark_manifest = json.load(handle)
    with open(os.path.join(tiny_chips["chips"], "manifest.json"), encoding="utf-8") as handle:
        local_manifest = json.load(handle)
    assert [spec["statistics"] for spec in spark_manifest["inputs"]] == [
        spec["statistics"] for spec in local_manifest["inputs"]
    ]


def test_without_pyspark_engine_spark_says_what_to_install(monkeypatch):
    from povmap_qgis.core.engines.spark_session import spark_session
    from povmap_qgis.core.errors import PovmapInputError

    monkeypatch.setitem(sys.modules, "pyspark.sql", None)  # as if PySpark were not installed
    with pytest.raises(PovmapInputError) as error:
        spark_session("local[2]")
    message = str(error.value)
    assert message.startswith("ENGINE:")
    assert "pyspark==4.1.4" in message and "openjdk-17-jre-headless" in message
    assert "--no-spark" in message


def test_a_failed_task_reads_as_the_executor_python_error():
    from povmap_qgis.core.engines.spark_session import task_error
    from povmap_qgis.core.errors import PovmapInputError

    jvm_text = (
        "An error occurred while calling collectAndServe.\n"
        ": org.apache.spark.SparkException: Job aborted: Task 0 failed 2 times, "
        "org.apache.spark.api.python.PythonException: Traceback (most recent call last):\n"
        '  File "worker.py", line 3386, in main\n'
        "povmap_qgis.core.errors.PovmapInputError: MODEL: '/m.povmodel': the weights of member "
        "'a' do not match their sha256\n\n\tat org.apache.spark.api.python.BasePythonRunner\n"
    )
    error = task_error(RuntimeError(jvm_text))
    assert isinstance(error, PovmapInputError) and error.parameter == "MODEL"
    assert str(error).startswith("MODEL: '/m.povmodel': the weights")
    other = task_error(
        RuntimeError(jvm_text.replace("povmap_qgis.core.errors.PovmapInputError: MODEL", "OSError"))
    )
    assert str(other).startswith("a Spark task failed after its retries: OSError: ")
    assert "\tat org.apache" not in str(other)


def test_cancel_in_qgis_while_spark_samples_stops_the_worker_and_publishes_nothing(
    povmap_provider, tiny_sample, tiny_chips, tmp_path
):
    from qgis.core import QgsProcessingException
    from qgis_helpers import CapturingFeedback, run_algorithm

    class CancelOnceSparkRuns(CapturingFeedback):
        def pushInfo(self, info):  # noqa: N802 (QGIS API)
            super().pushInfo(info)
            if "Spark (" in info:  # said just before the job starts
                self.cancel()

    feedback = CancelOnceSparkRuns()
    with pytest.raises(QgsProcessingException, match="Cancelled"):
        run_algorithm(
            "povmap:samplechips",
            {
                "GRID": tiny_chips["grid"],
                "DAYTIME": os.path.join(tiny_sample, "synthetic_daytime_s2l2a_10m.tif"),
                "ENGINE": "spark",
                "SPARK_MASTER": "local[2]",
                "OUTPUT": str(tmp_path / "canceled.chips"),
            },
            feedback,
        )
    assert "Spark (local[2])" in feedback.text()
    assert not os.path.exists(tmp_path / "canceled.chips")
    assert not [name for name in os.listdir(tmp_path) if not name.startswith(".")]


def test_the_spark_settings_of_the_provider_reach_the_worker(
    povmap_provider, tiny_sample, tiny_chips, tmp_path, monkeypatch
):
    """Settings ▸ Options ▸ Processing ▸ Poverty mapping ▸ Spark settings, when the variable is unset."""
    from processing.core.ProcessingConfig import ProcessingConfig
    from qgis_helpers import run_failing

    from povmap_qgis.processing.settings import SPARK_CONF

    monkeypatch.delenv(SPARK_CONF, raising=False)
    ProcessingConfig.setSettingValue(SPARK_CONF, "spark.ui.enabled=false;not-a-setting")
    try:
        message = run_failing(
            "povmap:samplechips",
            {
                "GRID": tiny_chips["grid"],
                "NIGHTLIGHTS": os.path.join(tiny_sample, "synthetic_viirs_15arcsec.tif"),
                "ENGINE": "spark",
                "OUTPUT": str(tmp_path / "settings.chips"),
            },
        )
    finally:
        ProcessingConfig.setSettingValue(SPARK_CONF, "")
    assert "POVMAP_SPARK_CONF: 'not-a-setting' is not key=value" in message
    assert not os.path.exists(tmp_path / "settings.chips")


# --- predicting straight from the rasters (no chip store) ------------------------------


class DiskWatch:
    """Polls folders while a run goes on: the most bytes they held and any chip-like names.

    Spark removes its scratch folders when it stops, so looking only afterwards
    would miss chips written and deleted during the run.
    """

    CHIP_LIKE = (".npy", ".chips", ".partial")

    def __init__(self, *folders):
        import threading

        self.folders, self.peak_bytes, self.chip_like = folders, 0, set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self):
        while not self._stop.wait(0.1):
            total = 0
            for folder in self.folders:
                for parent, directories, files in os.walk(folder):
                    for name in directories + files:
                        if name.endswith(self.CHIP_LIKE) or ".chips." in name:
                            self.chip_like.add(os.path.join(parent, name))
                    for name in files:
                        try:
                            total += os.path.getsize(os.path.join(parent, name))
                        except OSError:
                            pass  # removed meanwhile
            self.peak_bytes = max(self.peak_bytes, total)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *_):
        self._stop.set()
        self._thread.join()


def store_bytes(store):
    return sum(os.path.getsize(os.path.join(store, name)) for name in os.listdir(store))


def assert_same_predictions(expected, found):
    """Every field equal; the members' probabilities (and what derives from them) within 2e-5."""
    assert list(expected.columns) == list(found.columns)
    assert expected["cell_id"].tolist() == found["cell_id"].tolist()
    probabilities = [name for name in expected.columns if name.startswith("prob_")]
    assert {"prob_compact_cnn", "prob_mean", "prob_baseline"} <= set(probabilities)
    for name in probabilities + ["disagreement"]:
        np.testing.assert_allclose(found[name], expected[name], atol=2e-5, err_msg=name)
    for name in ("out_of_range", "chip_flagged", "n_obs", "label", "district"):
        assert found[name].tolist() == expected[name].tolist(), name
    assert (found["pred"] == expected["pred"]).mean() >= 0.99


def local_store_predictions(chips, grid, output):
    from helpers import read_grid

    run_cli("predict", "--chips", chips, "--grid", grid, "--output", output, "--batch-rows", "16")
    return read_grid(output)


def test_predict_from_rasters_on_spark_through_processing_equals_the_store_and_writes_no_chips(
    spark, povmap_provider, tiny_sample, tiny_chips, tmp_path, monkeypatch
):
    """SOURCE=rasters ENGINE=spark by name, as on a qgis_process command line; one task crashes once."""
    from helpers import read_grid
    from qgis_helpers import run_algorithm

    expected = local_store_predictions(
        tiny_chips["chips"], tiny_chips["grid"], str(tmp_path / "store.gpkg")
    )
    # the session's shared folder (other tests' outputs may be there too): nothing added to it
    shared_folder_before = set(os.listdir(tiny_chips["folder"]))
    output_folder, scratch = tmp_path / "rasters", tmp_path / "scratch"
    output_folder.mkdir()
    for name in ("spark", "tmp"):
        (scratch / name).mkdir(parents=True)
    monkeypatch.setenv("SPARK_LOCAL_DIRS", str(scratch / "spark"))  # Spark's scratch space
    monkeypatch.setenv("TMPDIR", str(scratch / "tmp"))  # the worker's and Python's temp files
    crash = spark["fault_marker"] + ".predict"
    open(crash, "w").close()
    output = str(output_folder / "predictions.gpkg")
    with DiskWatch(output_folder, scratch) as watch:
        results, feedback = run_algorithm(
            "povmap:predict",
            {
                "SOURCE": "rasters",
                "GRID": tiny_chips["grid"],
                "DAYTIME": os.path.join(tiny_sample, "synthetic_daytime_s2l2a_10m.tif"),
                "NIGHTLIGHTS": os.path.join(tiny_sample, "synthetic_viirs_15arcsec.tif"),
                "ACCESSIBILITY": os.path.join(tiny_sample, "synthetic_accessibility_30arcsec.tif"),
                "ENGINE": "spark",
                "SPARK_MASTER": "local[2,2]",
                "OUTPUT": output,
            },
        )
    assert not os.path.exists(crash), "the fault was not injected"
    assert "no chips are stored" in feedback.text() and "Spark (local[2,2])" in feedback.text()
    assert results["CELLS"] == len(expected) > 16
    assert_same_predictions(expected, read_grid(output))
    # No chips anywhere: none beside the output, in the temp folders or the store's folder.
    assert sorted(os.listdir(output_folder)) == ["predictions.gpkg", "predictions.qml"]
    assert set(os.listdir(tiny_chips["folder"])) == shared_folder_before
    assert not [path for path in watch.chip_like if tiny_chips["folder"] not in path], (
        watch.chip_like
    )
    chips_bytes = store_bytes(tiny_chips["chips"])
    assert watch.peak_bytes - os.path.getsize(output) < chips_bytes / 10, (
        f"{watch.peak_bytes:,} bytes at peak beside {os.path.getsize(output):,} of predictions; "
        f"the chips are {chips_bytes:,} bytes"
    )


def widened_nightlights(tiny_sample, folder):
    """The tiny night lights times 100,000: radiances beyond float16's 65,504."""
    import rasterio

    source = os.path.join(tiny_sample, "synthetic_viirs_15arcsec.tif")
    target = os.path.join(folder, "bright_viirs.tif")
    with rasterio.open(source) as dataset:
        profile = dataset.profile | {"dtype": "float32"}
        values = dataset.read(1, masked=True).astype("float32") * 100_000
    with rasterio.open(target, "w", **profile) as dataset:
        dataset.write(values.filled(profile.get("nodata") or 0), 1)
    assert float(values.max()) > 65_504
    return target


def test_an_input_beyond_float16_is_widened_on_spark_as_by_the_local_engine(
    spark, tiny_sample, tiny_chips, tmp_path
):
    """float16 -> float32 on Spark: in the store (byte-identical to the local one), and when
    predicting from the rasters (equal to predictions from that store); nothing stored there."""
    from helpers import read_grid

    from povmap_qgis.core.engines.steps import ChipOptions, sample_chips
    from povmap_qgis.core.progress import RecordingReporter

    inputs = tiny_inputs(tiny_sample)
    inputs[1].path = widened_nightlights(tiny_sample, str(tmp_path))
    stores, logs = {}, {}
    for engine in ("local", "spark"):
        reporter = RecordingReporter()
        stores[engine] = sample_chips(
            ChipOptions(
                grid_path=tiny_chips["grid"],
                inputs=inputs,
                output_path=str(tmp_path / f"{engine}.chips"),
                engine=engine,
            ),
            reporter,
        )["output"]
        logs[engine] = " ".join(reporter.infos)
        with open(os.path.join(stores[engine], "manifest.json"), encoding="utf-8") as handle:
            dtypes = {spec["name"]: spec["dtype"] for spec in json.load(handle)["inputs"]}
        assert dtypes == {
            "daytime": "float16",
            "nightlights": "float32",
            "accessibility": "float16",
        }
        assert "beyond float16" in logs[engine] and "as float32" in logs[engine]
    assert_same_store(stores["local"], stores["spark"])
    assert np.load(os.path.join(stores["spark"], "nightlights.npy")).max() > 65_504

    expected = local_store_predictions(
        stores["local"], tiny_chips["grid"], str(tmp_path / "store.gpkg")
    )
    output_folder = tmp_path / "rasters"
    output_folder.mkdir()
    output = str(output_folder / "predictions.gpkg")
    _, log = run_cli(
        "predict",
        "--source",
        "rasters",
        "--grid",
        tiny_chips["grid"],
        "--daytime",
        inputs[0].path,
        "--nightlights",
        inputs[1].path,
        "--accessibility",
        inputs[2].path,
        "--output",
        output,
        "--batch-rows",
        "16",
        "--engine",
        "spark",
        "--spark-master",
        "local[2,2]",
    )
    assert "beyond float16" in log and "sampling again with this input as float32" in log
    assert_same_predictions(expected, read_grid(output))
    assert sorted(os.listdir(output_folder)) == ["predictions.gpkg", "predictions.qml"]


def test_predicting_from_rasters_names_the_missing_input_and_a_band_mismatch(
    tiny_sample, tiny_chips, tmp_path
):
    from povmap_qgis.core.engines.steps import PredictOptions, predict
    from povmap_qgis.core.errors import PovmapInputError
    from povmap_qgis.paths import bundled_model_path

    def attempt(inputs):
        output = str(tmp_path / "never.gpkg")
        with pytest.raises(PovmapInputError) as error:
            predict(
                PredictOptions(
                    bundled_model_path(),
                    None,
                    tiny_chips["grid"],
                    output,
                    source="rasters",
                    inputs=inputs,
                )
            )
        assert not os.listdir(tmp_path)
        return error.value

    inputs = tiny_inputs(tiny_sample)
    missing = attempt(inputs[1:2])
    assert missing.parameter == "SOURCE"
    assert "give daytime, accessibility too (given: nightlights)" in str(missing)
    inputs[0].bands, inputs[0].parameter, inputs[0].label = [3, 2, 1], "DAYTIME", "Daytime imagery"
    bands = attempt(inputs)
    assert bands.parameter == "DAYTIME"
    assert (
        "Daytime imagery (DAYTIME): bands [3, 2, 1] given, the model was trained on bands [1, 2, 3]"
        in str(bands)
    )
    with pytest.raises(PovmapInputError) as no_store:
        predict(
            PredictOptions(bundled_model_path(), None, tiny_chips["grid"], str(tmp_path / "x.gpkg"))
        )
    assert no_store.value.parameter == "CHIPS" and "SOURCE=rasters" in str(no_store.value)


def test_cancel_while_spark_predicts_from_rasters_writes_nothing(
    spark, tiny_sample, tiny_chips, tmp_path
):
    from povmap_qgis.core.engines.steps import PredictOptions, predict
    from povmap_qgis.core.errors import PovmapCanceledError
    from povmap_qgis.core.progress import Reporter
    from povmap_qgis.paths import bundled_model_path

    class CancelAtOnce(Reporter):
        said = []

        def canceled(self):
            return True

        def info(self, message):
            self.said.append(message)

    reporter = CancelAtOnce()
    with pytest.raises(PovmapCanceledError):
        predict(
            PredictOptions(
                bundled_model_path(),
                None,
                tiny_chips["grid"],
                str(tmp_path / "canceled.gpkg"),
                source="rasters",
                inputs=tiny_inputs(tiny_sample),
                engine="spark",
            ),
            reporter,
        )
    assert any(message.startswith("Spark (") for message in reporter.said)  # the job had begun
    assert os.listdir(tmp_path) == []
    assert spark["session"].sparkContext.statusTracker().getActiveJobsIds() == []
