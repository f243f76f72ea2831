"""The 1 km grid: alignment, stable cell ids, working CRS.

Cells are squares aligned to multiples of the cell size in a projected CRS,
so the cell holding a point depends only on (CRS, cell size, point): a
training grid and a prediction grid of the same area share their ids.

``cell_id = (row + OFFSET) * MULTIPLIER + (col + OFFSET)`` with
``row = floor(y / cell_size)`` and ``col = floor(x / cell_size)``; it reads
as row and column in decimal and fits int64 for any CRS in metres.
"""

import numpy as np

from ..errors import PovmapInputError
from ..names import CELL_ID

CELL_ID_OFFSET = 500_000_000
CELL_ID_MULTIPLIER = 1_000_000_000


def cell_rows_cols(x, y, cell_size):
    """Row and column of the cells holding points ``x``, ``y`` (arrays)."""
    rows = np.floor(np.asarray(y, dtype="float64") / cell_size).astype("int64")
    cols = np.floor(np.asarray(x, dtype="float64") / cell_size).astype("int64")
    return rows, cols


def encode_cell_ids(rows, cols):
    rows = np.asarray(rows, dtype="int64")
    cols = np.asarray(cols, dtype="int64")
    if rows.size and (np.abs(rows).max() >= CELL_ID_OFFSET or np.abs(cols).max() >= CELL_ID_OFFSET):
        raise PovmapInputError(
            "CELL_SIZE",
            "the grid has too many rows or columns for a cell id; use a larger cell size.",
        )
    return (rows + CELL_ID_OFFSET) * CELL_ID_MULTIPLIER + (cols + CELL_ID_OFFSET)


def decode_cell_ids(cell_ids):
    cell_ids = np.asarray(cell_ids, dtype="int64")
    return (
        cell_ids // CELL_ID_MULTIPLIER - CELL_ID_OFFSET,
        cell_ids % CELL_ID_MULTIPLIER - CELL_ID_OFFSET,
    )


def check_unique_ids(cell_ids, parameter, layer_name, id_field=CELL_ID):
    """Each cell once: a repeated cell id would be sampled, trained or counted twice."""
    unique, counts = np.unique(np.asarray(cell_ids, dtype="int64"), return_counts=True)
    repeated = counts > 1
    if repeated.any():
        raise PovmapInputError(
            parameter,
            f"{int(counts[repeated].sum())} cells of '{layer_name}' share {int(repeated.sum())} "
            f"{id_field}(s) (e.g. {int(unique[repeated][0])}); each cell must appear once: "
            + (
                "rebuild the grid (Build training grid or Build prediction grid) or delete the "
                "duplicates."
                if id_field == CELL_ID
                else f"give every cell its own {id_field} (or delete the duplicates)."
            ),
        )


def cell_boxes(rows, cols, cell_size):
    """Square polygons of the given cells (shapely array)."""
    import shapely

    xmin = np.asarray(cols, dtype="float64") * cell_size
    ymin = np.asarray(rows, dtype="float64") * cell_size
    return shapely.box(xmin, ymin, xmin + cell_size, ymin + cell_size)


def check_cell_size(cell_size):
    if not cell_size or not np.isfinite(cell_size) or cell_size <= 0:
        raise PovmapInputError(
            "CELL_SIZE", f"the cell size must be a positive number of metres (got {cell_size})."
        )


def working_crs(requested, lonlat_bounds):
    """The projected CRS in metres the grid is built in.

    ``requested`` (anything pyproj understands, or empty) wins; otherwise the
    UTM zone of the centre of ``lonlat_bounds`` (xmin, ymin, xmax, ymax in
    degrees). Returns the pyproj CRS and a sentence for the log.
    """
    from pyproj import CRS
    from pyproj.aoi import AreaOfInterest
    from pyproj.database import query_utm_crs_info

    if requested:
        try:
            crs = CRS.from_user_input(requested)
        except Exception as error:
            raise PovmapInputError(
                "CRS", f"'{requested}' is not a coordinate reference system ({error})."
            ) from None
        if not crs.is_projected or crs.axis_info[0].unit_name not in ("metre", "meter"):
            raise PovmapInputError(
                "CRS",
                f"{crs.name} is not a projected CRS in metres; choose one (e.g. a UTM zone) or leave CRS empty for the UTM zone of the data.",
            )
        return crs, f"Grid CRS: {_label(crs)} (as requested)."

    xmin, ymin, xmax, ymax = lonlat_bounds
    lon, lat = (xmin + xmax) / 2.0, (ymin + ymax) / 2.0
    infos = query_utm_crs_info(
        datum_name="WGS 84", area_of_interest=AreaOfInterest(lon, lat, lon, lat)
    )
    if not infos:
        raise PovmapInputError("CRS", "no UTM zone covers the data; choose a projected CRS.")
    crs = CRS.from_authority(infos[0].auth_name, infos[0].code)
    zones = _utm_zone(xmin), _utm_zone(xmax)
    note = f"Grid CRS: {_label(crs)} (UTM zone of the data's centre)."
    if zones[0] != zones[1]:
        note += f" The data span UTM zones {zones[0]}–{zones[1]}; all cells use the centre zone."
    return crs, note


def _utm_zone(lon):
    return int(np.clip(np.floor((lon + 180.0) / 6.0) + 1, 1, 60))


def _label(crs):
    code = crs.to_authority()
    return f"{code[0]}:{code[1]} {crs.name}" if code else crs.name


def crs_to_string(crs):
    """``AUTH:CODE`` where the CRS has one, else its WKT; None for None. Takes what pyproj's
    ``CRS.from_user_input`` takes; text pyproj cannot read comes back as it is."""
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    if crs is None:
        return None
    try:
        crs = CRS.from_user_input(crs)
    except CRSError:
        return str(crs)
    code = crs.to_authority()
    return f"{code[0]}:{code[1]}" if code else crs.to_wkt()
