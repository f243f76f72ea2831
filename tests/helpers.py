"""Small helpers for writing test layers and reading outputs (no QGIS)."""

import geopandas
import pyogrio
import shapely


def write_points(path, x, y, crs, layer=None, **fields):
    frame = geopandas.GeoDataFrame(fields, geometry=geopandas.points_from_xy(x, y), crs=crs)
    frame.to_file(path, layer=layer, engine="pyogrio")
    return path


def write_polygons(path, polygons, crs, layer=None, **fields):
    frame = geopandas.GeoDataFrame(fields, geometry=list(polygons), crs=crs)
    frame.to_file(path, layer=layer, engine="pyogrio")
    return path


def read_grid(path):
    return geopandas.read_file(path, layer=pyogrio.list_layers(path)[0][0], engine="pyogrio")


def square(xmin, ymin, size):
    return shapely.box(xmin, ymin, xmin + size, ymin + size)


def carried_styles(path, layer=None):
    """{style name: QML} a povmap GeoPackage carries, default first, as GDAL reads its metadata.

    Also checks the contract of core/geopackage.py: no ``layer_styles`` table (QGIS 3.22 would
    ask "Select Items to Add"), and ``NAME.qml`` beside the file holds the default style.
    """
    import json
    import os

    assert "layer_styles" not in dict(pyogrio.list_layers(path))
    metadata = pyogrio.read_info(path, layer=layer)["layer_metadata"]
    styles = {style["name"]: style["qml"] for style in json.loads(metadata["povmap_styles"])}
    with open(os.path.splitext(path)[0] + ".qml", encoding="utf-8") as handle:
        assert handle.read() == next(iter(styles.values()))
    return styles
