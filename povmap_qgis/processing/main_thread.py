"""Run a call on QGIS's main thread from the thread a Processing algorithm runs in.

QGIS marks print layout export as not thread-safe: its own layout-export algorithms run on
the main thread, and a model runs its children's postProcess there. The report maps are
drawn through a print layout (``rendering.render_layout``), so the algorithms hand that call
to the main thread and wait for it, as QGIS's model algorithm does. On the main thread
already (``qgis_process``, the Python console, tests) the call runs directly. A main thread
that does not serve the call within ``WAIT_S`` (say, a script blocked waiting for the task)
never deadlocks the run: the call then runs in the calling thread, as it did before.
"""

import threading

from qgis.PyQt.QtCore import QCoreApplication, QObject, Qt, QThread, pyqtSignal, pyqtSlot

WAIT_S = 60.0
_callers: list = []  # the one _MainThreadCall, made on first use and kept (it lives in the main thread)
_callers_lock = threading.Lock()


class _MainThreadCall(QObject):
    """Lives in the main thread; ``call`` runs a job there (queued: the sender does not block)."""

    call = pyqtSignal(object)

    def __init__(self):
        super().__init__()
        self.call.connect(self._run, Qt.ConnectionType.QueuedConnection)

    @pyqtSlot(object)
    def _run(self, job):
        job()


def _main_thread_caller(application):
    with _callers_lock:
        if not _callers:
            caller = _MainThreadCall()
            caller.moveToThread(application.thread())
            _callers.append(caller)
        return _callers[0]


def on_main_thread(function, *args, wait_s=WAIT_S, **kwargs):
    """``function(*args, **kwargs)`` run on the application's main thread; its result, or its
    exception raised here. Run here instead when the main thread has not taken it within
    ``wait_s`` seconds."""
    application = QCoreApplication.instance()
    if application is None or QThread.currentThread() == application.thread():
        return function(*args, **kwargs)
    outcome, lock, done = {"state": "waiting"}, threading.Lock(), threading.Event()

    def job():
        with lock:
            if outcome["state"] != "waiting":
                return  # the caller gave up waiting and ran it itself
            outcome["state"] = "taken"
        try:
            outcome["result"] = function(*args, **kwargs)
        except BaseException as error:  # handed back to the calling thread, raised there
            outcome["error"] = error
        finally:
            done.set()

    _main_thread_caller(application).call.emit(job)
    if not done.wait(wait_s):
        with lock:
            if outcome["state"] == "waiting":
                outcome["state"] = "abandoned"
        if outcome["state"] == "abandoned":
            return function(*args, **kwargs)
        done.wait()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("result")
