"""A Spark standalone cluster on 127.0.0.1 for tests and benchmarks: a master and N workers.

Started with the ``spark-class`` launcher that ships with PySpark (each worker
its own JVM, launching its own executor JVM and Python workers), in a clean
environment: no ``PYTHONPATH``, so the executors find ``povmap_qgis`` only if
the driver ships it. Every daemon runs in its own process group, so stopping
a worker (``kill_worker``) ends its executor and Python workers with it, as a
lost machine would. ``stop()`` ends every process it started and removes its
folder; a cluster that does not come up within ``start_timeout`` seconds is
stopped and raises.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def spark_home():
    import pyspark

    return os.path.dirname(os.path.abspath(pyspark.__file__))


class StandaloneCluster:
    def __init__(self, workers=2, cores=1, memory="1g", environment=None, start_timeout=120):
        self.folder = tempfile.mkdtemp(prefix="povmap-standalone-")
        self.port, self.ui_port = free_port(), free_port()
        self.url = f"spark://127.0.0.1:{self.port}"
        self.workers, self.cores, self.memory = workers, cores, memory
        self.start_timeout = start_timeout
        self.master_process, self.worker_processes = None, []
        home = spark_home()
        self.launcher = os.path.join(home, "bin", "spark-class")
        # What a cluster node has: Java, Spark, the Python environment; not the driver's paths.
        self.environment = {
            key: value
            for key, value in os.environ.items()
            if key in ("PATH", "HOME", "JAVA_HOME", "LANG", "LC_ALL", "TMPDIR", "USER")
        }
        self.environment.update(
            SPARK_HOME=home,
            SPARK_LOCAL_IP="127.0.0.1",
            SPARK_LOG_DIR=os.path.join(self.folder, "logs"),
            PYSPARK_PYTHON=sys.executable,
            **(environment or {}),
        )

    def _start(self, name, *arguments):
        log = open(os.path.join(self.folder, f"{name}.log"), "wb")
        try:
            return subprocess.Popen(
                [self.launcher, *arguments],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.environment,
                cwd=self.folder,
                start_new_session=True,  # its own process group: executors and Python workers too
            )
        finally:
            log.close()

    def start(self):
        self.master_process = self._start(
            "master",
            "org.apache.spark.deploy.master.Master",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--webui-port",
            str(self.ui_port),
        )
        for _ in range(self.workers):
            self.add_worker()
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.alive_workers() >= self.workers:
                return self
            if any(p.poll() is not None for p in [self.master_process, *self.worker_processes]):
                break
            time.sleep(1)
        logs = self.logs()
        self.stop()
        raise RuntimeError(f"the standalone cluster did not start:\n{logs[-4000:]}")

    def add_worker(self):
        """Start one more worker (it registers with the master within seconds)."""
        index = len(self.worker_processes)
        work = os.path.join(self.folder, f"work{index}")
        os.makedirs(work)
        self.worker_processes.append(
            self._start(
                f"worker{index}",
                "org.apache.spark.deploy.worker.Worker",
                self.url,
                "--host",
                "127.0.0.1",
                "--cores",
                str(self.cores),
                "--memory",
                self.memory,
                "--work-dir",
                work,
                "--webui-port",
                str(free_port()),
            )
        )

    def state(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=5) as r:
                return json.load(r)
        except (OSError, ValueError):
            return {}

    def alive_workers(self):
        return sum(worker.get("state") == "ALIVE" for worker in self.state().get("workers", []))

    def worker_of(self, pid):
        """The worker (its process id) whose executor runs process ``pid``, or None."""
        workers = {process.pid for process in self.worker_processes if process.poll() is None}
        while pid > 1:
            if pid in workers:
                return pid
            try:
                with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
                    pid = int(handle.read().rpartition(")")[2].split()[1])  # the parent
            except (OSError, ValueError, IndexError):
                return None
        return None

    def kill_worker(self, worker):
        """SIGKILL a worker's process group (its JVM, executor JVM; the Python workers follow)."""
        if worker not in [process.pid for process in self.worker_processes]:
            raise ValueError(f"{worker} is not one of this cluster's workers")
        os.killpg(worker, signal.SIGKILL)

    def logs(self):
        text = []
        for parent, _, names in os.walk(self.folder):
            for name in sorted(names):
                if name.endswith((".log", "stderr")):
                    with open(os.path.join(parent, name), errors="replace") as handle:
                        text.append(f"--- {name}\n{handle.read()[-3000:]}")
        return "\n".join(text)

    def stop(self):
        for process in [*self.worker_processes, self.master_process]:
            if process is None or process.poll() is not None:
                continue
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=15)
            except ProcessLookupError:
                pass
        for process in self.worker_processes:  # executors of a worker stopped by SIGTERM
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *_):
        self.stop()
