#!/usr/bin/env python3
"""Build (and optionally render) the QGIS project of the SYNTHETIC sample data.

    QT_QPA_PLATFORM=offscreen python scripts/sample_project_qgz.py DIR [--render PNG] [--width 1600]

DIR holds the files written by ``make_sample_project.py``; this writes
DIR/synthetic_sample_project.qgz with every layer loaded and styled, relative
paths and the project CRS EPSG:32642. With ``--render`` it also draws the
project (daytime image, districts, urban centres, survey points) to a PNG with
QGIS's own map renderer. Runs headless; only PyQGIS is imported (never
rasterio or pyogrio, whose GDAL must not meet QGIS's in one process).
"""

import argparse
import json
import os
import sys
from pathlib import Path

PROJECT_FILE = "synthetic_sample_project.qgz"
METADATA_FILE = "synthetic_sample_metadata.json"
PROJECT_CRS = "EPSG:32642"

LAYERS = {  # key: (file, layer inside a GeoPackage or None, layer name in the project)
    "survey": (
        "synthetic_survey.gpkg",
        "synthetic_survey",
        "Synthetic survey households (2016–17)",
    ),
    "ground_truth": (
        "synthetic_ground_truth_survey.gpkg",
        "synthetic_ground_truth_survey",
        "Synthetic ground-truth survey (2019)",
    ),
    "urban": ("synthetic_urban_centres.gpkg", "synthetic_urban_centres", "Synthetic urban centres"),
    "districts": ("synthetic_districts.gpkg", "synthetic_districts", "Synthetic districts"),
    "nightlights": (
        "synthetic_viirs_15arcsec.tif",
        None,
        "Synthetic night lights (VIIRS like, nW/cm²/sr)",
    ),
    "accessibility": (
        "synthetic_accessibility_30arcsec.tif",
        None,
        "Synthetic travel time to towns (minutes)",
    ),
    "daytime": ("synthetic_daytime_s2l2a_10m.tif", None, "Synthetic daytime (Sentinel-2 like)"),
    "population": (
        "synthetic_population_3arcsec.tif",
        None,
        "Synthetic population (WorldPop like, people per pixel)",
    ),
}
LAYER_ORDER = [
    "survey",
    "ground_truth",
    "urban",
    "districts",
    "population",
    "nightlights",
    "accessibility",
    "daytime",
]
HIDDEN = {"nightlights", "accessibility", "population"}
RENDERED = ["survey", "ground_truth", "urban", "districts", "daytime"]

# Score classes of the Simple Poverty Scorecard (cutoff 19: 0–18 chronically poor).
SCORE_CLASSES = [
    (-0.5, 0.5, "#9e9e9e", "0 (data-entry error)"),
    (0.5, 18.5, "#d7191c", "1–18 chronically poor"),
    (18.5, 29.5, "#fdae61", "19–29"),
    (29.5, 44.5, "#ffffbf", "30–44"),
    (44.5, 100.5, "#1a9641", "45–100"),
]
INFERNO = ["#000004", "#420a68", "#932667", "#dd513a", "#fca50a", "#fcffa4"]
TRAVEL = ["#1a9641", "#a6d96a", "#ffffbf", "#fdae61", "#d7191c", "#7f0000"]
PEOPLE = ["#ffffcc", "#c7e9b4", "#7fcdbb", "#41b6c4", "#2c7fb8", "#253494"]


def parse_arguments(argv):
    parser = argparse.ArgumentParser(
        description="Build the QGIS project of the synthetic povmap-qgis sample data."
    )
    parser.add_argument("folder", help="folder written by make_sample_project.py")
    parser.add_argument("--render", metavar="PNG", help="also render the project to this PNG file")
    parser.add_argument(
        "--width", type=int, default=1600, help="width of the rendered PNG in pixels (default 1600)"
    )
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    args = parser.parse_args(argv)
    folder = Path(args.folder)
    missing = [spec[0] for spec in LAYERS.values() if not (folder / spec[0]).is_file()]
    if missing:
        parser.error(f"{folder} lacks {', '.join(missing)}; run make_sample_project.py first")
    if not 200 <= args.width <= 8000:
        parser.error(f"--width must be between 200 and 8000 pixels (got {args.width})")
    return args


def start_qgis():
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["GDAL_PAM_ENABLED"] = "NO"  # no .aux.xml files next to the data
    from qgis.core import QgsApplication

    QgsApplication.setPrefixPath("/usr", True)
    app = QgsApplication([], False)
    app.initQgis()
    return app


