"""Writing grid-like GeoPackages that open styled in QGIS, without a question.

A povmap GeoPackage holds one layer and no ``layer_styles`` table: QGIS 3.22
asks "Select Items to Add" for any GeoPackage with that table (it counts it as
a second item), so a file added by hand (Browser, Data Source Manager, drag and
drop) would not open straight away. Instead:

- the default style is ``NAME.qml`` beside ``NAME.gpkg``: QGIS loads it as the
  layer's default style whenever the file is added, with or without the plugin;
- every style of the layer (default first, extras such as probability or
  folds) travels inside the file as the ``povmap_styles`` metadata item (JSON
  in the GeoPackage's own metadata tables, which QGIS never lists as layers);
  the plugin puts them into the layer's style list when Processing loads it.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .atomic import atomic_output

if TYPE_CHECKING:
    import pandas as pd


GRID_FORMAT_VERSION = "1.0"
STYLES_ITEM = "povmap_styles"  # layer metadata item: [{"name", "qml"}], the default style first


def layer_name_for(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def style_file_path(path: str) -> str:
    """``NAME.qml`` beside the GeoPackage ``NAME.gpkg``: the default style QGIS loads with it."""
    return os.path.splitext(path)[0] + ".qml"


def write_layer(
    frame: pd.DataFrame,
    path: str,
    style_qml_path: str | None = None,
    style_name: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    extra_styles: Sequence[tuple[str, str]] | None = None,
) -> str:
    """Write ``frame`` as the single layer of a new GeoPackage at ``path``.

    Written under a temporary name and renamed when complete, its style file
    with it. ``extra_styles``: [(qml path, name)] offered in the layer's Styles menu.
    """
    import pyogrio

    layer = layer_name_for(path)
    styles = read_styles(style_qml_path, style_name or layer, extra_styles)
    with styled_output(path, styles) as temporary:
        pyogrio.write_dataframe(
            frame,
            temporary,
            layer=layer,
            driver="GPKG",
            layer_metadata=_stringify({**(metadata or {}), **styles_metadata(styles)}),
        )
    return layer


def write_layer_chunks(
    chunks: Iterable[pd.DataFrame],
    path: str,
    style_qml_path: str | None = None,
    style_name: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    extra_styles: Sequence[tuple[str, str]] | None = None,
    geometry_type: str | None = None,
) -> str:
    """Like ``write_layer`` for a layer given as GeoDataFrames written one after another.

    Memory holds one chunk at a time; the first chunk sets the fields.
    ``geometry_type``: the layer's (e.g. the source layer's, "MultiPolygon"), so
    that it does not depend on the first chunk's geometries; None or "Unknown": inferred.
    """
    layer = layer_name_for(path)
    styles = read_styles(style_qml_path, style_name or layer, extra_styles)
    with styled_output(path, styles) as temporary:
        _write_chunks(
            chunks, temporary, layer, {**(metadata or {}), **styles_metadata(styles)}, geometry_type
        )
    return layer


def _write_chunks(
    chunks: Iterable[pd.DataFrame],
    path: str,
    layer: str,
    metadata: Mapping[str, Any],
    geometry_type: str | None,
) -> None:
    """``chunks`` appended one after another as ``layer`` of the GeoPackage ``path``, the
    first with the layer's ``metadata``; ``geometry_type`` None or "Unknown": inferred."""
    import pyogrio

    known = geometry_type if geometry_type and geometry_type != "Unknown" else None
    first = True
    # no enumerate(): its reused (number, chunk) tuple would keep the last chunk alive while
    # the next is made, and memory is to hold one chunk at a time
    for frame in chunks:
        pyogrio.write_dataframe(
            frame,
            path,
            layer=layer,
            driver="GPKG",
            geometry_type=known,
            promote_to_multi=bool(known and known.startswith("Multi")) or None,
            append=not first,
            layer_metadata=_stringify(metadata) if first else None,
        )
        first = False
        del frame


