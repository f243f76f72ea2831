"""povmap-qgis: chronic-poverty mapping at 1 km² as QGIS Processing algorithms.

Importing this package loads nothing heavy: QGIS calls ``classFactory``; the
worker process imports ``povmap_qgis.core`` without QGIS at all.
"""


def classFactory(iface):
    from .plugin import PovmapPlugin

    return PovmapPlugin(iface)
