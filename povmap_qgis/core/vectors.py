"""Reading the user's vector layers with clear messages.

Layers arrive as OGR-readable files (the Processing adapters export layers
that are not, e.g. memory layers or layers with a filter).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import PovmapInputError

if TYPE_CHECKING:
    import geopandas

    from .progress import Reporter


NUMERIC_DTYPES = ("int", "uint", "float")
# Features read (or written) at a time by the steps whose memory must not grow with the
# country's cells: predict, target and district estimates hold one window of polygons.
WINDOW_CELLS = 65_536


def read_windows(
    path: str, layer: str | None, count: int, **options: Any
) -> Iterator[tuple[int, Any]]:
    """(first feature's index, GeoDataFrame) of ``count`` features, ``WINDOW_CELLS`` at a time,
    in the layer's order (pyogrio ``read_dataframe``'s ``options``, e.g. ``columns``)."""
    import pyogrio

    window = WINDOW_CELLS
    for start in range(0, count, window):
        yield (
            start,
            pyogrio.read_dataframe(
                path,
                layer=layer,
                skip_features=start,
                max_features=min(window, count - start),
                **options,
            ),
        )


def spatial_layer(path: str, layer: str | None, parameter: str) -> str | None:
    """``layer``, or the file's first layer with geometries when none is named.

    GeoPackages saved by QGIS with their styles also hold a ``layer_styles`` table.
    """
    import pyogrio

    if layer:
        return layer
    try:
        layers = pyogrio.list_layers(path)
    except Exception as error:
        raise PovmapInputError(parameter, f"cannot read '{path}': {error}") from None
    spatial = [name for name, geometry in layers if geometry]
    return spatial[0] if spatial else (layers[0][0] if len(layers) else None)


def layer_info(
    path: str, layer: str | None, parameter: str, require_crs: bool = True
) -> dict[str, Any]:
    """pyogrio's description of a layer, or a message naming ``parameter``.

    ``layer`` None: the first layer with geometries (see ``spatial_layer``).
    """
    import pyogrio

    layer = spatial_layer(path, layer, parameter)
    try:
        info = pyogrio.read_info(path, layer=layer)
    except Exception as error:
        raise PovmapInputError(
            parameter, f"cannot read '{path}'{_layer_suffix(layer)}: {error}"
        ) from None
    if require_crs and not info.get("geometry_type") and not info.get("crs"):
        raise PovmapInputError(
            parameter,
            f"the layer '{_name(path, layer)}' has no geometries (a table, e.g. a CSV file "
            "without coordinates); load a CSV with its X and Y fields as points (Layer ▸ Add "
            "Layer ▸ Add Delimited Text Layer) and save it as a GeoPackage, or choose a layer "
            "with geometries.",
        )
    if require_crs and not info.get("crs"):
        raise PovmapInputError(
            parameter,
            f"the layer '{_name(path, layer)}' has no CRS; set its CRS in the layer properties and save it.",
        )
    return info


def require_geometry(
    info: dict[str, Any], path: str, layer: str | None, parameter: str, kinds: Sequence[str]
) -> None:
    geometry_type = (
        (info.get("geometry_type") or "None").replace(" Z", "").replace(" M", "").replace("25D", "")
    )
    if geometry_type not in kinds:
        wanted = " or ".join(kinds)
        raise PovmapInputError(
            parameter,
            f"the layer '{_name(path, layer)}' has {geometry_type} geometries; a {wanted} layer is needed.",
        )


def require_field(
    info: dict[str, Any],
    field: str,
    path: str,
    layer: str | None,
    parameter: str,
    numeric: bool = False,
) -> str:
    """Check that ``field`` exists (and is numeric); return its dtype."""
    fields = list(info["fields"])
    if field not in fields:
        raise PovmapInputError(
            parameter,
            f"the field '{field}' is not in the layer '{_name(path, layer)}' (its fields: {', '.join(fields) or 'none'}).",
        )
    dtype = str(info["dtypes"][fields.index(field)])
    if numeric and not dtype.startswith(NUMERIC_DTYPES):
        raise PovmapInputError(
            parameter,
            f"the field '{field}' of the layer '{_name(path, layer)}' is {dtype}, not numeric; choose a numeric field or convert it with the Field calculator.",
        )
    return dtype


def read_points(
    path: str, layer: str | None, columns: Sequence[str] | None, parameter: str = "INPUT"
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], str | None]:
    """Point coordinates (x, y arrays in the layer CRS) and attribute table."""
    import pyogrio
    import shapely

    layer = spatial_layer(path, layer, parameter)
    meta, _, wkb, field_data = pyogrio.raw.read(path, layer=layer, columns=columns)
    table = dict(zip(meta["fields"], field_data, strict=True))
    plain = _plain_points(wkb)
    if plain is not None:  # every feature a 2D point: decoded without building geometries
        return plain[0], plain[1], table, meta["crs"]
    geometries = shapely.from_wkb(wkb)
    missing = shapely.is_missing(geometries) | shapely.is_empty(geometries)
    if shapely.get_num_geometries(geometries[~missing]).max(initial=1) > 1:
        raise PovmapInputError(
            parameter,
            f"the layer '{_name(path, layer)}' has multi-point features with several points; explode them first (Vector geometry ▸ Multipart to singleparts).",
        )
    x = np.full(len(geometries), np.nan)
    y = np.full(len(geometries), np.nan)
    coordinates = shapely.get_coordinates(shapely.get_geometry(geometries[~missing], 0))
    x[~missing], y[~missing] = coordinates[:, 0], coordinates[:, 1]
    return x, y, table, meta["crs"]


_POINT_WKB = np.dtype([("order", "u1"), ("type", "<u4"), ("x", "<f8"), ("y", "<f8")])


def _plain_points(wkb: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """x, y of WKB that is all little-endian 2D points (what OGR returns for a point layer).

    None for anything else (a missing or empty geometry, multi-points, Z or M values,
    big-endian WKB): then shapely decodes the geometries. Skipping shapely's geometry
    objects saves about 1 s per million points (Build training grid at 1.67 M).
    """
    if not len(wkb):
        return None
    try:
        joined = b"".join(wkb)
    except TypeError:  # a missing geometry (None)
        return None
    if len(joined) != _POINT_WKB.itemsize * len(wkb):
        return None
    points = np.frombuffer(joined, dtype=_POINT_WKB)
    if not ((points["order"] == 1).all() and (points["type"] == 1).all()):
        return None
    x, y = points["x"].copy(), points["y"].copy()
    if np.isnan(x).any() or np.isnan(y).any():  # POINT EMPTY is written as NaN coordinates
        return None
    return x, y


def read_polygons(
    path: str,
    layer: str | None,
    parameter: str,
    field: str | None = None,
    reporter: Reporter | None = None,
) -> geopandas.GeoDataFrame:
    """A GeoDataFrame of valid polygons; invalid ones are repaired and named."""
    import geopandas
    import shapely

    layer = spatial_layer(path, layer, parameter)
    info = layer_info(path, layer, parameter)
    require_geometry(info, path, layer, parameter, ("Polygon", "MultiPolygon"))
    if field:
        require_field(info, field, path, layer, parameter)
    frame = geopandas.read_file(
        path, layer=layer, columns=[field] if field else [], engine="pyogrio", fid_as_index=True
    )
    frame = frame[~(frame.geometry.isna() | frame.geometry.is_empty)]
    invalid = ~frame.geometry.is_valid
    if invalid.any():
        repaired = shapely.make_valid(frame.geometry.values[invalid.values])
        frame.loc[invalid, "geometry"] = [_polygonal_part(geometry) for geometry in repaired]
        ids = ", ".join(str(fid) for fid in frame.index[invalid][:10])
        if reporter:
            reporter.warning(
                f"{parameter}: repaired {int(invalid.sum())} invalid polygon(s) in '{_name(path, layer)}' (feature ids {ids}{'…' if invalid.sum() > 10 else ''})."
            )
        frame = frame[~frame.geometry.is_empty]
    if frame.empty:
        raise PovmapInputError(parameter, f"the layer '{_name(path, layer)}' has no polygons.")
    return frame


def _polygonal_part(geometry: Any) -> Any:
    import shapely

    parts = [
        part
        for part in shapely.get_parts(geometry)
        if part.geom_type in ("Polygon", "MultiPolygon")
    ]
    return shapely.union_all(parts) if parts else shapely.Polygon()


def _name(path: str, layer: str | None) -> str:
    return layer or path


def _layer_suffix(layer: str | None) -> str:
    return f" (layer '{layer}')" if layer else ""