def write_layer_with_table(
    frame: pd.DataFrame | Iterable[pd.DataFrame],
    path: str,
    style_qml_path: str | None,
    style_name: str,
    metadata: Mapping[str, str],
    table_path: str,
    header: Sequence[str],
    rows: Iterable[Sequence[Any]],
    geometry_type: str | None = None,
) -> None:
    """``frame`` as the single layer of a new GeoPackage at ``path`` (styled, ``metadata`` in the
    layer's metadata) and ``rows`` under ``header`` as the CSV ``table_path``: both appear, or
    neither (a step's OUTPUT and its table, e.g. target's ALLOCATION). ``frame`` may be
    GeoDataFrames written one after another (memory holds one; see ``write_layer_chunks``)."""
    import csv

    import pandas as pd

    styles = read_styles(style_qml_path, style_name)
    chunks = [frame] if isinstance(frame, pd.DataFrame) else frame
    with styled_output(path, styles) as gpkg_partial, atomic_output(table_path) as csv_partial:
        _write_chunks(
            chunks,
            gpkg_partial,
            layer_name_for(path),
            {**metadata, **styles_metadata(styles)},
            geometry_type,
        )
        with open(csv_partial, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            for row in rows:
                writer.writerow(row)


def read_styles(
    default_qml_path: str | None,
    default_name: str,
    extra_styles: Sequence[tuple[str, str]] | None = None,
) -> list[tuple[str, str]]:
    """[(name, QML text)] of a layer's styles, the default first; [] without a default style."""
    if not default_qml_path:
        return []
    styles = []
    for qml_path, name in [(default_qml_path, default_name), *(extra_styles or [])]:
        with open(qml_path, encoding="utf-8") as handle:
            styles.append((name, handle.read()))
    return styles


def styles_metadata(styles: Sequence[tuple[str, str]]) -> dict[str, str]:
    """The layer metadata item that carries ``styles`` [(name, QML)] inside the GeoPackage."""
    if not styles:
        return {}
    return {STYLES_ITEM: json.dumps([{"name": name, "qml": qml} for name, qml in styles])}


@contextlib.contextmanager
def styled_output(path: str, styles: Sequence[tuple[str, str]]) -> Iterator[str]:
    """Yield a temporary GeoPackage path; on success publish it and ``NAME.qml`` (the default
    style of ``styles``) beside it, else neither. Without styles a stale ``NAME.qml`` is removed:
    it would dress the new file in an old style."""
    style_file = style_file_path(path)
    with atomic_output(path) as temporary:
        if not styles:
            yield temporary
            with contextlib.suppress(FileNotFoundError):
                os.remove(style_file)
            return
        with atomic_output(style_file) as style_partial:  # renamed first, then the GeoPackage
            yield temporary
            with open(style_partial, "w", encoding="utf-8") as handle:
                handle.write(styles[0][1])


def stored_styles(path: str, layer: str | None = None) -> list[tuple[str, str]]:
    """[(name, QML)] carried by a povmap GeoPackage layer, the default first; [] when none."""
    metadata = povmap_layer_metadata(path, layer or layer_name_for(path))
    text = metadata.get("povmap:styles")  # STYLES_ITEM as povmap_layer_metadata names it
    try:
        return [(style["name"], style["qml"]) for style in json.loads(text or "[]")]
    except (ValueError, TypeError, KeyError):
        return []


def read_layer_metadata(path: str, layer: str | None = None) -> dict[str, str]:
    import pyogrio

    return pyogrio.read_info(path, layer=layer).get("layer_metadata") or {}


def _stringify(metadata: Mapping[str, Any] | None) -> dict[str, str] | None:
    return {str(key): str(value) for key, value in (metadata or {}).items()} or None


def povmap_layer_metadata(path: str, layer: str | None) -> dict[str, str]:
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
    except ImportError:  # QGIS's own Python has no pyogrio: the metadata XML below has every item
        metadata = {}
    except (RuntimeError, OSError) as error:  # pyogrio's DataSourceError/DataLayerError, I/O
        warnings.warn(
            f"the layer metadata of '{path}' could not be read through GDAL ({error}); "
            "reading the GeoPackage's metadata table instead",
            RuntimeWarning,
            stacklevel=2,
        )
        metadata = {}
    for key, value in _gdal_metadata_items(path, layer) + list(metadata.items()):
        if ":" not in key and "=" in value and key == "povmap":
            key, value = (f"povmap:{value.split('=', 1)[0]}", value.split("=", 1)[1])
        if key.startswith("povmap_"):
            key = "povmap:" + key[len("povmap_") :]
        metadata.setdefault(key, value)
    return metadata


def _gdal_metadata_items(path: str, layer: str | None) -> list[tuple[str, str]]:
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
