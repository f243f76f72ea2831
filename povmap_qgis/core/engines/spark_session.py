"""The Spark engine's plumbing (docs/spark.md): the session (local or a cluster, the
package shipped to executors), running a job with progress and Cancel, turning a task's
failure into a clear message, and the fault hooks the tests use. The work itself — sampling
chips and predicting as Spark tasks — is in ``spark_engine``.

PySpark is imported only in these two modules, and they only in the worker process (never
inside QGIS).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ..errors import PovmapInputError

if TYPE_CHECKING:
    from ..progress import Reporter


PYSPARK_VERSION = "4.1.4"  # as pinned in constraints.txt
INSTALL_HINT = (
    "ENGINE=spark needs PySpark and a Java runtime in the worker environment: run scripts/setup "
    "(without --no-spark), or install them by hand: "
    f"'<worker python> -m pip install pyspark=={PYSPARK_VERSION}' and, on Debian/Ubuntu, "
    "'apt-get install openjdk-17-jre-headless' (or set JAVA_HOME to a Java 17 or 21 runtime)."
)
EXTRA_CONF_VARIABLE = "POVMAP_SPARK_CONF"  # extra settings: "key=value;key=value"
FAULT_VARIABLE = "POVMAP_SPARK_FAULT"  # tests: a file whose presence crashes one task once
TASKS_PER_CORE = 3  # partitions per core: stragglers even out, tasks stay long enough
POLL_SECONDS = 0.5
HOLD_SECONDS = 120  # tests: the longest a task waits on a hold file (see crash_if_asked)

_shipped: dict = {}  # per driver: Spark application id -> the zip of povmap_qgis it was given


# --- the session ------------------------------------------------------------


def spark_session(master: str, app_name: str = "povmap") -> tuple[Any, bool]:
    """The running SparkSession (tests, spark-submit) or a new one on ``master``.

    Returns (session, created): a session this call created is stopped by
    its caller when the step ends.
    """
    try:
        from pyspark.sql import SparkSession
    except ModuleNotFoundError:
        raise PovmapInputError("ENGINE", INSTALL_HINT) from None
    from pyspark import SparkContext

    active = SparkSession.getActiveSession()
    if active is not None:
        return active, False
    if SparkContext._active_spark_context is not None:  # started in another thread
        return SparkSession.builder.getOrCreate(), False
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        raise PovmapInputError("ENGINE", f"no Java runtime found. {INSTALL_HINT}")
    # Executors run this Python (the worker's environment), with this copy of povmap_qgis.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    package_parent = os.path.dirname(_package_dir())
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if package_parent not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([package_parent, *filter(None, paths)])
    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    elif "PYSPARK_GATEWAY_PORT" not in os.environ:  # not under spark-submit, which sets it
        builder = builder.master("local[*]")
    builder = builder.config("spark.ui.showConsoleProgress", "false")
    for key, value in extra_conf().items():
        builder = builder.config(key, value)
    try:
        return builder.getOrCreate(), True
    except Exception as error:
        raise PovmapInputError(
            "SPARK_MASTER", f"Spark did not start on '{master}': {error}. {INSTALL_HINT}"
        ) from None


def extra_conf(text: str | None = None) -> dict[str, str]:
    """Extra Spark settings from ``POVMAP_SPARK_CONF`` ("spark.executor.memory=4g;…")."""
    text = os.environ.get(EXTRA_CONF_VARIABLE, "") if text is None else text
    settings = {}
    for item in filter(None, (part.strip() for part in text.replace("\n", ";").split(";"))):
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise PovmapInputError(
                "ENGINE", f"{EXTRA_CONF_VARIABLE}: '{item}' is not key=value (separate by ';')."
            )
        settings[key.strip()] = value.strip()
    return settings


def _package_dir() -> str:
    """The folder of the ``povmap_qgis`` package this module belongs to."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def ship_package(context: Any) -> str | None:
    """Make this copy of ``povmap_qgis`` importable by the executors of a cluster; the zip's path.

    In local mode (``local``, ``local[N]``…) the executors are this machine's
    Python workers started with the driver's ``PYTHONPATH`` and nothing is
    shipped. On a cluster (``spark://``, ``yarn``, ``k8s://``, ``local-cluster``)
    the package's Python files are zipped once per Spark application and added
    with ``SparkContext.addPyFile``: every executor fetches the zip and puts it
    on its Python path before running a task. The executors still need the same
    Python environment (``PYSPARK_PYTHON``: numpy, rasterio, TensorFlow…) and
    must reach the run's paths (README, Spark engine).
    """
    if re.match(r"local(\[[^\]]*\])?$", context.master or ""):
        return None
    application = context.applicationId
    if application not in _shipped:
        folder = tempfile.mkdtemp(prefix="povmap-spark-")
        atexit.register(shutil.rmtree, folder, True)
        _shipped[application] = package_zip(folder)
        context.addPyFile(_shipped[application])
    return _shipped[application]


