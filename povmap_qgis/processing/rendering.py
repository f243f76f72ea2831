"""Map images with QGIS's own renderer: layers drawn with their styles, a title and a legend.

Used by the algorithms that write reports (the maps of ``povmap:evaluate``)
and by ``scripts/render_map.py``. Rendering is synchronous on a QImage
(``QgsMapRendererCustomPainterJob``), so it also works in the background
thread a Processing algorithm runs in, given layers made in that thread (never a layer
of the main thread: styling, drawing or dropping it there races the main thread's own
events on it, which once crashed QGIS); a print layout, which QGIS
does not export off its main thread, is exported there (``main_thread.on_main_thread``).
"""

import os

from qgis.core import (
    QgsCoordinateTransformContext,
    QgsFillSymbol,
    QgsMapRendererCustomPainterJob,
    QgsMapSettings,
    QgsRasterLayer,
    QgsRectangle,
    QgsSingleSymbolRenderer,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QSize, Qt
from qgis.PyQt.QtGui import QColor, QFont, QImage, QPainter, QPen

from ..core.geopackage import style_file_path
from .main_thread import on_main_thread


class RenderError(RuntimeError):
    """A layer, project or image file could not be read or written."""


def outline_renderer(colour="#202020", width_mm=0.5):
    """Polygons drawn as outlines only, so that layers below stay visible."""
    return QgsSingleSymbolRenderer(
        QgsFillSymbol.createSimple(
            {
                "style": "no",
                "outline_color": colour,
                "outline_width": str(width_mm),
                "outline_width_unit": "MM",
            }
        )
    )


# Okabe–Ito colours (colour-blind safe), as the members' curves in the report figures.
CATEGORY_COLOURS = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#F0E442",
    "#000000",
)


def category_style(output, field, values, label_format="{}", missing_label="none"):
    """Write a QML style drawing polygons by the integer ``field`` (one colour per value, grey for NULL); return ``output``.

    Made with QGIS's categorized renderer on a memory layer, so the style is
    a genuine QGIS style that can be stored in a GeoPackage and loaded in
    the desktop.
    """
    from qgis.core import QgsCategorizedSymbolRenderer, QgsRendererCategory

    layer = QgsVectorLayer(f"Polygon?field={field}:integer", field, "memory")
    categories = []
    for index, value in enumerate(values):
        symbol = QgsFillSymbol.createSimple(
            {
                "color": CATEGORY_COLOURS[index % len(CATEGORY_COLOURS)],
                "outline_color": "#ffffff",
                "outline_width": "0.05",
                "outline_width_unit": "MM",
            }
        )
        categories.append(QgsRendererCategory(value, symbol, label_format.format(value)))
    categories.append(
        QgsRendererCategory(
            None,
            QgsFillSymbol.createSimple({"color": "#d9d9d9", "outline_style": "no"}),
            missing_label,
        )
    )
    layer.setRenderer(QgsCategorizedSymbolRenderer(field, categories))
    message, saved = layer.saveNamedStyle(output)
    if not saved:
        raise RenderError(f"cannot write the style {output}: {message}")
    return output


def load_layer(source):
    """A layer from a file path (``path|layername=name`` for one layer of a GeoPackage), with its style.

    Its style: ``NAME.qml`` beside it or one saved in the file (QGIS loads either), or the
    styles a povmap GeoPackage carries; a polygon layer with none is drawn as outlines.
    """
    from .output_styles import add_carried_styles

    path = source.split("|")[0]
    name = os.path.splitext(os.path.basename(path))[0]
    if path.lower().endswith((".tif", ".tiff", ".vrt")):
        layer = QgsRasterLayer(path, name, "gdal")
    else:
        layer = QgsVectorLayer(source, name, "ogr")
    if not layer.isValid():
        raise RenderError(f"cannot open '{source}'")
    if isinstance(layer, QgsVectorLayer) and not (
        add_carried_styles(layer)
        or os.path.isfile(style_file_path(path))
        or layer.listStylesInDatabase()[0]
    ):
        if layer.geometryType() == QgsWkbTypes.PolygonGeometry:
            layer.setRenderer(outline_renderer())
    return layer


