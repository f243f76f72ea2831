"""Reading a raster's pixels around an area for warping, NaN and infinity as nodata.

GDAL's warper knows a pixel is nodata only by the raster's declared nodata value (or
mask): a NaN or infinite pixel in a raster that declares none (or declares another
value) is a valid number to it, and bilinear or average resampling spreads it over every
output pixel it touches (2.6 % NaN pixels became 11 % nodata). So the sampler and the
habitability means read the source window themselves — masked (the declared nodata and
mask), then every non-finite value set to NaN — and warp that array with NaN as its
nodata, whatever the raster declares. One home for the rule: ``finite_source``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np


def source_window(
    dataset: Any, crs_wkt: str, left: float, bottom: float, right: float, top: float, margin: int
) -> Any:
    """The dataset window covering the box (in ``crs_wkt``) plus ``margin`` pixels a side.

    May reach beyond the raster (``finite_source`` reads that part as nodata).
    """
    from rasterio.warp import transform_bounds
    from rasterio.windows import Window

    bounds = transform_bounds(crs_wkt, dataset.crs, left, bottom, right, top, densify_pts=21)
    window = dataset.window(*bounds)
    col0 = int(np.floor(window.col_off)) - margin
    row0 = int(np.floor(window.row_off)) - margin
    col1 = int(np.ceil(window.col_off + window.width)) + margin
    row1 = int(np.ceil(window.row_off + window.height)) + margin
    return Window(col0, row0, col1 - col0, row1 - row0)


def inside(dataset: Any, window: Any) -> bool:
    """Whether ``window`` lies wholly on the raster."""
    return (
        window.col_off >= 0
        and window.row_off >= 0
        and window.col_off + window.width <= dataset.width
        and window.row_off + window.height <= dataset.height
    )


def finite_source(dataset: Any, bands: Iterable[int], window: Any) -> tuple[np.ndarray, Any]:
    """(float32 [bands, h, w], transform) of ``window``: nodata, off-raster, NaN and ±inf
    pixels are NaN. Warp it with ``src_nodata=numpy.nan``."""
    values = dataset.read(
        list(bands),
        window=window,
        masked=True,
        out_dtype="float32",
        boundless=not inside(dataset, window),
    )
    data = np.ma.getdata(values).astype("float32", copy=True)
    data[np.ma.getmaskarray(values) | ~np.isfinite(data)] = np.nan
    return data, dataset.window_transform(window)
