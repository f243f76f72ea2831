"""Helpers for tests that run Processing algorithms in the test QGIS."""

from qgis.core import QgsProcessingFeedback


class CapturingFeedback(QgsProcessingFeedback):
    """Keeps what an algorithm tells the user; optionally cancels at the first progress."""

    def __init__(self, cancel_at_progress=None):
        super().__init__()
        self.errors, self.warnings, self.infos = [], [], []
        self._cancel_at = cancel_at_progress
        self.progressChanged.connect(self._maybe_cancel)

    def _maybe_cancel(self, percent):
        if self._cancel_at is not None and percent >= self._cancel_at:
            self.cancel()

    def reportError(self, error, fatalError=False):  # noqa: N802,N803 (QGIS API)
        self.errors.append(error)

    def pushWarning(self, warning):  # noqa: N802 (QGIS API)
        self.warnings.append(warning)

    def pushInfo(self, info):  # noqa: N802 (QGIS API)
        self.infos.append(info)

    def text(self):
        return "\n".join(self.errors + self.warnings + self.infos)


def run_algorithm(algorithm_id, parameters, feedback=None):
    import processing

    feedback = feedback or CapturingFeedback()
    return processing.run(algorithm_id, parameters, feedback=feedback), feedback


def run_failing(algorithm_id, parameters):
    """Run an algorithm that must fail; return everything it told the user."""
    from qgis.core import QgsProcessingException

    feedback = CapturingFeedback()
    try:
        run_algorithm(algorithm_id, parameters, feedback)
    except QgsProcessingException as error:
        return f"{error}\n{feedback.text()}"
    raise AssertionError(f"{algorithm_id} did not fail; it said:\n{feedback.text()}")


def release_python_owned_layers():
    """Delete every live map layer that Python owns (tests/conftest.py's
    ``_release_python_owned_layers`` says why); how many."""
    import gc

    from qgis.core import QgsMapLayer, QgsProject
    from qgis.PyQt import sip

    gc.collect()
    project = QgsProject.instance()
    released = 0
    for thing in gc.get_objects():
        if isinstance(thing, QgsMapLayer) and not sip.isdeleted(thing) and sip.ispyowned(thing):
            if project.addMapLayer(thing, False) is not None:
                project.removeMapLayer(thing.id())
                released += 1
    return released
