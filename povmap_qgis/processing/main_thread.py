"""Run a call on QGIS's main thread from the thread a Processing algorithm runs in.

QGIS marks print layout export as not thread-safe: its own layout-export algorithms run on
the main thread, and a model runs its children's postProcess there. The report maps are
drawn through a print layout (``rendering.render_layout``), so the algorithms hand that call
to the main thread and wait for it — the same blocking queued call QGIS's model algorithm
uses. On the main thread already (``qgis_process``, the Python console, tests) the call runs
directly.
"""

from qgis.PyQt.QtCore import QCoreApplication, QObject, Qt, QThread, pyqtSignal, pyqtSlot


class _MainThreadCall(QObject):
    """Lives in the main thread; ``call`` runs a job there while the emitting thread waits."""

    call = pyqtSignal(object)

    def __init__(self):
        super().__init__()
        self.call.connect(self._run, Qt.ConnectionType.BlockingQueuedConnection)

    @pyqtSlot(object)
    def _run(self, job):
        job()


def on_main_thread(function, *args, **kwargs):
    """``function(*args, **kwargs)`` run on the application's main thread; its result, or its
    exception raised here."""
    application = QCoreApplication.instance()
    if application is None or QThread.currentThread() == application.thread():
        return function(*args, **kwargs)
    outcome = {}

    def job():
        try:
            outcome["result"] = function(*args, **kwargs)
        except BaseException as error:  # handed back to the calling thread, raised there
            outcome["error"] = error

    caller = _MainThreadCall()
    caller.moveToThread(application.thread())
    caller.call.emit(job)
    caller.deleteLater()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("result")
