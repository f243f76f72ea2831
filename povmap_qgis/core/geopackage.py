"""Writing grid-like GeoPackages that open styled in QGIS.

The style travels inside the file (the ``layer_styles`` table QGIS reads on
load), so a layer looks right in the desktop, after ``qgis_process`` and when
a colleague opens the file, without QGIS being involved in writing it.
"""

import contextlib
import datetime
import os

from .atomic import atomic_output

GRID_FORMAT_VERSION = "1.0"


def layer_name_for(path):
    return os.path.splitext(os.path.basename(path))[0]


def write_layer(
    frame, path, style_qml_path=None, style_name=None, metadata=None, extra_styles=None
):
    """Write ``frame`` as the single layer of a new GeoPackage at ``path``.

    Written under a temporary name and renamed when complete (styles included).
    ``extra_styles``: [(qml path, name)] offered in the layer's Styles menu.
    """
    import pyogrio

    layer = layer_name_for(path)
    with atomic_output(path) as temporary:
        pyogrio.write_dataframe(
            frame, temporary, layer=layer, driver="GPKG", layer_metadata=_stringify(metadata)
        )
        if style_qml_path:
            styles = [(style_qml_path, style_name or layer, True)] + [
                (qml, name, False) for qml, name in extra_styles or []
            ]
            embed_styles(temporary, layer, styles)
    return layer


def write_layer_chunks(chunks, path, style_qml_path=None, style_name=None, metadata=None):
    """Like ``write_layer`` for a layer given as GeoDataFrames written one after another.

    Memory holds one chunk at a time; the first chunk sets the fields.
    """
    import pyogrio

    layer = layer_name_for(path)
    with atomic_output(path) as temporary:
        for number, frame in enumerate(chunks):
            pyogrio.write_dataframe(
                frame,
                temporary,
                layer=layer,
                driver="GPKG",
                append=number > 0,
                layer_metadata=None if number else _stringify(metadata),
            )
        if style_qml_path:
            embed_styles(temporary, layer, [(style_qml_path, style_name or layer, True)])
    return layer


def embed_styles(path, layer, styles):
    """Store QML styles [(path, name, is default)] in QGIS's ``layer_styles`` table."""
    import pandas
    import pyogrio

    geometry_column = pyogrio.read_info(path, layer=layer).get("geometry_name") or "geom"
    rows = []
    for qml_path, name, default in styles:
        with open(qml_path, encoding="utf-8") as handle:
            qml = handle.read()
        rows.append(
            {
                "f_table_catalog": "",
                "f_table_schema": "",
                "f_table_name": layer,
                "f_geometry_column": geometry_column,
                "styleName": name,
                "styleQML": qml,
                "styleSLD": "",
                "useAsDefault": bool(default),
                "description": f"povmap-qgis style {os.path.basename(qml_path)}",
                "owner": "",
                "ui": "",
                "update_time": datetime.datetime.now(datetime.UTC).replace(tzinfo=None),
            }
        )
    pyogrio.write_dataframe(
        pandas.DataFrame(rows), path, layer="layer_styles", driver="GPKG", append=True
    )


def read_layer_metadata(path, layer=None):
    import pyogrio

    return pyogrio.read_info(path, layer=layer).get("layer_metadata") or {}


def _stringify(metadata):
    return {str(key): str(value) for key, value in (metadata or {}).items()} or None


def povmap_layer_metadata(path, layer):
    """Layer metadata (GeoPackage) as a dict, {} where the format has none.

    GDAL splits a metadata item at its first ':' or '=', so an item written
    as ``povmap:threshold=0.5`` reads back through pyogrio as
    ``{"povmap": "threshold=0.5"}`` and items sharing the prefix overwrite
    each other. The GeoPackage's own metadata XML is read here to get every
    item back; ``povmap_threshold`` and ``povmap:threshold`` both answer to
    ``povmap:threshold``.
    """
    try:
        metadata = dict(read_layer_metadata(path, layer))
    except Exception:
        metadata = {}
    for key, value in _gdal_metadata_items(path, layer) + list(metadata.items()):
        if ":" not in key and "=" in value and key == "povmap":
            key, value = (f"povmap:{value.split('=', 1)[0]}", value.split("=", 1)[1])
        if key.startswith("povmap_"):
            key = "povmap:" + key[len("povmap_") :]
        metadata.setdefault(key, value)
    return metadata


def _gdal_metadata_items(path, layer):
    """(key, value) of the GDAL metadata items stored for ``layer`` in a GeoPackage; [] otherwise."""
    import sqlite3
    import xml.etree.ElementTree as ElementTree

    if not path.lower().endswith(".gpkg") or not layer:
        return []
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
            documents = connection.execute(
                "SELECT m.metadata FROM gpkg_metadata m JOIN gpkg_metadata_reference r ON r.md_file_id = m.id "
                "WHERE r.reference_scope = 'table' AND r.table_name = ? AND m.md_standard_uri = 'http://gdal.org'",
                (layer,),
            ).fetchall()
        items = []
        for (document,) in documents:
            for element in ElementTree.fromstring(document).iter("Metadata"):
                if element.get("domain") in (None, ""):
                    items += [
                        (item.get("key", ""), item.text or "") for item in element.iter("MDI")
                    ]
        return items
    except (sqlite3.Error, ElementTree.ParseError):
        return []
