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