def project_layers(project_path, name_parts=None):
    """Visible layers of a project, top first, optionally only those whose names contain one of ``name_parts``."""
    from qgis.core import QgsProject

    project = QgsProject.instance()
    if not project.read(project_path):
        raise RenderError(f"cannot read the project '{project_path}'")
    layers = [
        node.layer()
        for node in project.layerTreeRoot().findLayers()
        if node.isVisible() and node.layer()
    ]
    if name_parts:
        layers = [
            layer
            for layer in layers
            if any(part.lower() in layer.name().lower() for part in name_parts)
        ]
    return layers


def render_layers(
    output,
    layers,
    width=1600,
    extent_layer=None,
    title=None,
    legend_layers=None,
    transform_context=None,
    legend_below=False,
    max_height=None,
):
    """Draw ``layers`` (top first) into a PNG at ``output``; return the path.

    The map is in the CRS of ``extent_layer`` (default: the first layer) and
    shows its extent with a 4 % margin. ``legend_layers`` (default: every
    vector layer) list their symbols in a box in the lower left, over the
    map, or under it with ``legend_below``. ``max_height``: a tall area is
    drawn narrower so that the map is at most this high.
    """
    if not layers:
        raise RenderError("no layer to draw")
    reference = extent_layer or layers[0]
    settings = QgsMapSettings()
    settings.setDestinationCrs(reference.crs())
    settings.setTransformContext(transform_context or QgsCoordinateTransformContext())
    settings.setLayers(list(layers))
    extent = QgsRectangle(settings.layerExtentToOutputExtent(reference, reference.extent()))
    if extent.isEmpty():
        extent = QgsRectangle(
            extent.xMinimum() - 500,
            extent.yMinimum() - 500,
            extent.xMaximum() + 500,
            extent.yMaximum() + 500,
        )
    extent.scale(1 + 2 * CONTEXT_MARGIN)  # some land around the area, not only its cells
    if max_height and extent.height() > extent.width() * max_height / width:
        width = max(200, int(max_height * extent.width() / extent.height()))
    height = max(1, int(width * extent.height() / extent.width()))
    settings.setOutputSize(QSize(width, height))
    settings.setExtent(extent)
    settings.setBackgroundColor(QColor("white"))
    settings.setOutputDpi(96)
    entries = legend_entries(list(legend_layers) if legend_layers is not None else list(layers))
    extra = legend_size(entries, width)[1] + max(12, width // 90) if legend_below and entries else 0
    image = QImage(QSize(width, height + extra), QImage.Format_ARGB32_Premultiplied)
    image.fill(QColor("white"))
    painter = QPainter(image)
    job = QgsMapRendererCustomPainterJob(settings, painter)
    job.renderSynchronously()
    painter.end()
    if title:
        draw_title(image, title, width)
    draw_legend(image, entries, width)
    if not image.save(output, "PNG"):
        raise RenderError(f"cannot write {output}")
    return output


def render(
    output, sources, width=1600, extent_of=None, title=None, project=None, project_filter=None
):
    """``render_layers`` for file paths; the visible layers of ``project`` (filtered by name) are drawn below."""
    from qgis.core import QgsProject

    background = project_layers(project, project_filter) if project else []
    layers = [load_layer(source) for source in sources]
    reference = load_layer(extent_of) if extent_of else layers[0]
    return render_layers(
        output,
        layers + background,
        width,
        reference,
        title,
        legend_layers=layers,
        transform_context=QgsProject.instance().transformContext() if project else None,
    )


def draw_title(image, title, width):
    painter = QPainter(image)
    painter.setFont(QFont("Sans", max(10, width // 80)))
    painter.fillRect(0, 0, width, max(24, width // 40), QColor(255, 255, 255, 200))
    painter.setPen(QColor("black"))
    painter.drawText(8, max(18, width // 55), title)
    painter.end()


def legend_entries(layers):
    """(label, colour, opacity) of each symbol of the vector layers' renderers, as QGIS's legend lists them."""
    entries = []
    for layer in layers:
        if not isinstance(layer, QgsVectorLayer) or layer.renderer() is None:
            continue
        for item in layer.renderer().legendSymbolItems():
            label = item.label() or layer.name().replace("_", " ")
            symbol = item.symbol()
            if symbol is not None and label not in [entry[0] for entry in entries]:
                entries.append((label, symbol.color(), layer.opacity()))
    return entries


def legend_size(entries, width):
    """Width and height in pixels of the legend box for ``entries`` on an image ``width`` wide."""
    size = max(12, width // 90)
    image = QImage(1, 1, QImage.Format_ARGB32_Premultiplied)
    painter = QPainter(image)
    painter.setFont(QFont("Sans", int(size * 0.8)))
    text_width = max(
        [painter.fontMetrics().horizontalAdvance(entry[0]) for entry in entries] or [0]
    )
    painter.end()
    return max(int(size * 14), int(size * 3.6) + text_width), int(
        size * 1.6 * len(entries) + size * 0.6
    )


def draw_legend(image, entries, width):
    """A box in the lower left of ``image`` listing ``entries`` (see ``legend_entries``)."""
    if not entries:
        return
    size = max(12, width // 90)
    box_width, box_height = legend_size(entries, width)
    top = image.height() - box_height - size
    painter = QPainter(image)
    painter.setFont(QFont("Sans", int(size * 0.8)))
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


def district_outlines(layer, field="district"):
    """A memory layer of the districts of ``layer``'s cells (cells dissolved by ``field``), labelled.

    None when the layer has no such field or no cell with a district.
    """
    from qgis.core import (
        QgsFeature,
        QgsField,
        QgsGeometry,
        QgsPalLayerSettings,
        QgsTextBufferSettings,
        QgsTextFormat,
        QgsVectorLayerSimpleLabeling,
    )
    from qgis.PyQt.QtCore import QVariant

    if not isinstance(layer, QgsVectorLayer) or layer.fields().indexOf(field) < 0:
        return None
    parts = {}
    for feature in layer.getFeatures():
        name = feature[field]
        if name is None or str(name) in ("", "NULL") or not feature.hasGeometry():
            continue
        parts.setdefault(str(name), []).append(feature.geometry())
    if not parts:
        return None
    outlines = QgsVectorLayer(f"Polygon?crs={layer.crs().authid()}", "districts", "memory")
    if not layer.crs().authid():
        outlines.setCrs(layer.crs())
    outlines.dataProvider().addAttributes([QgsField("name", QVariant.String)])
    outlines.updateFields()
    features = []
    for name, geometries in sorted(parts.items()):
        feature = QgsFeature(outlines.fields())
        # the district's outline: cells without a prediction inside it are no boundary
        feature.setGeometry(QgsGeometry.unaryUnion(geometries).removeInteriorRings())
        feature.setAttribute("name", name)
        features.append(feature)
    outlines.dataProvider().addFeatures(features)
    outlines.updateExtents()
    outlines.setRenderer(outline_renderer("#202020", 0.6))
    text = QgsTextFormat()
    text.setFont(QFont("Sans"))
    text.setSize(9)
    text.setColor(QColor("#202020"))
    buffer = QgsTextBufferSettings()
    buffer.setEnabled(True)
    buffer.setSize(1.0)
    buffer.setColor(QColor("white"))
    text.setBuffer(buffer)
    labels = QgsPalLayerSettings()
    labels.fieldName = "name"
    labels.placement = QgsPalLayerSettings.Placement.OverPoint
    labels.setFormat(text)
    outlines.setLabeling(QgsVectorLayerSimpleLabeling(labels))
    outlines.setLabelsEnabled(True)
    return outlines


CONTEXT_MARGIN = 0.12  # share of the area's extent shown around it on each side
FURNITURE_HEIGHT = 16.0  # mm below the map for the scale bar and the north arrow
LEGEND_SPARE = 6.0  # mm: one legend row


def render_layout(
    output,
    layers,
    width=1600,
    extent_layer=None,
    title=None,
    legend_layers=None,
    transform_context=None,
    districts=None,
    max_height=None,
):
    """A map with context through a QGIS print layout (``QgsPrintLayout``), as a PNG; return the path.

    ``layers`` (top first) under ``districts`` (boundaries and names, e.g. from
    ``district_outlines``), with a title, a scale bar, a north arrow and a legend of
    ``legend_layers`` (default: the vector layers of ``layers``) below the map;
    exported by ``QgsLayoutExporter``. The map is in the CRS of ``extent_layer``
    (default: the first layer) and shows its extent with CONTEXT_MARGIN around it; the
    scale bar and the north arrow are below the map (never over cells), then the legend.
    """
    from qgis.core import (
        QgsLayoutExporter,
        QgsLayoutItemMap,
        QgsPrintLayout,
        QgsProject,
    )

    if not layers:
        raise RenderError("no layer to draw")
    reference = extent_layer or layers[0]
    drawn = ([districts] if districts is not None else []) + list(layers)
    project = QgsProject()  # a private project: safe in a Processing thread
    project.setCrs(reference.crs())
    if transform_context is not None:
        project.setTransformContext(transform_context)
    settings = QgsMapSettings()
    settings.setDestinationCrs(reference.crs())
    settings.setTransformContext(transform_context or QgsCoordinateTransformContext())
    extent = QgsRectangle(settings.layerExtentToOutputExtent(reference, reference.extent()))
    if extent.isEmpty():
        extent.grow(500)
    extent.scale(1 + 2 * CONTEXT_MARGIN)  # some land around the area, not only its cells
    # page in millimetres: 180 mm wide map (a report column), legend and furniture around it
    map_width = 180.0
    map_height = map_width * extent.height() / extent.width()
    if max_height:
        map_height = min(map_height, map_width * max_height / width)
        map_width = min(map_width, map_height * extent.width() / extent.height())
    margin, title_height = 6.0, 10.0 if title else 0.0
    legend_entries_count = len(legend_entries(legend_layers or layers)) + (
        1 if districts is not None else 0
    )
    legend_layers_count = len(
        [layer for layer in (legend_layers or layers) if isinstance(layer, QgsVectorLayer)]
    ) + (1 if districts is not None else 0)
    # generous (title, a heading per layer, a row per entry): the image is trimmed below
    legend_height = 12.0 + 7.0 * (legend_entries_count + legend_layers_count)
    page_width = max(map_width, 120.0) + 2 * margin
    below = top_of_legend = 4 + FURNITURE_HEIGHT  # scale bar and north arrow below the map
    page_height = margin + title_height + map_height + below + legend_height + margin
    layout = QgsPrintLayout(project)
    layout.initializeDefaults()
    layout.pageCollection().page(0).setPageSize(_mm_size(page_width, page_height))
    top = margin
    if title:
        _add_title(layout, title, margin, page_width - 2 * margin, title_height)
        top += title_height
    item = QgsLayoutItemMap(layout)
    item.setLayers(drawn)
    item.setCrs(reference.crs())
    item.setFrameEnabled(True)
    layout.addLayoutItem(item)
    item.attemptMove(_mm_point(margin, top))
    item.attemptResize(_mm_size(map_width, map_height))
    item.setExtent(extent)
    item.setBackgroundColor(QColor("white"))
    # the north arrow and the scale bar sit below the map, never over its cells
    _add_north_arrow(layout, item, margin + map_width - 9, top + map_height + 3)
    _add_scale_bar(layout, item, margin, top + map_height + 3)
    listed = legend_layers if legend_layers is not None else list(layers)
    listed = listed + ([districts] if districts is not None else [])
    legend_top = top + map_height + top_of_legend
    legend = _add_legend(layout, item, listed, map_width >= 150, margin, legend_top)
    # the page reaches well below the legend (its reported size can fall short of its last
    # entry, which was clipped); the white below it is trimmed from the image
    drawn_height = legend.sizeWithUnits().height() + LEGEND_SPARE
    page_height = max(page_height, legend_top + drawn_height + margin)
    layout.pageCollection().page(0).setPageSize(_mm_size(page_width, page_height))
    # rendered to an image and saved by Qt: no GDAL georeferencing pass over the PNG
    dpi = max(72.0, width / (page_width / 25.4))
    image = QgsLayoutExporter(layout).renderPageToImage(0, QSize(), dpi)
    if not image.isNull():
        image = _trim_bottom(image, int(margin / 25.4 * dpi))
    if image.isNull() or not image.save(output, "PNG"):
        raise RenderError(f"cannot write {output} (print layout of {page_width:.0f} mm)")
    return output


def _trim_bottom(image, keep):
    """``image`` cut ``keep`` pixels below its last row that is not white."""
    import numpy as np

    rgb = image.convertToFormat(QImage.Format.Format_RGB888)
    pointer = rgb.constBits()
    pointer.setsize(rgb.sizeInBytes())
    rows = np.frombuffer(pointer, np.uint8).reshape(rgb.height(), rgb.bytesPerLine())
    inked = np.flatnonzero((rows[:, : rgb.width() * 3] < 245).any(axis=1))
    if not len(inked):
        return image
    return image.copy(0, 0, image.width(), min(image.height(), int(inked[-1]) + 1 + keep))


def _mm_point(x, y):
    from qgis.core import QgsLayoutPoint, QgsUnitTypes

    return QgsLayoutPoint(x, y, QgsUnitTypes.LayoutMillimeters)


def _mm_size(width, height):
    from qgis.core import QgsLayoutSize, QgsUnitTypes

    return QgsLayoutSize(width, height, QgsUnitTypes.LayoutMillimeters)


def _add_title(layout, title, margin, width, height):
    from qgis.core import QgsLayoutItemLabel

    label = QgsLayoutItemLabel(layout)
    label.setText(title)
    label.setFont(QFont("Sans", 12))
    layout.addLayoutItem(label)
    label.attemptMove(_mm_point(margin, margin))
    label.attemptResize(_mm_size(width, height))


def _add_north_arrow(layout, map_item, x, y):
    from qgis.core import QgsLayoutItemPicture

    north = QgsLayoutItemPicture(layout)
    north.setPicturePath(":/images/north_arrows/layout_default_north_arrow.svg")
    north.setLinkedMap(map_item)
    north.setNorthMode(QgsLayoutItemPicture.NorthMode.GridNorth)
    north.setBackgroundEnabled(True)
    north.setBackgroundColor(QColor(255, 255, 255, 200))
    layout.addLayoutItem(north)
    north.attemptResize(_mm_size(9, 14))
    north.attemptMove(_mm_point(x, y))


def _add_scale_bar(layout, map_item, x, y):
    from qgis.core import QgsLayoutItemScaleBar, QgsUnitTypes

    scalebar = QgsLayoutItemScaleBar(layout)
    scalebar.setStyle("Single Box")
    scalebar.setLinkedMap(map_item)
    scalebar.applyDefaultSize(QgsUnitTypes.DistanceKilometers)
    scalebar.setUnits(QgsUnitTypes.DistanceKilometers)
    if map_item.crs().mapUnits() == QgsUnitTypes.DistanceMeters:
        # two segments of a round length, the bar about a third of the map: labels never overlap
        from qgis.core import QgsScaleBarSettings

        segment = _round_length(map_item.extent().width() / 1000 / 6)
        scalebar.setSegmentSizeMode(QgsScaleBarSettings.SegmentSizeMode.SegmentSizeFixed)
        scalebar.setNumberOfSegments(2)
        scalebar.setUnitsPerSegment(segment)
    scalebar.setUnitLabel("km")
    scalebar.setNumberOfSegmentsLeft(0)
    scalebar.setBackgroundEnabled(True)
    scalebar.setBackgroundColor(QColor(255, 255, 255, 200))
    layout.addLayoutItem(scalebar)
    scalebar.attemptMove(_mm_point(x, y))


def _round_length(value):
    """The largest 1, 2 or 5 × 10^k not above ``value`` (> 0)."""
    import math

    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return max(step * power for step in (1, 2, 5) if step * power <= value)


def _add_legend(layout, map_item, layers, two_columns, x, y):
    """The legend of ``layers``' vector layers at (x, y) mm, sized to its contents."""
    from qgis.core import QgsLayerTreeLayer, QgsLayoutItemLegend

    legend = QgsLayoutItemLegend(layout)
    legend.setTitle("Legend")
    legend.setLinkedMap(map_item)
    legend.setAutoUpdateModel(False)
    root = legend.model().rootGroup()
    root.removeAllChildren()
    for layer in layers:
        if isinstance(layer, QgsVectorLayer):
            root.addChildNode(QgsLayerTreeLayer(layer))
    legend.setColumnCount(2 if two_columns else 1)
    legend.setSymbolHeight(4)
    legend.setSymbolWidth(6)
    legend.setFrameEnabled(False)
    legend.setBoxSpace(1)
    legend.setResizeToContents(True)
    layout.addLayoutItem(legend)
    legend.attemptMove(_mm_point(x, y))
    legend.adjustBoxSize()
    return legend


def render_with_context(output, layers, width=1600, districts_of=None, **options):
    """``render_layout`` with the districts of ``districts_of``'s cells; ``render_layers`` if the layout fails.

    Returns (path, None) or (path, why the plain map was drawn instead).
    """
    try:
        districts = district_outlines(districts_of) if districts_of is not None else None
        # a print layout is exported on the main thread, where QGIS allows it
        layout = on_main_thread(
            render_layout, output, layers, width, districts=districts, **options
        )
        return layout, None
    # a layout problem must not cost the report its maps: RenderError (a RuntimeError), a C++
    # object gone (sip's RuntimeError), a file that cannot be written; a bug still fails loudly
    except (RuntimeError, OSError) as error:
        options.pop("title", None)
        path = render_layers(output, layers, width, legend_below=True, **options)
        return path, str(error)


def render_styled_map(output, layer, style, width, max_height, transform_context=None):
    """``layer`` drawn in the style file ``style`` (None: the style it has) with its districts'
    outlines, for a report: ``render_with_context``'s (path, why the plain map was drawn
    instead). A style that cannot be applied is a RenderError."""
    if style:
        # loadFromLocalDb=True: read the .qml file (otherwise a GeoPackage's own default style wins)
        message, loaded = layer.loadNamedStyle(style, True)
        if not loaded:
            name = os.path.splitext(os.path.basename(style))[0]
            raise RenderError(f"the style {name} could not be applied: {message}")
    return render_with_context(
        output,
        [layer],
        width,
        districts_of=layer,
        transform_context=transform_context,
        max_height=max_height,
    )


def render_output_map(
    gpkg_path, png_path, label, width, max_height, context, feedback, districts=False
):
    """A povmap output's one layer (``NAME.gpkg``, layer ``NAME``) in its own style, for a report.

    With ``districts``, the district outlines of its cells are drawn over it. Returns the PNG's
    path, or None when the map cannot be drawn (said in the log; the report then has none).
    """
    layer_name = os.path.splitext(os.path.basename(gpkg_path))[0]
    try:
        layer = QgsVectorLayer(f"{gpkg_path}|layername={layer_name}", label, "ogr")
        if not layer.isValid():
            raise RenderError(f"cannot open {gpkg_path}")
        path, fallback = render_with_context(
            png_path,
            [layer],
            width,
            districts_of=layer if districts else None,
            extent_layer=layer,
            legend_layers=[layer],
            transform_context=context.transformContext(),
            max_height=max_height,
        )
    except RenderError as error:
        feedback.reportError(
            f"The map could not be rendered ({error}); the report has none.", fatalError=False
        )
        return None
    if fallback:
        feedback.pushWarning(f"Map drawn without a print layout ({fallback}).")
    return path