def read_display_hints(folder):
    path = folder / METADATA_FILE
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8")).get("display", {})


def synthetic_statement(folder):
    path = folder / METADATA_FILE
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8")).get("statement", "")
    return "All data in this project are synthetic."


# --------------------------------------------------------------------------- styles


def style_daytime(layer, hints):
    """True colour (bands 1, 2, 3 = red, green, blue), one stretch for all three so that hues are kept."""
    from qgis.core import QgsContrastEnhancement, QgsMultiBandColorRenderer

    provider = layer.dataProvider()
    stretch = hints.get("daytime_rgb_stretch")
    if stretch:
        low, high = 0.5 * min(s[0] for s in stretch[:3]), max(s[1] for s in stretch[:3])
    else:
        statistics = [provider.bandStatistics(band) for band in (1, 2, 3)]
        low, high = (
            0.5 * min(s.minimumValue for s in statistics),
            max(s.mean + 2 * s.stdDev for s in statistics),
        )
    renderer = QgsMultiBandColorRenderer(provider, 1, 2, 3)
    for band, setter in (
        (1, renderer.setRedContrastEnhancement),
        (2, renderer.setGreenContrastEnhancement),
        (3, renderer.setBlueContrastEnhancement),
    ):
        enhancement = QgsContrastEnhancement(provider.dataType(band))
        enhancement.setContrastEnhancementAlgorithm(QgsContrastEnhancement.StretchToMinimumMaximum)
        enhancement.setMinimumValue(low)
        enhancement.setMaximumValue(high)
        setter(enhancement)
    layer.setRenderer(renderer)
    layer.brightnessFilter().setGamma(
        1.2
    )  # lifts the dark crops a little, as Sentinel-2 browse images do


def style_pseudocolour(layer, values, colours, labels=None, opacity=1.0):
    """Single-band pseudocolour with interpolated colours at ``values``."""
    from qgis.core import QgsColorRampShader, QgsRasterShader, QgsSingleBandPseudoColorRenderer
    from qgis.PyQt.QtGui import QColor

    function = QgsColorRampShader(values[0], values[-1])
    function.setColorRampType(QgsColorRampShader.Interpolated)
    labels = labels or [f"{v:g}" for v in values]
    function.setColorRampItemList(
        [
            QgsColorRampShader.ColorRampItem(v, QColor(c), label)
            for v, c, label in zip(values, colours, labels, strict=True)
        ]
    )
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(function)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1, shader)
    renderer.setClassificationMin(values[0])
    renderer.setClassificationMax(values[-1])
    layer.setRenderer(renderer)
    layer.renderer().setOpacity(opacity)


def style_night_lights(layer, hints):
    top = max(5.0, float(hints.get("night_lights_range", [0, 40])[1]))
    values = [0.0, 0.5, 1.5, 0.15 * top, 0.45 * top, top]
    style_pseudocolour(layer, sorted(values), INFERNO, opacity=0.8)


def style_accessibility(layer, hints):
    top = max(10.0, float(hints.get("accessibility_range", [0, 120])[1]))
    values = [round(top * f, 1) for f in (0.0, 0.15, 0.3, 0.5, 0.75, 1.0)]
    style_pseudocolour(layer, values, TRAVEL, opacity=0.85)


def style_population(layer):
    """People per pixel: transparent where nobody lives, blues where many do."""
    values = [0.0, 1.0, 5.0, 20.0, 60.0, 200.0]
    style_pseudocolour(layer, values, PEOPLE, opacity=0.85)
    from qgis.core import QgsRasterTransparency

    transparency = QgsRasterTransparency()
    pixel = QgsRasterTransparency.TransparentSingleValuePixel()
    pixel.min, pixel.max, pixel.percentTransparent = 0.0, 0.0, 100.0
    transparency.setTransparentSingleValuePixelList([pixel])
    layer.renderer().setRasterTransparency(transparency)


