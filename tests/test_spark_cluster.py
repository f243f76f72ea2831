"""ENGINE=spark on a real cluster manager: a Spark standalone master and two workers on 127.0.0.1.

Started with PySpark's own ``spark-class`` launcher (tests/spark_cluster.py), every
worker its own JVM with its own executor JVM and Python workers, in an environment
without the driver's ``PYTHONPATH``: the executors can import ``povmap_qgis`` only
because the driver ships it (``spark_session.ship_package``). Samplechips writes the
same store as the local engine although the worker running one of its tasks is
killed (SIGKILL, its executor with it) while that task runs; predict on the cluster
gives the local engine's predictions. Both run through the command line, as a user
of ``SPARK_MASTER=spark://host:port`` would.
"""

import filecmp
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from required_tools import need_spark

pytestmark = pytest.mark.slow

need_spark()
if not sys.platform.startswith("linux"):
    pytest.skip("the cluster's processes are followed through /proc", allow_module_level=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from spark_cluster import StandaloneCluster

    marker = str(tmp_path_factory.mktemp("cluster-fault") / "fault")
    with StandaloneCluster(workers=2, environment={"POVMAP_SPARK_FAULT": marker}) as running:
        running.marker = marker
        yield running


def run_cli(*arguments, timeout=300):
    from conftest import BUILD_DIR

    environment = {
        key: value for key, value in os.environ.items() if key not in ("POVMAP_SPARK_FAULT",)
    }
    environment.update(
        PYTHONPATH=BUILD_DIR,
        SPARK_LOCAL_IP="127.0.0.1",
        POVMAP_SPARK_CONF="spark.ui.enabled=false;spark.executor.memory=768m",
    )
    completed = subprocess.run(
        [sys.executable, "-m", "povmap_qgis.cli", *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=BUILD_DIR,
        env=environment,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads(completed.stdout.strip().splitlines()[-1]), completed.stderr


class KillWorkerOfHeldTask(threading.Thread):
    """Kills the worker running the held first task (``spark_session.crash_if_asked``), then lets tasks go on."""

    def __init__(self, cluster, step):
        super().__init__(daemon=True)
        self.cluster, self.killed = cluster, None
        self.hold = f"{cluster.marker}.{step}.hold"
        self.held = f"{cluster.marker}.{step}.held"
        open(self.hold, "w").close()

    def run(self):
        try:
            deadline = time.monotonic() + 240
            while not os.path.exists(self.held) and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(0.3)  # the pid is written
            if os.path.exists(self.held):
                with open(self.held, encoding="utf-8") as handle:
                    worker = self.cluster.worker_of(int(handle.read()))
                if worker is not None:
                    self.cluster.kill_worker(worker)
                    self.killed = worker
        finally:
            os.remove(self.hold)  # the retried attempt (or a task never held) goes on


def test_samplechips_on_a_standalone_cluster_survives_a_killed_worker(
    cluster, tiny_sample, tiny_chips, tmp_path
):
    output = str(tmp_path / "cluster.chips")
    killer = KillWorkerOfHeldTask(cluster, "sample")
    killer.start()
    summary, log = run_cli(
        "samplechips",
        "--grid",
        tiny_chips["grid"],
        "--daytime",
        os.path.join(tiny_sample, "synthetic_daytime_s2l2a_10m.tif"),
        "--nightlights",
        os.path.join(tiny_sample, "synthetic_viirs_15arcsec.tif"),
        "--accessibility",
        os.path.join(tiny_sample, "synthetic_accessibility_30arcsec.tif"),
        "--output",
        output,
        "--engine",
        "spark",
        "--spark-master",
        cluster.url,
    )
    killer.join(30)
    assert killer.killed, "no worker was killed while its task ran"
    assert f"Spark ({cluster.url})" in log
    assert cluster.alive_workers() <= 1
    cluster.add_worker()  # two workers again for the next test
    assert summary["sampled"] == summary["cells"] > 0
    names = sorted(os.listdir(tiny_chips["chips"]))
    assert names == sorted(os.listdir(output)) and "daytime.npy" in names
    for name in names:
        assert filecmp.cmp(
            os.path.join(tiny_chips["chips"], name), os.path.join(output, name), shallow=False
        ), name


def test_predict_on_a_standalone_cluster_equals_the_local_engine(cluster, tiny_chips, tmp_path):
    from helpers import read_grid

    frames = {}
    for engine in ("local", "spark"):
        output = str(tmp_path / f"{engine}.gpkg")
        arguments = ["--engine", engine] + (["--spark-master", cluster.url] * (engine == "spark"))
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
            *arguments,
        )
        assert result["cells"] > 16
        frames[engine] = read_grid(output)
    assert f"Spark ({cluster.url})" in log
    local, spark = frames["local"], frames["spark"]
    assert list(local.columns) == list(spark.columns)
    assert local["cell_id"].tolist() == spark["cell_id"].tolist()
    probabilities = [name for name in local.columns if name.startswith("prob_")]
    assert "prob_mean" in probabilities
    for name in probabilities:
        np.testing.assert_allclose(spark[name], local[name], atol=2e-5, err_msg=name)
    assert (spark["pred"] == local["pred"]).mean() >= 0.99
