"""Entry point of the worker process: ``python -m povmap_qgis.worker``.

Reads one job as JSON on stdin (``{"step": ..., "options": {...}}``), runs the
core step and writes JSON lines on stdout, one event each: ``ready`` first,
before the job is read (interpreter, version, pid: the runner's start-up
handshake), ``progress`` (percent), ``info``/``warning`` (message), ``result`` (a dict),
``error`` (kind ``input`` with the parameter at fault, ``canceled`` or
``crash`` with a traceback). Anything a library prints goes to stderr so it
cannot corrupt the protocol. SIGTERM cancels: outputs are cleaned up. On
Linux a worker whose QGIS (or qgis_process) is killed gets SIGTERM too, so it
stops and removes its unfinished files instead of running on unseen.

This module never imports ``qgis``.
"""

import contextlib
import importlib
import json
import os
import signal
import sys
import traceback

PARENT_VARIABLE = "POVMAP_WORKER_PARENT"  # the runner's process id (see _end_with_parent)
# A cancelled worker still running this long after its SIGTERM ends at once (see _cancel_on_sigterm).
CANCEL_DEADLINE_S = 20.0
# step name -> (module, options class, function); imported only when run.
STEPS = {
    "build_training_grid": (
        "povmap_qgis.core.grid.training_grid",
        "TrainingGridOptions",
        "build_training_grid",
    ),
    "build_prediction_grid": (
        "povmap_qgis.core.grid.prediction_grid",
        "PredictionGridOptions",
        "build_prediction_grid",
    ),
    "sample_chips": ("povmap_qgis.core.engines.steps", "ChipOptions", "sample_chips"),
    "train": ("povmap_qgis.core.model.training", "TrainOptions", "train"),
    "predict": ("povmap_qgis.core.engines.steps", "PredictOptions", "predict"),
    "evaluate": ("povmap_qgis.core.validation.evaluation", "EvaluateOptions", "evaluate"),
    "crossvalidate": (
        "povmap_qgis.core.validation.crossvalidation",
        "CrossValidateOptions",
        "crossvalidate",
    ),
    "target": ("povmap_qgis.core.decision.targeting", "TargetOptions", "target"),
    "verification_sample": (
        "povmap_qgis.core.verification.verification_sample",
        "VerificationSampleOptions",
        "verification_sample",
    ),
    "verification_results": (
        "povmap_qgis.core.verification.verification_results",
        "VerificationResultsOptions",
        "verification_results",
    ),
    "district_estimates": (
        "povmap_qgis.core.estimation.district_estimates",
        "DistrictEstimatesOptions",
        "district_estimates",
    ),
    "set_model_alias": ("povmap_qgis.core.history.run_history", "AliasOptions", "set_model_alias"),
    "list_runs": ("povmap_qgis.core.history.run_history", "RunsOptions", "list_runs"),
    "attach_to_run": ("povmap_qgis.core.history.tracking", None, "attach_artifacts"),
    "environment": ("povmap_qgis.core.model.environment", None, "describe_environment"),
}


class JsonLinesReporter:
    """Reporter that writes events for the runner on the protocol stream."""

    def __init__(self, stream):
        self._stream = stream
        self._last_percent = None

    def emit(self, event, **fields):
        self._stream.write(json.dumps({"event": event, **fields}, default=str) + "\n")
        self._stream.flush()

    def progress(self, percent):
        rounded = round(float(percent), 1)
        if rounded != self._last_percent:
            self._last_percent = rounded
            self.emit("progress", percent=rounded)

    def info(self, message):
        self.emit("info", message=str(message))

    def warning(self, message):
        self.emit("warning", message=str(message))

    def metric(self, name, value, step=None):
        pass  # recorded by the run history (core/history/tracking.py) when it is on

    def final_metrics(self, values):
        pass  # likewise

    @contextlib.contextmanager
    def nested_run(self, name, params=None):
        yield self  # a nested run when the run history is on (core/progress.Reporter)

    def canceled(self):
        return False

    def check_canceled(self):
        pass

    def stage(self, start, end):
        from .core.progress import StageReporter

        return StageReporter(self, start, end)


def run_step(step, options, reporter):
    if step not in STEPS:
        raise ValueError(f"unknown step '{step}' (known: {', '.join(sorted(STEPS))})")
    module_name, options_class, function_name = STEPS[step]
    module = importlib.import_module(module_name)
    function = getattr(module, function_name)
    if options_class is None:
        return function(reporter=reporter, **options)
    options = getattr(module, options_class)(**options)
    from .core.history.tracking import tracked_step

    # The one place runs are recorded (MLflow): params, fingerprints, metrics, artifacts.
    with tracked_step(step, options, reporter) as run:
        if run.run_id and hasattr(reporter, "emit"):  # the adapter adds its HTML report to it
            reporter.emit("run_history", run_id=run.run_id)
        result = function(options, reporter=run.reporter)
        run.record_result(result)
    return result


