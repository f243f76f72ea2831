"""The QGIS plugin object: registers the Processing provider and styles povmap files added by hand."""

from qgis.core import QgsApplication


class PovmapPlugin:
    def __init__(self, iface=None):
        self.iface = iface
        self.provider = None
        self.styler = None

    def initProcessing(self):
        from .processing.inputs import no_gdal_sidecars_in_a_qgis_process_run
        from .processing.provider import PovmapProvider

        no_gdal_sidecars_in_a_qgis_process_run(QgsApplication.arguments())
        self.provider = PovmapProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):
        from .processing.output_styles import AddedByHandStyler

        self.initProcessing()
        self.styler = AddedByHandStyler()

    def unload(self):
        if self.styler is not None:
            self.styler.disconnect()
            self.styler = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
