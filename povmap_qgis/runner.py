"""Run a core step in the worker process and stream its events back.

Pure Python (no ``qgis``): the Processing algorithms wrap it, and tests drive
it directly. The worker runs under a configurable interpreter so heavy
packages (TensorFlow, rasterio, geopandas) never load into QGIS itself.
"""

import collections
import json
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time

from .core.atomic import HELD_LOCKS_VARIABLE, RUN_ID_VARIABLE
from .worker import PARENT_VARIABLE as WORKER_PARENT_VARIABLE

PLUGIN_DIR = os.path.dirname(os.path.abspath(__file__))
WORKER_ENV_FILE = os.path.join(PLUGIN_DIR, "worker_env.json")
PYTHON_ENV_VARIABLE = "POVMAP_PYTHON"
# Variables QGIS sets for its own GDAL/PROJ; the worker's packages bring their own data.
VARIABLES_NOT_INHERITED = (
    "PYTHONPATH",
    "PYTHONHOME",
    "PROJ_LIB",
    "PROJ_DATA",
    "GDAL_DATA",
    "GDAL_DRIVER_PATH",
    HELD_LOCKS_VARIABLE,  # set per run, for the locks that run hands over
)
START_TIMEOUT_VARIABLE = "POVMAP_WORKER_START_TIMEOUT_S"
DEFAULT_START_TIMEOUT_S = 60.0
SETUP_HINT = "run scripts/setup from the povmap-qgis source folder, or set the worker Python in Settings ▸ Options ▸ Processing ▸ Providers ▸ Poverty mapping (or the POVMAP_PYTHON environment variable)"


class WorkerError(RuntimeError):
    """The worker failed; ``kind`` is input, canceled, missing_package, write_failed (a full
    disk: ``reason`` and ``path``), crash or setup."""

    def __init__(self, message, kind="crash", parameter=None, details=""):
        super().__init__(message)
        self.kind, self.parameter, self.details = kind, parameter, details
        self.reason = self.path = None


def resolve_worker_python(configured=None):
    """The interpreter for the worker: env variable, then setting, then setup's venv."""
    candidates = [
        (os.environ.get(PYTHON_ENV_VARIABLE), f"the {PYTHON_ENV_VARIABLE} environment variable"),
        (configured, "the plugin setting"),
        (_setup_python(), f"{WORKER_ENV_FILE} (written by scripts/setup)"),
    ]
    for python, origin in candidates:
        if not python:
            continue
        if os.path.isfile(python) and os.access(python, os.X_OK):
            return python
        raise WorkerError(
            f"The worker Python '{python}' from {origin} does not exist or is not executable; {SETUP_HINT}.",
            kind="setup",
        )
    raise WorkerError(f"No worker Python environment is configured; {SETUP_HINT}.", kind="setup")


def _setup_python():
    try:
        with open(WORKER_ENV_FILE, encoding="utf-8") as handle:
            return json.load(handle).get("python")
    except (OSError, ValueError):
        return None


def start_timeout_s():
    """Seconds a worker may take to say it is ready (``POVMAP_WORKER_START_TIMEOUT_S``)."""
    text = os.environ.get(START_TIMEOUT_VARIABLE, "").strip()
    if not text:
        return DEFAULT_START_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise WorkerError(
            f"{START_TIMEOUT_VARIABLE}='{text}' is not a positive number of seconds; set it to "
            f"e.g. 120 (how long a worker may take to start) or unset it for the default "
            f"{DEFAULT_START_TIMEOUT_S:g} s.",
            kind="setup",
        )
    return value