def _protocol_stream():
    """Keep the real stdout for events; send fd 1 (C libraries too) to stderr."""
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return protocol


def _cancel_on_sigterm():
    """The first SIGTERM raises PovmapCanceledError (the step cleans up) and sets a deadline.

    Later ones are ignored: the parent-death signal comes once for each of a killed
    qgis_process's threads the worker is passed on to as they exit (3 for one worker,
    seen), and a second exception raised inside the first one's cleanup (a ``finally``
    shutting down the chip sampler's thread pools) once left a pool thread that
    Python's exit waited for, for ever, holding the output's lock (1 kill in ~100).
    The runner kills a cancelled worker still running after its grace period; a worker
    whose QGIS was killed has no runner left, so after CANCEL_DEADLINE_S it ends
    whatever it is doing (faulthandler's own thread fires even when Python is stuck,
    and writes where each thread was to stderr); what it leaves is a killed run's,
    which the next run cleans up.
    """
    import faulthandler

    from .core.errors import PovmapCanceledError

    canceled = []

    def handler(signum, frame):
        if canceled:
            return  # already cancelling: let the cleanup run
        canceled.append(signum)
        faulthandler.dump_traceback_later(CANCEL_DEADLINE_S, exit=True)
        raise PovmapCanceledError("cancelled by the user")

    signal.signal(signal.SIGTERM, handler)


def _end_with_parent():
    """SIGTERM (= cancel) when the process that started this worker ends (Linux).

    The runner waits for its worker in the thread that started it, so the
    thread ends only with the run, or when QGIS is killed.
    """
    parent = os.environ.get(PARENT_VARIABLE)
    if not sys.platform.startswith("linux") or not parent:
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != int(parent):  # the parent died before prctl: nobody awaits this run
        os.kill(os.getpid(), signal.SIGTERM)


def main():
    reporter = JsonLinesReporter(_protocol_stream())
    # the start-up handshake: sent before reading the job or importing anything heavy
    reporter.emit("ready", python=sys.executable, version=sys.version.split()[0], pid=os.getpid())
    try:
        _cancel_on_sigterm()
        _end_with_parent()
        job = json.loads(sys.stdin.read())
        from .core.errors import PovmapCanceledError, PovmapInputError
    except Exception as error:  # before the core is importable nothing else can be said
        reporter.emit(
            "error",
            kind="crash",
            message=f"the worker could not start: {error}",
            traceback=traceback.format_exc(),
        )
        return 2
    try:
        result = run_step(job["step"], job.get("options") or {}, reporter)
        reporter.emit("result", result=result if isinstance(result, dict) else {"value": result})
        return 0
    except PovmapInputError as error:
        reporter.emit("error", kind="input", parameter=error.parameter, message=str(error))
    except PovmapCanceledError:
        reporter.emit("error", kind="canceled", message="cancelled by the user")
    except ModuleNotFoundError as error:
        reporter.emit(
            "error",
            kind="missing_package",
            package=error.name,
            message=str(error),
            traceback=traceback.format_exc(),
        )
    except OSError as error:  # a library's own error types are checked below
        if not _report_write_failure(reporter, error):
            _report_crash(reporter, error)
    except MemoryError:
        reporter.emit(
            "error",
            kind="crash",
            message="the worker ran out of memory",
            traceback=traceback.format_exc(),
        )
    except Exception as error:
        if not _report_write_failure(reporter, error):
            _report_crash(reporter, error)
    return 1


def _report_write_failure(reporter, error):
    """A full disk (or quota, or file size limit) or read-only file system: kind
    ``write_failed`` with the reason and the file, which the adapter names by its parameter."""
    from .core.errors import write_failure

    reason = write_failure(error)
    if reason is None:
        return False
    reporter.emit(
        "error",
        kind="write_failed",
        reason=reason,
        path=getattr(error, "filename", None),
        message=f"the output could not be written ({reason}): {type(error).__name__}: {error}",
        traceback=traceback.format_exc(),
    )
    return True


def _report_crash(reporter, error):
    reporter.emit(
        "error",
        kind="crash",
        message=f"{type(error).__name__}: {error}",
        traceback=traceback.format_exc(),
    )


if __name__ == "__main__":
    sys.exit(main())