def package_zip(folder: str) -> str:
    """A zip of the package's Python files in ``folder``, named by their digest (reproducible)."""
    package = _package_dir()
    files = []
    for parent, folders, names in os.walk(package):
        folders[:] = sorted(name for name in folders if name != "__pycache__")
        files += [os.path.join(parent, name) for name in sorted(names) if name.endswith(".py")]
    digest = hashlib.sha256()
    contents = {}
    for path in files:
        arcname = os.path.relpath(path, os.path.dirname(package)).replace(os.sep, "/")
        with open(path, "rb") as handle:
            contents[arcname] = handle.read()
        digest.update(arcname.encode() + b"\0" + hashlib.sha256(contents[arcname]).digest())
    path = os.path.join(folder, f"povmap_qgis-{digest.hexdigest()[:12]}.zip")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for arcname, data in contents.items():
            archive.writestr(
                zipfile.ZipInfo(arcname, (1980, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED
            )
    return path


@contextlib.contextmanager
def running_session(master: str) -> Iterator[Any]:
    session, created = spark_session(master)
    try:
        ship_package(session.sparkContext)
        yield session
    finally:
        if created:
            session.stop()


def run_job(
    session: Any,
    action: Callable[[], Any],
    reporter: Reporter,
    start: float,
    end: float,
    description: str,
) -> Any:
    """Run ``action()`` (a Spark action) in its own job group, reporting progress; cancel on Cancel.

    Progress is the share of finished tasks in the group's stages (Spark's
    status tracker) mapped onto ``start``–``end`` %. On cancel (or any error
    here) the job group is cancelled and the error raised.
    """
    context = session.sparkContext
    group = f"povmap-{uuid.uuid4().hex}"
    outcome = {}

    def target() -> None:
        context.setJobGroup(group, description, interruptOnCancel=True)
        try:
            outcome["value"] = action()
        except BaseException as error:  # handed to the caller's thread
            outcome["error"] = error

    thread = threading.Thread(target=target, name="povmap-spark-job", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(POLL_SECONDS)
            reporter.progress(start + (end - start) * _fraction_done(context, group))
            reporter.check_canceled()
    except BaseException:
        with contextlib.suppress(Exception):  # the JVM may already be gone (SIGTERM)
            context.cancelJobGroup(group)
        thread.join(30)
        raise
    if "error" in outcome:
        raise task_error(outcome["error"]) from None
    reporter.progress(end)
    return outcome["value"]


def task_error(error: BaseException) -> BaseException:
    """A failed job's error as the user should read it: the executor's Python error, not the JVM's.

    A ``PovmapInputError`` raised in a task (a package whose hashes do not
    match on that executor, a raster it cannot open) keeps its parameter.
    """
    text = str(error)
    if "Traceback (most recent call last)" not in text:
        aborted = re.search(r"Job aborted due to stage failure: ([^\n]*)", text)
        return RuntimeError(f"the Spark job failed: {aborted.group(1)}") if aborted else error
    python_errors = re.findall(
        r"^\s*(?:[\w.]+\.)?(\w+(?:Error|Exception)): (.*)$", text, flags=re.MULTILINE
    )
    if not python_errors:
        return error
    kind, message = (
        python_errors[-1]
        if "PovmapInputError" not in text
        else next(found for found in python_errors if found[0] == "PovmapInputError")
    )
    if kind == "PovmapInputError":
        parameter, _, rest = message.partition(": ")
        return PovmapInputError(parameter, rest) if rest else PovmapInputError("", message)
    return RuntimeError(f"a Spark task failed after its retries: {kind}: {message}")


def _fraction_done(context: Any, group: str) -> float:
    tracker = context.statusTracker()
    done = total = 0
    for job_id in tracker.getJobIdsForGroup(group):
        job = tracker.getJobInfo(job_id)
        for stage_id in job.stageIds if job else ():
            stage = tracker.getStageInfo(stage_id)
            if stage:
                done += stage.numCompletedTasks
                total += stage.numTasks
    return done / total if total else 0.0


def partition_count(session: Any, items: int) -> int:
    return max(1, min(items, session.sparkContext.defaultParallelism * TASKS_PER_CORE))


def crash_if_asked(step: str, partition: int, last_partition: int) -> None:
    """Fault injection for tests (real crashes of the task's Python worker, no mocks).

    With ``POVMAP_SPARK_FAULT=<marker>``: the file ``<marker>.<step>`` crashes
    the first attempt of partition 0 once (Spark retries it); the file
    ``<marker>.<step>.last`` crashes every attempt of the last partition (the
    job fails after the others have finished); the file ``<marker>.<step>.hold``
    holds the first attempt of partition 0 while it exists (at most
    ``HOLD_SECONDS``), after writing its process id into ``<marker>.<step>.held``
    (a test kills that task's cluster worker meanwhile).
    """
    marker = os.environ.get(FAULT_VARIABLE)
    if not marker:
        return
    from pyspark import TaskContext

    context = TaskContext.get()
    hold = f"{marker}.{step}.hold"
    if partition == 0 and context is not None and context.attemptNumber() == 0:
        if os.path.exists(hold):
            with open(f"{marker}.{step}.held", "w", encoding="utf-8") as handle:
                handle.write(str(os.getpid()))
            deadline = time.monotonic() + HOLD_SECONDS
            while os.path.exists(hold) and time.monotonic() < deadline:
                time.sleep(0.2)
    if partition == last_partition and os.path.exists(f"{marker}.{step}.last"):
        os._exit(3)
    if partition == 0 and context is not None and context.attemptNumber() == 0:
        try:
            os.remove(f"{marker}.{step}")
        except FileNotFoundError:
            return
        os._exit(3)
