"""How core steps tell the outside world about progress.

A core step receives a reporter and calls ``progress``, ``info`` and
``warning`` on it, and checks ``canceled`` inside its loops. The worker process
turns these calls into JSON lines; tests and the command line print them.
"""

import contextlib
import sys
import time

from .errors import PovmapCanceledError


class Reporter:
    """Silent reporter; subclasses decide where messages go."""

    def progress(self, percent):
        pass

    def info(self, message):
        pass

    def warning(self, message):
        pass

    def metric(self, name, value, step=None):
        """A number worth keeping per step (e.g. a member's validation loss per epoch).

        Silent here; the worker records it in the run history (core/history/tracking.py).
        """

    def final_metrics(self, values):
        """The final numbers of a part of the step opened by :meth:`nested_run` (nested dicts).

        Silent here; the run history records the numbers as the part's metrics
        and a ``roc`` entry (curves by model) as its ROC artifact.
        """

    @contextlib.contextmanager
    def nested_run(self, name, params=None):
        """A reporter for one part of the step (e.g. ``"fold 2"`` of a cross-validation).

        The run history records the part as its own run nested under the step's
        run, with ``params`` (a dict), the part's per-epoch metrics and its
        :meth:`final_metrics`; here the part reports through this reporter itself.
        """
        yield self

    def canceled(self):
        return False

    def check_canceled(self):
        if self.canceled():
            raise PovmapCanceledError("cancelled by the user")

    def stage(self, start, end):
        """A reporter whose 0–100 % maps onto ``start``–``end`` % of this one."""
        return StageReporter(self, start, end)


class StageReporter(Reporter):
    def __init__(self, parent, start, end):
        self._parent, self._start, self._end = parent, start, end

    def progress(self, percent):
        self._parent.progress(self._start + (self._end - self._start) * percent / 100.0)

    def info(self, message):
        self._parent.info(message)

    def warning(self, message):
        self._parent.warning(message)

    def metric(self, name, value, step=None):
        self._parent.metric(name, value, step)

    def final_metrics(self, values):
        self._parent.final_metrics(values)

    @contextlib.contextmanager
    def nested_run(self, name, params=None):
        with self._parent.nested_run(name, params) as part:
            yield StageReporter(part, self._start, self._end)

    def canceled(self):
        return self._parent.canceled()


class ConsoleReporter(Reporter):
    """Prints messages to stderr; used by the command line."""

    def __init__(self, stream=None):
        self._stream = stream or sys.stderr
        self._last_percent = -1
        self._started = time.monotonic()

    def progress(self, percent):
        whole = int(percent)
        if whole >= self._last_percent + 10:
            self._last_percent = whole
            print(f"  {whole:3d} %  ({time.monotonic() - self._started:.1f} s)", file=self._stream)

    def info(self, message):
        print(message, file=self._stream)

    def warning(self, message):
        print(f"Warning: {message}", file=self._stream)


class RecordingReporter(Reporter):
    """Keeps every message; handy for callers that want the log afterwards."""

    def __init__(self):
        self.infos, self.warnings, self.percents, self.metrics = [], [], [], []

    def progress(self, percent):
        self.percents.append(percent)

    def info(self, message):
        self.infos.append(message)

    def warning(self, message):
        self.warnings.append(message)

    def metric(self, name, value, step=None):
        self.metrics.append((name, value, step))