def check_step_options(step, options):
    """Refuse options a core step does not take, before the worker starts.

    The adapters build a plain dict for the worker; checking it against the step's
    options dataclass here makes a misspelt or missing option fail at once, in QGIS,
    instead of later in the worker.
    """
    import dataclasses
    import importlib

    from .worker import STEPS

    if step not in STEPS:
        raise WorkerError(f"Internal error: unknown core step '{step}'.", kind="crash")
    module_name, class_name, _ = STEPS[step]
    if class_name is None:
        return
    options_class = getattr(importlib.import_module(module_name), class_name)
    fields = {field.name: field for field in dataclasses.fields(options_class)}
    unknown = sorted(set(options) - set(fields))
    missing = sorted(
        name
        for name, field in fields.items()
        if name not in options
        and field.default is dataclasses.MISSING
        and field.default_factory is dataclasses.MISSING
    )
    if unknown or missing:
        problems = [f"unknown {', '.join(unknown)}"] if unknown else []
        problems += [f"missing {', '.join(missing)}"] if missing else []
        raise WorkerError(
            f"Internal error: the options for the core step '{step}' do not match "
            f"{class_name} ({'; '.join(problems)}). Please report this.",
            kind="crash",
        )


def worker_environment(run_id=None):
    environment = {
        key: value for key, value in os.environ.items() if key not in VARIABLES_NOT_INHERITED
    }
    if run_id:
        environment[RUN_ID_VARIABLE] = run_id  # names the unfinished files this run owns
    environment["PYTHONPATH"] = os.path.dirname(PLUGIN_DIR)
    environment["PYTHONUNBUFFERED"] = "1"
    environment.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # GDAL writes NAME.aux.xml (statistics, masks) beside rasters it reads: never beside inputs
    environment["GDAL_PAM_ENABLED"] = "NO"
    return environment


def run_worker(
    step,
    options,
    python=None,
    on_event=None,
    is_canceled=None,
    cancel_grace_s=10.0,
    run_id=None,
    environment=None,
    start_timeout=None,
    held_locks=(),
):
    """Run ``step`` with ``options`` in a worker; return its result dict.

    ``on_event(event_dict)`` receives progress/info/warning events as they
    come; ``is_canceled()`` is polled and, when true, the worker gets SIGTERM
    (it cleans up) and, after ``cancel_grace_s``, SIGKILL. ``run_id`` names
    the unfinished files the worker writes (``core.atomic.run_partials``).
    ``environment``: extra variables for the worker (the adapter's run-history
    settings, see ``core.history.tracking``). The worker must send its ``ready`` event
    within ``start_timeout`` seconds (default ``start_timeout_s()``), else its
    process group is killed and a setup error names the interpreter.
    ``held_locks``: ``core.atomic.OutputLock``s the adapter holds for this run;
    the worker inherits their descriptors, so each stays held while either
    process lives (a worker outliving a killed QGIS keeps its outputs locked).
    """
    python = python or resolve_worker_python()
    start_timeout = start_timeout or start_timeout_s()
    locks = [lock for lock in held_locks if lock.fileno() is not None]
    process = _start_worker(python, run_id, environment, locks)
    events = queue.Queue()
    stderr_tail = collections.deque(maxlen=60)
    readers = [
        threading.Thread(target=_read_events, args=(process.stdout, events), daemon=True),
        threading.Thread(target=_read_lines, args=(process.stderr, stderr_tail), daemon=True),
    ]
    # a worker that never reads must not block us on a full pipe: write from a thread
    job = json.dumps({"step": step, "options": options})
    readers.append(threading.Thread(target=_write_job, args=(process.stdin, job), daemon=True))
    for reader in readers:
        reader.start()
    outcome = _follow(
        process, events, readers[0], on_event, is_canceled, cancel_grace_s, start_timeout
    )
    process.wait()
    for reader in readers:
        reader.join(timeout=2)
    process.stdout.close()
    process.stderr.close()
    return _result_or_error(outcome, process, python, "\n".join(stderr_tail), start_timeout)