def style_districts(layer):
    """Surveyed districts outlined; the unsurveyed one hatched with a dashed outline; names as labels."""
    from qgis.core import (
        QgsCategorizedSymbolRenderer,
        QgsFillSymbol,
        QgsLinePatternFillSymbolLayer,
        QgsLineSymbol,
        QgsRendererCategory,
    )

    surveyed = QgsFillSymbol.createSimple(
        {
            "style": "no",
            "outline_color": "255,255,255,230",
            "outline_width": "0.7",
            "outline_style": "solid",
        }
    )
    unsurveyed = QgsFillSymbol.createSimple(
        {
            "style": "no",
            "outline_color": "255,221,0,255",
            "outline_width": "0.9",
            "outline_style": "dash",
        }
    )
    hatch = QgsLinePatternFillSymbolLayer()
    hatch.setLineAngle(45.0)
    hatch.setDistance(2.5)
    hatch.setSubSymbol(QgsLineSymbol.createSimple({"color": "255,221,0,140", "width": "0.3"}))
    unsurveyed.appendSymbolLayer(hatch)
    layer.setRenderer(
        QgsCategorizedSymbolRenderer(
            "surveyed",
            [
                QgsRendererCategory(1, surveyed, "surveyed (2016–17)"),
                QgsRendererCategory(0, unsurveyed, "not surveyed (ground truth 2019)"),
            ],
        )
    )
    label_layer(
        layer,
        'CASE WHEN "surveyed" = 0 THEN "name" || \'\n(unsurveyed)\' ELSE "name" END',
        size=11,
        bold=True,
        colour="#ffffff",
        buffer_colour="#202020",
    )


def style_urban_centres(layer):
    from qgis.core import (
        QgsFillSymbol,
        QgsLinePatternFillSymbolLayer,
        QgsLineSymbol,
        QgsSingleSymbolRenderer,
    )

    symbol = QgsFillSymbol.createSimple(
        {"style": "no", "outline_color": "230,0,160,255", "outline_width": "0.6"}
    )
    hatch = QgsLinePatternFillSymbolLayer()
    hatch.setLineAngle(-45.0)
    hatch.setDistance(1.5)
    hatch.setSubSymbol(QgsLineSymbol.createSimple({"color": "230,0,160,150", "width": "0.25"}))
    symbol.appendSymbolLayer(hatch)
    layer.setRenderer(QgsSingleSymbolRenderer(symbol))
    label_layer(
        layer, '"name"', size=8, bold=False, colour="#ffe0f4", buffer_colour="#400030", italic=True
    )


def style_survey(layer, shape):
    from qgis.core import QgsGraduatedSymbolRenderer, QgsMarkerSymbol, QgsRendererRange

    ranges = []
    for low, high, colour, label in SCORE_CLASSES:
        symbol = QgsMarkerSymbol.createSimple(
            {
                "name": shape,
                "color": colour,
                "size": "1.3",
                "outline_color": "40,40,40,200",
                "outline_width": "0.1",
            }
        )
        ranges.append(QgsRendererRange(low, high, symbol, label))
    renderer = QgsGraduatedSymbolRenderer("score", ranges)
    layer.setRenderer(renderer)


def label_layer(layer, expression, size, bold, colour, buffer_colour, italic=False):
    from qgis.core import (
        QgsPalLayerSettings,
        QgsTextBufferSettings,
        QgsTextFormat,
        QgsVectorLayerSimpleLabeling,
    )
    from qgis.PyQt.QtGui import QColor, QFont

    text = QgsTextFormat()
    font = QFont("DejaVu Sans")
    font.setBold(bold)
    font.setItalic(italic)
    text.setFont(font)
    text.setSize(size)
    text.setColor(QColor(colour))
    buffer = QgsTextBufferSettings()
    buffer.setEnabled(True)
    buffer.setSize(1.0)
    buffer.setColor(QColor(buffer_colour))
    text.setBuffer(buffer)
    settings = QgsPalLayerSettings()
    settings.fieldName = expression
    settings.isExpression = True
    settings.placement = QgsPalLayerSettings.OverPoint
    settings.setFormat(text)
    layer.setLabeling(QgsVectorLayerSimpleLabeling(settings))
    layer.setLabelsEnabled(True)


# --------------------------------------------------------------------------- project


def load_layers(folder):
    from qgis.core import QgsRasterLayer, QgsVectorLayer

    layers = {}
    for key, (file_name, layer_name, title) in LAYERS.items():
        path = str((folder / file_name).resolve())
        if layer_name:
            layer = QgsVectorLayer(f"{path}|layername={layer_name}", title, "ogr")
        else:
            layer = QgsRasterLayer(path, title, "gdal")
        if not layer.isValid():
            raise RuntimeError(f"QGIS cannot open {path}")
        layers[key] = layer
    return layers


