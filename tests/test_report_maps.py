"""Report maps with context (issue 10 part 4): district boundaries and names, scale bar, north arrow
and legend through a QGIS print layout."""

import geopandas
import numpy as np
import shapely


def cells_layer(tmp_path):
    from qgis.core import QgsVectorLayer

    from povmap_qgis.core.geopackage import write_layer
    from povmap_qgis.paths import style_path

    boxes = [
        shapely.box(
            600000 + 1000 * col, 2800000 + 1000 * row, 601000 + 1000 * col, 2801000 + 1000 * row
        )
        for row in range(4)
        for col in range(6)
    ]
    frame = geopandas.GeoDataFrame(
        {
            "cell_id": np.arange(24),
            "district": ["Dadu" if index % 6 < 3 else "Sanghar" for index in range(24)],
            "pred": np.arange(24) % 2,
        },
        geometry=boxes,
        crs="EPSG:32642",
    )
    frame.loc[7, "district"] = None  # a cell without a district is in no outline
    path = str(tmp_path / "cells.gpkg")
    write_layer(frame, path, style_path("prediction_class"), "class")
    return QgsVectorLayer(path, "cells", "ogr")


def test_district_outlines_dissolve_cells_by_district_and_label_them(qgis_app, tmp_path):
    from povmap_qgis.processing.rendering import district_outlines

    outlines = district_outlines(cells_layer(tmp_path))
    features = {feature["name"]: feature.geometry() for feature in outlines.getFeatures()}
    assert sorted(features) == ["Dadu", "Sanghar"]
    assert features["Sanghar"].area() == 12 * 1000 * 1000
    assert (
        features["Dadu"].area() == 12 * 1000 * 1000
    )  # the cell without a district is a hole, filled
    assert outlines.labelsEnabled() and outlines.labeling().settings().fieldName == "name"