def _start_worker(python, run_id, environment, locks):
    """The worker process (its own session on POSIX), inheriting ``locks``' descriptors."""
    environment = dict(worker_environment(run_id), **(environment or {}))
    environment[WORKER_PARENT_VARIABLE] = str(os.getpid())
    if locks:
        environment[HELD_LOCKS_VARIABLE] = os.pathsep.join(lock.lock for lock in locks)
    try:
        return subprocess.Popen(
            [python, "-m", "povmap_qgis.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environment,
            cwd=os.path.dirname(PLUGIN_DIR),
            text=True,
            encoding="utf-8",
            errors="replace",
            start_new_session=os.name != "nt",
            **({"pass_fds": [lock.fileno() for lock in locks]} if os.name != "nt" else {}),
        )
    except OSError as error:
        raise WorkerError(
            f"Cannot start the worker Python '{python}': {error}; {SETUP_HINT}.", kind="setup"
        ) from None


def _follow(process, events, stdout_reader, on_event, is_canceled, cancel_grace_s, start_timeout):
    """Pass the worker's events on until it ends, stopping it on Cancel or a silent start.

    Returns (result, error event, canceled, silent).
    """
    result, error_event, canceled = None, None, False
    started, ready, silent = time.monotonic(), False, False
    while True:
        try:
            event = events.get(timeout=0.1)
        except queue.Empty:
            event = None
        if is_canceled and not canceled and result is None and is_canceled():
            canceled = True
            _terminate(process, cancel_grace_s)
        if not ready and not silent and time.monotonic() - started > start_timeout:
            silent = True
            _terminate(process, 2.0)
        if event is None:
            if process.poll() is not None and not stdout_reader.is_alive() and events.empty():
                return result, error_event, canceled, silent
            continue
        if event.get("event") in ("ready", "result", "error"):
            ready = True
        if event.get("event") == "ready":
            continue
        if event.get("event") == "result":
            result = event.get("result")
        elif event.get("event") == "error":
            error_event = event
        elif on_event:
            on_event(event)


def _result_or_error(outcome, process, python, tail, start_timeout):
    """The worker's result, or the WorkerError that says why there is none."""
    result, error_event, canceled, silent = outcome
    if canceled and result is None:
        raise WorkerError("Cancelled by the user; no output was written.", kind="canceled")
    if silent and result is None and error_event is None:
        raise WorkerError(
            f"The worker Python '{python}' did not answer within {start_timeout:g} s of "
            f"starting and was stopped; check that it is a Python 3 with povmap's packages "
            f"({SETUP_HINT}), or allow a slower start with {START_TIMEOUT_VARIABLE}."
            + (f"\nIt printed:\n{tail}" if tail else ""),
            kind="setup",
            details=tail,
        )
    if error_event:
        raise _worker_error(error_event, python)
    if process.returncode != 0 or result is None:
        raise WorkerError(
            f"The worker stopped unexpectedly (exit code {process.returncode}).\n{tail}",
            details=tail,
        )
    return result


def _worker_error(event, python):
    kind = event.get("kind", "crash")
    if kind == "missing_package":
        package = event.get("package")
        return WorkerError(
            f"The worker Python '{python}' lacks the package '{package}'; {SETUP_HINT} "
            f"(or install it there: pip install -r requirements.txt -c constraints.txt).",
            kind=kind,
            details=event.get("traceback", ""),
        )
    error = WorkerError(
        event.get("message", "unknown error"),
        kind=kind,
        parameter=event.get("parameter"),
        details=event.get("traceback", ""),
    )
    error.reason, error.path = event.get("reason"), event.get("path")  # kind write_failed
    return error


def _terminate(process, grace_s):
    """SIGTERM lets the worker clean up; SIGKILL after ``grace_s``.

    On Windows there is no SIGTERM: the worker is terminated at once and the
    Processing adapter removes what it left unfinished.
    """
    if process.poll() is not None:
        return
    if os.name == "nt":
        process.terminate()
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _write_job(stream, job):
    for action in (lambda: stream.write(job), stream.close):
        try:
            action()
        except (OSError, ValueError):  # the worker stopped before reading its job
            pass


def _read_events(stream, events):
    for line in stream:
        line = line.strip()
        if not line:
            continue
        try:
            events.put(json.loads(line))
        except ValueError:
            events.put({"event": "info", "message": line})


def _read_lines(stream, tail):
    for line in stream:
        tail.append(line.rstrip())


def main():
    """``python -m povmap_qgis.runner STEP OPTIONS_JSON``: run a step from a shell."""
    step, options = sys.argv[1], json.loads(sys.argv[2])
    result = run_worker(
        step,
        options,
        python=sys.executable,
        on_event=lambda event: print(json.dumps(event), file=sys.stderr),
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
