"""The cells of a grid layer and where each one's chip lies (pipeline step 3, core).

Any polygon layer with a unique whole-number id is a grid; povmap's own grids
(``cell_id``) are checked against their geometry. Neighbouring cells on one pixel
lattice are grouped in blocks that the sampler warps together (``group_blocks``).
Read by sampling, by predictions straight from the rasters, and wherever a grid's
cell ids are read (``read_cell_ids``).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import vectors
from ..errors import PovmapInputError
from ..grid import cells
from ..names import CELL_ID

if TYPE_CHECKING:
    from pyproj import CRS

BLOCK_CELLS = 8  # a block is up to 8 × 8 neighbouring cells
POLYGON_TYPES = ("Polygon", "MultiPolygon")


@dataclasses.dataclass
class GridCells:
    """The cells of a grid layer and where each one's chip lies.

    A chip is the cell polygon's bounding box sampled at ``resolution`` in the
    grid's CRS: ``chip_size`` pixels from the box's top-left corner, what
    ``gdalwarp -te <box> -tr <res> <res>`` gives (it rounds the box's width in
    pixels the same way). ``keys`` groups neighbouring cells into blocks that
    are warped together; cells of one block lie on one pixel lattice.
    """

    ids: np.ndarray  # int64, from the id field, one per cell
    lefts: np.ndarray  # float64: each chip's left and top edge in the grid CRS
    tops: np.ndarray
    chip_size: int
    resolution: float
    crs: CRS
    keys: np.ndarray  # int64 [n, 3]: cells with the same key are sampled as one block
    povmap_ids: bool  # cell_id encodes the cell's place (povmap's own grids)

    @property
    def cell_size(self) -> float:
        return self.chip_size * self.resolution


def read_grid_cells(
    path: str,
    layer: str | None = None,
    parameter: str = "GRID",
    id_field: str = CELL_ID,
    resolution: float = 10.0,
    chip_size: int | None = None,
    chip_parameter: str = "CHIP_SIZE",
) -> GridCells:
    """The cells of a polygon grid layer (see ``GridCells``), or a message naming the parameter.

    Any polygon layer with a unique whole-number id in ``id_field`` works. An id field
    named ``cell_id`` is povmap's and must match the geometry: that id names the same
    square in every grid of that CRS and cell size, which is what joins a training grid,
    a prediction grid and a ground truth; an edited or reprojected povmap grid (whose
    metadata other tools do not keep) would silently join other places.
    """
    from pyproj import CRS

    layer = vectors.spatial_layer(path, layer, parameter)
    info = vectors.layer_info(path, layer, parameter)
    vectors.require_geometry(info, path, layer, parameter, POLYGON_TYPES)
    if info.get("features", 0) == 0:
        raise PovmapInputError(parameter, f"the layer '{layer or path}' is empty.")
    ids = read_cell_ids(path, layer, id_field, info, parameter)
    meta, bounds = _bounds(path, layer, len(ids))
    empty = np.flatnonzero(~np.isfinite(bounds).all(axis=1))
    if len(empty):
        raise PovmapInputError(
            parameter,
            f"{len(empty)} feature(s) of '{layer or path}' have no geometry (e.g. {id_field} "
            f"{int(ids[empty[0]])}); delete them or give them their polygon.",
        )
    crs = CRS.from_user_input(meta["crs"])
    if id_field == CELL_ID:
        cell_size = float(np.median(bounds[:, 2] - bounds[:, 0]))
        rows, cols = cells.decode_cell_ids(ids)
        expected = np.column_stack(
            [cols * cell_size, rows * cell_size, (cols + 1) * cell_size, (rows + 1) * cell_size]
        )
        matching = np.isclose(bounds, expected, atol=1e-6 * cell_size, rtol=0).all(axis=1)
        if matching.all():
            size = _chip_size(
                cell_size,
                cell_size,
                resolution,
                chip_size,
                parameter,
                None,
                id_field,
                chip_parameter,
            )
            # Exact corners from the ids: blocks of cells share one warp, pixel for pixel.
            lefts, tops = cols * cell_size, (rows + 1) * cell_size
            keys = np.column_stack([rows // BLOCK_CELLS, cols // BLOCK_CELLS, np.zeros_like(rows)])
            return GridCells(ids, lefts, tops, size, resolution, crs, keys, True)
        raise PovmapInputError(
            parameter,
            f"{int((~matching).sum())} of {len(ids)} cells of '{layer or path}' do not match their "
            "cell_id (edited or reprojected?): povmap's cell_id names the same square in every "
            "grid, so that grids and ground truths join on it. Rebuild the grid with Build "
            "training grid or Build prediction grid. If this is a grid of your own whose ids are "
            "in a field named cell_id, rename that field (e.g. to gid) and choose it as the cell "
            "id field (ID_FIELD).",
        )
    widths, heights = bounds[:, 2] - bounds[:, 0], bounds[:, 3] - bounds[:, 1]
    size = _chip_size(
        widths, heights, resolution, chip_size, parameter, ids, id_field, chip_parameter
    )
    lefts, tops = bounds[:, 0], bounds[:, 3]
    keys = _block_keys(lefts, tops, size * resolution, resolution)
    return GridCells(ids, lefts, tops, size, resolution, crs, keys, False)


def _bounds(path: str, layer: str | None, count: int) -> tuple[dict[str, Any], np.ndarray]:
    """(layer meta, [count, 4] bounds of the polygons), read ``vectors.WINDOW_CELLS`` at a time:
    a country's polygons are never all in memory."""
    import pyogrio
    import shapely

    bounds = np.full((count, 4), np.nan)
    meta: dict[str, Any] = {}
    window = vectors.WINDOW_CELLS
    for start in range(0, count, window):
        meta, _, wkb, _ = pyogrio.raw.read(
            path, layer=layer, columns=[], skip_features=start, max_features=window
        )
        bounds[start : start + len(wkb)] = shapely.bounds(shapely.from_wkb(wkb))
    return meta, bounds


