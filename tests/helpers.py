"""Small helpers for writing test layers and reading outputs (no QGIS)."""

import geopandas
import numpy as np
import pandas
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


def cells_of(frame):
    """cell_id → row as dicts, for comparisons."""
    return {int(row.cell_id): row for row in frame.itertuples()}


def square(xmin, ymin, size):
    return shapely.box(xmin, ymin, xmin + size, ymin + size)


__all__ = ["write_points", "write_polygons", "read_grid", "cells_of", "square", "np", "pandas"]