def build_project(folder):
    """Write DIR/synthetic_sample_project.qgz; return its path."""
    from qgis.core import (
        QgsCoordinateReferenceSystem,
        QgsProject,
        QgsRectangle,
        QgsReferencedRectangle,
    )

    hints = read_display_hints(folder)
    layers = load_layers(folder)
    style_daytime(layers["daytime"], hints)
    style_night_lights(layers["nightlights"], hints)
    style_accessibility(layers["accessibility"], hints)
    style_population(layers["population"])
    style_districts(layers["districts"])
    style_urban_centres(layers["urban"])
    style_survey(layers["survey"], "circle")
    style_survey(layers["ground_truth"], "triangle")

    project = QgsProject.instance()
    project.clear()
    crs = QgsCoordinateReferenceSystem(PROJECT_CRS)
    project.setCrs(crs)
    project.setTitle("povmap-qgis sample project (SYNTHETIC data)")
    project.writeEntryBool("Paths", "/Absolute", False)
    metadata = project.metadata()
    metadata.setTitle("povmap-qgis sample project (SYNTHETIC data)")
    metadata.setAbstract(synthetic_statement(folder))
    project.setMetadata(metadata)
    root = project.layerTreeRoot()
    for key in LAYER_ORDER:
        project.addMapLayer(layers[key], False)
        node = root.addLayer(layers[key])
        node.setItemVisibilityChecked(key not in HIDDEN)
        node.setExpanded(key in ("survey", "districts"))

    extent = QgsRectangle(layers["districts"].extent())
    extent.scale(1.03)
    project.viewSettings().setDefaultViewExtent(QgsReferencedRectangle(extent, crs))
    project.viewSettings().setPresetFullExtent(QgsReferencedRectangle(extent, crs))
    path = folder / PROJECT_FILE
    if not project.write(str(path)):
        raise RuntimeError(f"QGIS could not write {path}: {project.error()}")
    return path


def render_project(project_path, png_path, width):
    """Read the saved project back and draw it with QGIS's map renderer."""
    from qgis.core import QgsMapRendererParallelJob, QgsMapSettings, QgsProject
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor

    project = QgsProject.instance()
    project.clear()
    if not project.read(str(project_path)):
        raise RuntimeError(f"QGIS could not read {project_path}: {project.error()}")
    by_name = {layer.name(): layer for layer in project.mapLayers().values()}
    layers = [by_name[LAYERS[key][2]] for key in RENDERED]
    extent = project.viewSettings().defaultViewExtent()
    height = max(1, int(round(width * extent.height() / extent.width())))

    settings = QgsMapSettings()
    settings.setLayers(layers)
    settings.setDestinationCrs(project.crs())
    settings.setTransformContext(project.transformContext())
    settings.setExtent(extent)
    settings.setOutputSize(QSize(width, height))
    settings.setBackgroundColor(QColor("white"))
    settings.setFlag(QgsMapSettings.Antialiasing, True)
    settings.setFlag(QgsMapSettings.DrawLabeling, True)
    settings.setLabelingEngineSettings(project.labelingEngineSettings())
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    image = job.renderedImage()
    stamp_synthetic(image)
    if not image.save(str(png_path), "PNG"):
        raise RuntimeError(f"could not write {png_path}")
    return width, height


def stamp_synthetic(image):
    """Mark the picture as synthetic, so that it is never mistaken for a real map."""
    from qgis.PyQt.QtCore import QRect, Qt
    from qgis.PyQt.QtGui import QColor, QFont, QPainter

    painter = QPainter(image)
    font = QFont("DejaVu Sans")
    font.setPixelSize(max(12, image.width() // 60))
    font.setBold(True)
    painter.setFont(font)
    text = "SYNTHETIC DATA · invented place · povmap-qgis sample project"
    metrics = painter.fontMetrics()
    box = QRect(0, 0, metrics.horizontalAdvance(text) + 24, metrics.height() + 12)
    painter.fillRect(box, QColor(0, 0, 0, 170))
    painter.setPen(QColor("white"))
    painter.drawText(box, Qt.AlignCenter, text)
    painter.end()


def main(argv=None):
    args = parse_arguments(argv)
    folder = Path(args.folder)
    app = start_qgis()
    try:
        project_path = build_project(folder)
        if not args.quiet:
            print(f"  wrote {project_path}")
        if args.render:
            width, height = render_project(project_path, Path(args.render), args.width)
            if not args.quiet:
                print(f"  rendered {args.render} ({width} x {height} px)")
    except RuntimeError as error:
        print(f"sample_project_qgz: error: {error}", file=sys.stderr)
        return 1
    finally:
        from qgis.core import QgsProject

        QgsProject.instance().clear()
        app.exitQgis()
    return 0


if __name__ == "__main__":
    sys.exit(main())