def read_cell_ids(
    path: str,
    layer: str | None,
    id_field: str,
    info: dict[str, Any],
    parameter: str = "GRID",
    id_parameter: str = "ID_FIELD",
) -> np.ndarray:
    """The whole-number ids of ``id_field`` (int64), refusing missing, NULL, fractional or repeated ids."""
    import pyogrio

    fields = list(info["fields"])
    name = layer or path
    if id_field == info.get("fid_column") and id_field not in fields:
        raise PovmapInputError(
            id_parameter,
            f"{id_field} is the feature number of '{name}' ({parameter}), which changes when the "
            "layer is copied or filtered; copy it into a field with the Field calculator ($id) "
            "and choose that field.",
        )
    if id_field not in fields:
        if id_field == CELL_ID:
            hint = (
                "make the grid with Build training grid or Build prediction grid, or choose "
                "your grid's own id field (Cell id field, ID_FIELD)"
            )
        else:
            hint = "choose one of its fields"
        raise PovmapInputError(
            id_parameter,
            f"the layer '{name}' ({parameter}) has no {id_field} field (its fields: "
            f"{', '.join(fields) or 'none'}); {hint}.",
        )
    dtype = str(info["dtypes"][fields.index(id_field)])
    if not dtype.startswith(vectors.NUMERIC_DTYPES):
        raise PovmapInputError(
            id_parameter,
            f"the id field {id_field} of '{name}' holds {dtype} values; cell ids are whole "
            + (
                "numbers (those of the grid that was predicted); use the layer written by "
                "Predict poverty."
                if parameter == "PREDICTIONS"
                else "numbers (they index the chip store). Add one with the Field calculator "
                "(e.g. @row_number) and choose it; the text id is carried to the predictions."
            ),
        )
    _, _, _, (values,) = pyogrio.raw.read(
        path, layer=layer, columns=[id_field], read_geometry=False
    )
    # integers with NULLs arrive as floats with NaN
    ids = cells.whole_cell_ids(values, id_parameter, name, id_field)
    return ids