def test_a_layout_map_has_the_map_legend_scale_bar_and_north_arrow(qgis_app, tmp_path):
    from PIL import Image

    from povmap_qgis.processing.rendering import district_outlines, render_with_context

    layer = cells_layer(tmp_path)
    path, fallback = render_with_context(
        str(tmp_path / "map.png"), [layer], 900, districts_of=layer, title="Predicted class"
    )
    assert fallback is None and district_outlines(layer) is not None
    pixels = np.asarray(Image.open(path).convert("RGB"))
    height, width, _ = pixels.shape
    assert abs(width - 900) <= 2 and height > width * 4 / 6  # the map plus a legend below it
    poor, not_poor = (234, 121, 40), (119, 90, 169)  # the class style at its 85 % opacity
    for colour in (poor, not_poor):
        found = np.all(np.abs(pixels.astype(int) - colour) <= 3, axis=-1)
        rows = np.flatnonzero(found.any(axis=1))
        # drawn in the map and again as legend swatches below it
        assert found.sum() > 2000 and rows.max() > height * 0.75, colour
    # the map: the rows holding cells, up to the first gap (the legend swatches come later)
    cells = np.zeros(height, bool)
    for colour in (poor, not_poor):
        cells |= np.all(np.abs(pixels.astype(int) - colour) <= 3, axis=-1).any(axis=1)
    rows = np.flatnonzero(cells)
    map_end = rows[np.flatnonzero(np.diff(rows) > 20)[0]]
    in_map = np.zeros(width, bool)
    for colour in (poor, not_poor):
        in_map |= np.all(np.abs(pixels[: map_end + 1].astype(int) - colour) <= 3, axis=-1).any(0)
    columns = np.flatnonzero(in_map)
    # context: land around the cells on both sides (the extent with a margin), not cells to the edge
    assert columns.min() > 0.08 * width and columns.max() < 0.92 * width, (columns.min(), width)
    dark = np.all(pixels < 60, axis=-1)
    # the north arrow (right) and the scale bar (left) below the map, never over its cells
    below = dark[map_end + 5 : map_end + int(0.12 * height)]
    assert below[:, int(width * 0.8) :].sum() > 50 and below[:, : int(width * 0.3)].sum() > 50
    # the page ends below the legend: nothing drawn into the last rows (it was cut off)
    assert (pixels[-max(3, height // 100) :] > 240).all()


def test_a_written_layer_is_drawn_in_its_style_and_a_style_less_one_as_outlines(qgis_app, tmp_path):
    """render() (scripts/render_map.py, the demo's map) draws a povmap GeoPackage with the
    style beside it or carried inside it (a copy without its .qml), and a file with neither
    as outlines, so that layers below stay visible."""
    import shutil

    from qgis.PyQt.QtGui import QImage
    from report_checks import pixels_of, symbol_colours

    from povmap_qgis.processing.rendering import render

    cells_layer(tmp_path)
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy(tmp_path / "cells.gpkg", moved / "cells.gpkg")
    bare = geopandas.read_file(tmp_path / "cells.gpkg", engine="pyogrio")
    bare.to_file(tmp_path / "bare.gpkg", engine="pyogrio")
    colours, _ = symbol_colours("prediction_class")
    shares = {}
    for name, path in (
        ("styled", tmp_path / "cells.gpkg"),
        ("moved", moved / "cells.gpkg"),
        ("bare", tmp_path / "bare.gpkg"),
    ):
        image = QImage(render(str(tmp_path / f"{name}.png"), [str(path)], width=400))
        image = image.convertToFormat(QImage.Format_RGB888)
        pixels = np.frombuffer(image.constBits().asstring(image.sizeInBytes()), np.uint8)
        pixels = pixels.reshape(image.height(), image.bytesPerLine())[:, : image.width() * 3]
        pixels = pixels.reshape(-1, 3)
        shares[name] = [float(pixels_of(pixels, colour).mean()) for colour in colours.values()]
    for name in ("styled", "moved"):
        assert all(share > 0.05 for share in shares[name]), (name, shares)  # both classes drawn
    assert all(share < 0.01 for share in shares["bare"]), shares


def test_a_tall_area_keeps_its_whole_legend_and_furniture_off_the_cells(qgis_app, tmp_path):
    """A tall area (a one-column legend, as for one district): the legend's last entry (the
    district outline) is on the page, not cut off, and the page ends in white below it."""
    from PIL import Image
    from qgis.core import QgsVectorLayer

    from povmap_qgis.core.geopackage import write_layer
    from povmap_qgis.paths import style_path
    from povmap_qgis.processing.rendering import render_with_context

    boxes = [
        shapely.box(
            600000 + 1000 * col, 2800000 + 1000 * row, 601000 + 1000 * col, 2801000 + 1000 * row
        )
        for row in range(10)
        for col in range(3)
    ]
    frame = geopandas.GeoDataFrame(
        {"cell_id": np.arange(30), "district": ["Sorabad"] * 30, "pred": np.arange(30) % 2},
        geometry=boxes,
        crs="EPSG:32642",
    )
    write_layer(frame, str(tmp_path / "tall.gpkg"), style_path("prediction_class"), "class")
    layer = QgsVectorLayer(str(tmp_path / "tall.gpkg"), "cells", "ogr")
    path, fallback = render_with_context(
        str(tmp_path / "tall.png"), [layer], 1100, districts_of=layer, max_height=900
    )
    assert fallback is None
    pixels = np.asarray(Image.open(path).convert("RGB"))
    height = pixels.shape[0]
    dark = np.all(pixels < 60, axis=-1).any(axis=1)
    last_dark = np.flatnonzero(dark)[-1]
    # the last legend entry (the districts' outline swatch, dark) ends above a white margin
    assert last_dark < height - 10 and (pixels[last_dark + 5 :] > 240).all()


def test_a_layout_map_drawn_from_a_background_task_is_exported_on_the_main_thread(
    qgis_app, tmp_path, monkeypatch
):
    """Processing runs an algorithm in a QgsTask's thread; QGIS does not export print layouts off
    its main thread, so the layout is handed to the main thread (the caller waits) and the map
    is the one the main thread draws itself: no fallback, the same pixels."""
    from PIL import Image
    from qgis.core import QgsApplication, QgsTask
    from qgis.PyQt.QtCore import QCoreApplication, QThread

    from povmap_qgis.processing import rendering

    threads = []
    layout_export = rendering.render_layout

    def recording(*args, **kwargs):
        threads.append(QThread.currentThread() == QCoreApplication.instance().thread())
        return layout_export(*args, **kwargs)

    monkeypatch.setattr(rendering, "render_layout", recording)
    outcome = {}

    class Drawing(QgsTask):
        def run(self):
            try:
                layer = cells_layer(tmp_path / "task")  # loaded in the task's thread
                outcome["drawn"] = rendering.render_with_context(
                    str(tmp_path / "task.png"), [layer], 600, districts_of=layer
                )
                outcome["thread"] = QThread.currentThread()
            except Exception as error:  # reported below, in the test's thread
                outcome["error"] = error
            return True

    (tmp_path / "task").mkdir()
    task = Drawing("draw a report map", QgsTask.Flag.CanCancel)
    QgsApplication.taskManager().addTask(task)
    for _ in range(6000):  # the main thread serves the layout export while the task waits
        QCoreApplication.processEvents()
        if "drawn" in outcome or "error" in outcome:
            break
        QThread.msleep(10)
    assert "error" not in outcome, outcome.get("error")
    path, fallback = outcome["drawn"]
    assert fallback is None and outcome["thread"] != QCoreApplication.instance().thread()
    assert threads == [True]
    (tmp_path / "main").mkdir()
    layer = cells_layer(tmp_path / "main")
    reference, _ = rendering.render_with_context(
        str(tmp_path / "main.png"), [layer], 600, districts_of=layer
    )
    assert threads == [True, True]
    assert np.array_equal(
        np.asarray(Image.open(path).convert("RGB")),
        np.asarray(Image.open(reference).convert("RGB")),
    )


def test_a_main_thread_that_does_not_serve_the_call_never_hangs_the_run(qgis_app):
    """If the main thread is blocked (a script waiting for the task), the hand-over gives up after
    its wait and runs the call in the calling thread; the late-served job then does nothing."""
    import threading

    from qgis.PyQt.QtCore import QCoreApplication, QThread

    from povmap_qgis.processing.main_thread import on_main_thread

    main = QCoreApplication.instance().thread()
    calls, found = [], {}

    def where():
        calls.append(QThread.currentThread() == main)
        return len(calls)

    def background(wait_s):
        found[wait_s] = on_main_thread(where, wait_s=wait_s)

    blocked = threading.Thread(target=background, args=(0.2,))
    blocked.start()
    blocked.join()  # the main thread serves nothing meanwhile
    assert found[0.2] == 1 and calls == [False]
    for _ in range(50):  # the queued job arrives late and does nothing
        QCoreApplication.processEvents()
    assert calls == [False]
    served = threading.Thread(target=background, args=(30.0,))
    served.start()
    while served.is_alive():
        QCoreApplication.processEvents()
        QThread.msleep(5)
    assert found[30.0] == 2 and calls == [False, True]
