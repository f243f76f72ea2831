"""The 1 km grid: alignment, stable cell ids, working CRS.

Cells are squares aligned to multiples of the cell size in a projected CRS,
so the cell holding a point depends only on (CRS, cell size, point): a
training grid and a prediction grid of the same area share their ids.

``cell_id = (row + OFFSET) * MULTIPLIER + (col + OFFSET)`` with
``row = floor(y / cell_size)`` and ``col = floor(x / cell_size)``; it reads
as row and column in decimal and fits int64 for any CRS in metres.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from ..errors import PovmapInputError
from ..names import CELL_ID

if TYPE_CHECKING:
    from pyproj import CRS


CELL_ID_OFFSET = 500_000_000
CELL_ID_MULTIPLIER = 1_000_000_000


def cell_rows_cols(x: ArrayLike, y: ArrayLike, cell_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of the cells holding points ``x``, ``y`` (arrays)."""
    rows = np.floor(np.asarray(y, dtype="float64") / cell_size).astype("int64")
    cols = np.floor(np.asarray(x, dtype="float64") / cell_size).astype("int64")
    return rows, cols


def encode_cell_ids(rows: ArrayLike, cols: ArrayLike) -> np.ndarray:
    rows = np.asarray(rows, dtype="int64")
    cols = np.asarray(cols, dtype="int64")
    if rows.size and (np.abs(rows).max() >= CELL_ID_OFFSET or np.abs(cols).max() >= CELL_ID_OFFSET):
        raise PovmapInputError(
            "CELL_SIZE",
            "the grid has too many rows or columns for a cell id; use a larger cell size.",
        )
    return (rows + CELL_ID_OFFSET) * CELL_ID_MULTIPLIER + (cols + CELL_ID_OFFSET)


