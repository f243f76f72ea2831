#!/usr/bin/env python3
"""Render layers to a PNG with QGIS's map renderer, each with its saved style.

    render_map.py OUT.png LAYER [LAYER ...] [--project QGZ [--project-layers TEXT ...]]
                  [--width 1600] [--extent-of LAYER] [--title TEXT]

LAYER is a file path, optionally `path|layername=name`; the first is drawn on
top. GeoPackage layers show the style saved inside them (povmap outputs do).
With --project, the project's visible layers (those whose names contain one
of --project-layers, if given) are drawn below, styled as in the project.
"""

import argparse
import os
import sys


def load_layer(source):
    from qgis.core import QgsFillSymbol, QgsRasterLayer, QgsSingleSymbolRenderer, QgsVectorLayer, QgsWkbTypes

    path = source.split("|")[0]
    name = os.path.splitext(os.path.basename(path))[0]
    if path.lower().endswith((".tif", ".tiff", ".vrt")):
        layer = QgsRasterLayer(path, name, "gdal")
    else:
        layer = QgsVectorLayer(source, name, "ogr")
    if not layer.isValid():
        raise SystemExit(f"render_map: cannot open '{source}'")
    if isinstance(layer, QgsVectorLayer) and not layer.listStylesInDatabase()[0] and layer.geometryType() == QgsWkbTypes.PolygonGeometry:
        # No style saved in the file: outline only, so layers below stay visible.
        layer.setRenderer(QgsSingleSymbolRenderer(QgsFillSymbol.createSimple(
            {"style": "no", "outline_color": "#202020", "outline_width": "0.5", "outline_width_unit": "MM"})))
    return layer


def project_layers(project_path, name_parts):
    """Visible layers of a project, top first, optionally only those matching ``name_parts``."""
    from qgis.core import QgsProject

    project = QgsProject.instance()
    if not project.read(project_path):
        raise SystemExit(f"render_map: cannot read the project '{project_path}'")
    layers = [node.layer() for node in project.layerTreeRoot().findLayers() if node.isVisible() and node.layer()]
    if name_parts:
        layers = [layer for layer in layers if any(part.lower() in layer.name().lower() for part in name_parts)]
    return layers


def render(output, sources, width=1600, extent_of=None, title=None, project=None, project_filter=None):
    from qgis.core import QgsMapRendererParallelJob, QgsMapSettings, QgsProject, QgsRectangle
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor, QFont, QPainter

    background = project_layers(project, project_filter) if project else []
    layers = [load_layer(source) for source in sources]
    for layer in layers:
        QgsProject.instance().addMapLayer(layer, False)
    layers += background
    reference = load_layer(extent_of) if extent_of else layers[0]
    settings = QgsMapSettings()
    settings.setDestinationCrs(reference.crs())
    settings.setLayers(layers)
    extent = QgsRectangle(settings.layerExtentToOutputExtent(reference, reference.extent()))
    extent.scale(1.04)
    height = max(1, int(width * extent.height() / extent.width()))
    settings.setOutputSize(QSize(width, height))
    settings.setExtent(extent)
    settings.setBackgroundColor(QColor("white"))
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    image = job.renderedImage()
    if title:
        painter = QPainter(image)
        painter.setFont(QFont("Sans", max(10, width // 80)))
        painter.fillRect(0, 0, width, max(24, width // 40), QColor(255, 255, 255, 200))
        painter.setPen(QColor("black"))
        painter.drawText(8, max(18, width // 55), title)
        painter.end()
    draw_legend(image, [layer for layer in layers if layer not in background], width)
    if not image.save(output, "PNG"):
        raise SystemExit(f"render_map: cannot write {output}")
    return output


def draw_legend(image, layers, width):
    """A box in the lower left with each vector layer's symbols, as QGIS's legend would list them."""
    from qgis.core import QgsVectorLayer
    from qgis.PyQt.QtCore import Qt
    from qgis.PyQt.QtGui import QColor, QFont, QPainter, QPen

    entries = []
    for layer in layers:
        if not isinstance(layer, QgsVectorLayer) or layer.renderer() is None:
            continue
        for item in layer.renderer().legendSymbolItems():
            label = item.label() or layer.name().replace("_", " ")
            symbol = item.symbol()
            if symbol is not None and label not in [entry[0] for entry in entries]:
                entries.append((label, symbol.color(), layer.opacity()))
    if not entries:
        return
    size = max(12, width // 90)
    painter = QPainter(image)
    painter.setFont(QFont("Sans", int(size * 0.8)))
    box_width = int(size * 14)
    box_height = int(size * 1.6 * len(entries) + size * 0.6)
    top = image.height() - box_height - size
    painter.fillRect(size, top, box_width, box_height, QColor(255, 255, 255, 220))
    for index, (label, colour, opacity) in enumerate(entries):
        y = top + int(size * 0.5 + index * size * 1.6)
        swatch = QColor(colour)
        swatch.setAlphaF(max(0.0, min(1.0, swatch.alphaF() * opacity)))
        painter.setPen(QPen(QColor("#202020")))
        painter.setBrush(swatch if swatch.alpha() > 0 else Qt.NoBrush)
        painter.drawRect(int(size * 1.5), y, size, size)
        painter.drawText(int(size * 3), y + int(size * 0.85), label)
    painter.end()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output")
    parser.add_argument("layers", nargs="+")
    parser.add_argument("--project", help="a .qgz whose visible layers are drawn below LAYERs")
    parser.add_argument("--project-layers", nargs="*", help="only project layers whose names contain one of these")
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--extent-of")
    parser.add_argument("--title")
    arguments = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from qgis.core import QgsApplication

    app = QgsApplication([], False)
    app.initQgis()
    try:
        render(arguments.output, arguments.layers, arguments.width, arguments.extent_of, arguments.title,
               arguments.project, arguments.project_layers)
    finally:
        app.exitQgis()
    print(f"Rendered {arguments.output}")


if __name__ == "__main__":
    sys.exit(main())
