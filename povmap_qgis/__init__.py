"""povmap-qgis: chronic-poverty mapping at 1 km² as QGIS Processing algorithms.

Importing this package loads nothing heavy: QGIS calls ``classFactory``; the
worker process imports ``povmap_qgis.core`` without QGIS at all.
"""

import sys

# The plugin's modules (run by QGIS's own Python) use 3.11 features; an older Python
# gets a message in QGIS instead of a traceback at start-up.
MINIMUM_PYTHON = (3, 11)


def classFactory(iface):
    if sys.version_info[:2] < MINIMUM_PYTHON:
        return UnsupportedPython(iface)
    from .plugin import PovmapPlugin

    return PovmapPlugin(iface)


class UnsupportedPython:
    """Stands in for the plugin in a QGIS whose Python is too old: says so, registers nothing."""

    def __init__(self, iface=None):
        self.iface = iface
        found = ".".join(str(part) for part in sys.version_info[:3])
        needed = ".".join(str(part) for part in MINIMUM_PYTHON)
        self.message = (
            f"povmap-qgis needs a QGIS that runs Python {needed} or newer; this QGIS runs "
            f"Python {found}, so the Poverty mapping algorithms are not loaded. Use a newer "
            "QGIS build (e.g. QGIS 3.22 on Debian 12, or a recent OSGeo4W/standalone QGIS)."
        )

    def initProcessing(self):
        from qgis.core import Qgis, QgsMessageLog

        QgsMessageLog.logMessage(self.message, "povmap-qgis", Qgis.Critical)

    def initGui(self):
        self.initProcessing()
        if self.iface is not None and hasattr(self.iface, "messageBar"):
            self.iface.messageBar().pushCritical("povmap-qgis", self.message)

    def unload(self):
        pass
