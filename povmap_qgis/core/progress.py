"""How core steps tell the outside world about progress.

A core step receives a reporter and calls ``progress``, ``info`` and
``warning`` on it, and checks ``canceled`` inside its loops. The worker process
turns these calls into JSON lines; tests and the command line print them.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any

from .errors import PovmapCanceledError


class Reporter:
    """Silent reporter; subclasses decide where messages go."""

    def progress(self, percent: float) -> None:
        pass

    def info(self, message: str) -> None:
        pass

    def warning(self, message: str) -> None:
        pass

    def metric(self, name: str, value: float, step: int | None = None) -> None:
        """A number worth keeping per step (e.g. a member's validation loss per epoch).

        Silent here; the worker records it in the run history (core/history/tracking.py).
        """

    def final_metrics(self, values: Mapping[str, Any]) -> None:
        """The final numbers of a part of the step opened by :meth:`nested_run` (nested dicts).

        Silent here; the run history records the numbers as the part's metrics
        and a ``roc`` entry (curves by model) as its ROC artifact.
        """

    @contextlib.contextmanager
    def nested_run(self, name: str, params: Mapping[str, Any] | None = None) -> Iterator[Reporter]:
        """A reporter for one part of the step (e.g. ``"fold 2"`` of a cross-validation).

        The run history records the part as its own run nested under the step's
        run, with ``params`` (a dict), the part's per-epoch metrics and its
        :meth:`final_metrics`; here the part reports through this reporter itself.
        """
        yield self

    def canceled(self) -> bool:
        return False

    def check_canceled(self) -> None:
        if self.canceled():
            raise PovmapCanceledError("cancelled by the user")

    def stage(self, start: float, end: float) -> Reporter:
        """A reporter whose 0–100 % maps onto ``start``–``end`` % of this one."""
        return StageReporter(self, start, end)


class StageReporter(Reporter):
    def __init__(self, parent: Reporter, start: float, end: float) -> None:
        self._parent, self._start, self._end = parent, start, end

    def progress(self, percent: float) -> None:
        self._parent.progress(self._start + (self._end - self._start) * percent / 100.0)

    def info(self, message: str) -> None:
        self._parent.info(message)

    def warning(self, message: str) -> None:
        self._parent.warning(message)

    def metric(self, name: str, value: float, step: int | None = None) -> None:
        self._parent.metric(name, value, step)

    def final_metrics(self, values: Mapping[str, Any]) -> None:
        self._parent.final_metrics(values)

    @contextlib.contextmanager
    def nested_run(self, name: str, params: Mapping[str, Any] | None = None) -> Iterator[Reporter]:
        with self._parent.nested_run(name, params) as part:
            yield StageReporter(part, self._start, self._end)

    def canceled(self) -> bool:
        return self._parent.canceled()


TIME_LEFT_AFTER_S = 10.0  # no estimate before a step has run this long (its start is no guide)
TIME_LEFT_EVERY_S = 2.0  # a new estimate at most this often


class TimeLeft:
    """An estimate of a step's time left from its progress so far (the progress text of QGIS).

    The rate is measured from the first progress reported (a step's fixed start,
    loading TensorFlow or starting Spark, is not extrapolated): time left =
    time since then × percent still to do / percent done since then. ``text``
    returns "about 3 min left" at most every ``TIME_LEFT_EVERY_S`` seconds, once
    the step has run ``TIME_LEFT_AFTER_S`` seconds and moved, else None.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._first: tuple[float, float] | None = None  # (time, percent) of the first progress
        self._said_at: float | None = None

    def seconds_left(self, percent: float) -> float | None:
        now = self._clock()
        if self._first is None:
            self._first = (now, float(percent))
            return None
        started, first_percent = self._first
        moved, elapsed = float(percent) - first_percent, now - started
        if moved <= 0 or elapsed < TIME_LEFT_AFTER_S or percent >= 100:
            return None
        return elapsed * (100.0 - float(percent)) / moved

    def text(self, percent: float) -> str | None:
        seconds = self.seconds_left(percent)
        now = self._clock()
        if seconds is None or (
            self._said_at is not None and now - self._said_at < TIME_LEFT_EVERY_S
        ):
            return None
        self._said_at = now
        return f"about {duration_text(seconds)} left"


def duration_text(seconds: float) -> str:
    """A duration as people say it: '40 s', '3 min', '1 h 20 min' (rounded to what matters)."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{max(5, int(round(seconds / 5.0)) * 5)} s"
    if seconds < 3600:
        return f"{int(round(seconds / 60.0))} min"
    hours, minutes = divmod(int(round(seconds / 60.0)), 60)
    return f"{hours} h {minutes:02d} min"


class ConsoleReporter(Reporter):
    """Prints messages to stderr; used by the command line."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream or sys.stderr
        self._last_percent = -1
        self._started = time.monotonic()
        self._time_left = TimeLeft()

    def progress(self, percent: float) -> None:
        whole = int(percent)
        seconds_left = self._time_left.seconds_left(percent)
        if whole >= self._last_percent + 10:
            self._last_percent = whole
            left = f", about {duration_text(seconds_left)} left" if seconds_left else ""
            print(
                f"  {whole:3d} %  ({time.monotonic() - self._started:.1f} s{left})",
                file=self._stream,
            )

    def info(self, message: str) -> None:
        print(message, file=self._stream)

    def warning(self, message: str) -> None:
        print(f"Warning: {message}", file=self._stream)


class RecordingReporter(Reporter):
    """Keeps every message; handy for callers that want the log afterwards."""

    def __init__(self) -> None:
        self.infos: list[str] = []
        self.warnings: list[str] = []
        self.percents: list[float] = []
        self.metrics: list[tuple[str, float, int | None]] = []

    def progress(self, percent: float) -> None:
        self.percents.append(percent)

    def info(self, message: str) -> None:
        self.infos.append(message)

    def warning(self, message: str) -> None:
        self.warnings.append(message)

    def metric(self, name: str, value: float, step: int | None = None) -> None:
        self.metrics.append((name, value, step))