def decode_cell_ids(cell_ids: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    cell_ids = np.asarray(cell_ids, dtype="int64")
    return (
        cell_ids // CELL_ID_MULTIPLIER - CELL_ID_OFFSET,
        cell_ids % CELL_ID_MULTIPLIER - CELL_ID_OFFSET,
    )


def whole_cell_ids(
    values: ArrayLike, parameter: str, layer_name: str, id_field: str = CELL_ID
) -> np.ndarray:
    """The one rule for a layer's cell ids (int64): every feature has one (no NULL), each a whole
    number, each once. ``values``: the id column as numbers (NULLs as NaN); the same messages
    for every step that reads cell ids (grids, predictions, a labelled grid as TRUTH)."""
    values = np.asarray(values)
    if values.dtype.kind == "f":
        missing = np.flatnonzero(~np.isfinite(values))
        if len(missing):
            raise PovmapInputError(
                parameter,
                f"{len(missing)} feature(s) of '{layer_name}' have no {id_field} (NULL), e.g. "
                f"the feature at row {int(missing[0]) + 1}; give every cell an id (or delete "
                "those features): a cell without an id cannot be matched to its chips and "
                "predictions.",
            )
        fractional = np.flatnonzero(values != np.round(values))
        if len(fractional):
            raise PovmapInputError(
                parameter,
                f"{id_field} of '{layer_name}' holds fractions (e.g. {values[fractional[0]]}); "
                "cell ids are whole numbers.",
            )
    ids = values.astype("int64")
    check_unique_ids(ids, parameter, layer_name, id_field)
    return ids


def check_unique_ids(
    cell_ids: ArrayLike, parameter: str, layer_name: str, id_field: str = CELL_ID
) -> None:
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


def cell_boxes(rows: ArrayLike, cols: ArrayLike, cell_size: float) -> np.ndarray:
    """Square polygons of the given cells (shapely array)."""
    import shapely

    xmin = np.asarray(cols, dtype="float64") * cell_size
    ymin = np.asarray(rows, dtype="float64") * cell_size
    return shapely.box(xmin, ymin, xmin + cell_size, ymin + cell_size)


def check_cell_size(cell_size: float | None) -> None:
    if not cell_size or not np.isfinite(cell_size) or cell_size <= 0:
        raise PovmapInputError(
            "CELL_SIZE", f"the cell size must be a positive number of metres (got {cell_size})."
        )


FAR_DEGREES = 9.0  # 1.5 UTM zones: beyond it a UTM zone's scale error passes 1 %
FAR_SPREADS = 5.0  # ... or this many robust spreads (1.4826 MAD) of the points, if wider
SCALE_REFUSED = 0.05  # a CRS whose metres are off by more at the data: cells 5 % off size
SCALE_WARNED = 0.01


def robust_centre(lon: np.ndarray, lat: np.ndarray) -> tuple[float, float]:
    """The points' median longitude and latitude (one point at 0, 0 does not move it)."""
    return float(np.median(lon)), float(np.median(lat))


def far_points(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Mask of points far from the others: more than ``FAR_DEGREES`` (or ``FAR_SPREADS``
    robust spreads, for data that are spread wider) from the median in longitude or latitude."""
    lon, lat = np.asarray(lon, dtype="float64"), np.asarray(lat, dtype="float64")
    far = np.zeros(len(lon), dtype=bool)
    for values in (lon, lat):
        if not len(values):
            continue
        centre = np.median(values)
        spread = 1.4826 * np.median(np.abs(values - centre))
        far |= np.abs(values - centre) > max(FAR_DEGREES, FAR_SPREADS * spread)
    return far


def working_crs(
    requested: Any,
    lonlat_bounds: tuple[float, float, float, float],
    centre: tuple[float, float] | None = None,
) -> tuple[CRS, str]:
    """The projected CRS in metres the grid is built in.

    ``requested`` (anything pyproj understands, or empty) wins; otherwise the
    UTM zone of ``centre`` (longitude, latitude: the median of the points, see
    ``robust_centre``), or of the centre of ``lonlat_bounds`` (xmin, ymin, xmax,
    ymax in degrees) when none is given. Returns the pyproj CRS and a sentence for
    the log. ``check_crs_suits`` checks a requested CRS against the data.
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
    lon, lat = centre if centre is not None else ((xmin + xmax) / 2.0, (ymin + ymax) / 2.0)
    infos = query_utm_crs_info(
        datum_name="WGS 84", area_of_interest=AreaOfInterest(lon, lat, lon, lat)
    )
    if not infos:
        raise PovmapInputError("CRS", "no UTM zone covers the data; choose a projected CRS.")
    crs = CRS.from_authority(infos[0].auth_name, infos[0].code)
    zones = _utm_zone(xmin), _utm_zone(xmax)
    where = "the points' median" if centre is not None else "the data's centre"
    note = f"Grid CRS: {_label(crs)} (UTM zone of {where})."
    if zones[0] != zones[1]:
        note += f" The data span UTM zones {zones[0]}–{zones[1]}; all cells use the centre zone."
    return crs, note


def check_crs_suits(
    crs: CRS, centre: tuple[float, float], cell_size: float, warn: Callable[[str], None]
) -> None:
    """Refuse a requested CRS that does not suit the data at ``centre`` (lon, lat).

    Its area of use must contain the centre, and its metres must be ground metres there
    (within ``SCALE_REFUSED``; ``warn`` beyond ``SCALE_WARNED``): Web Mercator's "metres"
    are 1/cos(latitude) ground metres, so 1,000 m cells at 25° N would be 906 m wide.
    """
    from pyproj import Proj

    lon, lat = centre
    area = crs.area_of_use
    if area is not None and area.west <= area.east:
        outside_lon = not (area.west - 1.0 <= lon <= area.east + 1.0)
        if outside_lon or not (area.south - 1.0 <= lat <= area.north + 1.0):
            raise PovmapInputError(
                "CRS",
                f"{_label(crs)} is meant for longitude {area.west:g}° to {area.east:g}°, "
                f"latitude {area.south:g}° to {area.north:g}°, but the data's centre is at "
                f"{lon:.1f}°, {lat:.1f}°: its cells would be distorted there. Choose a CRS "
                "whose area of use contains the data, or leave CRS empty for the UTM zone of "
                "the data.",
            )
    try:
        factors = Proj(crs).get_factors(lon, lat)
        scales = [float(factors.meridional_scale), float(factors.parallel_scale)]
    except Exception:  # a projection pyproj cannot differentiate there: nothing to say
        return
    if not all(np.isfinite(scales)):
        return
    error = max(abs(scale - 1.0) for scale in scales)
    if error <= SCALE_WARNED:
        return
    sizes = " × ".join(f"{cell_size / scale:,.0f}" for scale in reversed(scales))
    message = (
        f"{_label(crs)} does not keep distances at the data ({lon:.1f}°, {lat:.1f}°): its "
        f"metres there are {error:.1%} off, so {cell_size:g} m cells would be {sizes} m on "
        "the ground"
    )
    if error > SCALE_REFUSED:
        raise PovmapInputError(
            "CRS",
            f"{message}. Choose a CRS that keeps distances there (the UTM zone of the data: "
            "leave CRS empty), not Web Mercator or a projection meant for elsewhere.",
        )
    warn(f"CRS: {message}.")


def _utm_zone(lon: float) -> int:
    return int(np.clip(np.floor((lon + 180.0) / 6.0) + 1, 1, 60))


def _label(crs: CRS) -> str:
    code = crs.to_authority()
    return f"{code[0]}:{code[1]} {crs.name}" if code else crs.name


def crs_to_string(crs: Any) -> str | None:
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