def _chip_size(
    widths: np.ndarray | float,
    heights: np.ndarray | float,
    resolution: float,
    requested: int | None,
    parameter: str,
    ids: np.ndarray | None,
    id_field: str,
    chip_parameter: str = "CHIP_SIZE",
) -> int:
    """The chips' side in pixels, which every cell's bounding box must give (gdalwarp's rounding).

    ``chip_parameter``: what a ``requested`` size that the cells do not give is blamed on
    (CHIP_SIZE; GRID when the size is the model's, predicting from the rasters).
    """
    columns = np.atleast_1d(((np.asarray(widths) + resolution / 2) // resolution).astype("int64"))
    lines = np.atleast_1d(((np.asarray(heights) + resolution / 2) // resolution).astype("int64"))
    size = int(requested or np.median(columns))
    if requested and (columns != size).all():
        hint = (
            "use CHIP_SIZE = cell size / RESOLUTION, or 0 to compute it."
            if chip_parameter == "CHIP_SIZE"
            else f"the model needs cells of {size * resolution:g} m; use a grid of that cell size."
        )
        raise PovmapInputError(
            chip_parameter,
            f"a chip of {size} px at {resolution:g} m does not cover a cell ("
            f"{float(np.median(widths)):g} m wide: {int(np.median(columns))} px); {hint}",
        )
    odd = np.flatnonzero((columns != size) | (lines != size))
    if size < 1 or len(odd):
        first = odd[0] if len(odd) else 0
        which = f"{id_field} {int(ids[first])}: " if ids is not None else ""
        raise PovmapInputError(
            parameter,
            f"the chips of one store all have one size, and {len(odd) or len(columns)} cell(s) "
            f"do not give {size} × {size} px at {resolution:g} m ({which}its bounding box is "
            f"{np.atleast_1d(widths)[first]:g} × {np.atleast_1d(heights)[first]:g} m, "
            f"{columns[first]} × {lines[first]} px). Use a grid of equal squares whose side is "
            "a whole number of RESOLUTION pixels (e.g. Vector ▸ Research Tools ▸ Create Grid), "
            "or change RESOLUTION.",
        )
    return size


def _block_keys(lefts: np.ndarray, tops: np.ndarray, side: float, resolution: float) -> np.ndarray:
    """Neighbouring cells on one pixel lattice share a key (their pixels come from one warp)."""
    span = BLOCK_CELLS * side
    tile = np.column_stack(
        [np.floor((tops - side) / span + 1e-9), np.floor(lefts / span + 1e-9)]
    ).astype("int64")
    # Offsets from the pixel lattice through the origin, in 1/1000 px: cells whose corners are
    # a whole number of pixels apart share one.
    phase = (
        np.column_stack(
            [
                np.round((tops / resolution) % 1.0 * 1000),
                np.round((lefts / resolution) % 1.0 * 1000),
            ]
        ).astype("int64")
        % 1000
    )
    _, lattice = np.unique(phase, axis=0, return_inverse=True)
    return np.column_stack([tile, lattice.reshape(-1)])


def group_blocks(pending: np.ndarray, grid: GridCells) -> list[np.ndarray]:
    """Row indices of pending cells grouped in blocks of up to BLOCK_CELLS × BLOCK_CELLS neighbours.

    Cells of a block lie on one pixel lattice (see ``GridCells.keys``).
    """
    blocks: dict[Any, list[int]] = {}
    for row_index in pending:
        blocks.setdefault(tuple(grid.keys[row_index]), []).append(row_index)
    return [np.asarray(members) for members in blocks.values()]


def grid_cells_sha256(grid: GridCells) -> str:
    """What the chips depend on in a grid (``GridCells``): its cells in row order, where each
    chip lies, the chip size, resolution and CRS.

    The path does not (a filtered layer is exported to a new temporary file each run).
    """
    import hashlib

    digest = hashlib.sha256(np.ascontiguousarray(grid.ids, dtype="<i8").tobytes())
    digest.update(np.ascontiguousarray(grid.lefts, dtype="<f8").tobytes())
    digest.update(np.ascontiguousarray(grid.tops, dtype="<f8").tobytes())
    digest.update(f"|{int(grid.chip_size)}|{float(grid.resolution)!r}|{grid.crs.to_wkt()}".encode())
    return digest.hexdigest()
