"""The QGIS plugin object: registers the Processing provider."""

from qgis.core import QgsApplication


class PovmapPlugin:
    def __init__(self, iface=None):
        self.iface = iface
        self.provider = None

    def initProcessing(self):
        from .processing.provider import PovmapProvider

        self.provider = PovmapProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):
        self.initProcessing()

    def unload(self):
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
