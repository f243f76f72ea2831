"""One input raster sampled onto the chips' pixel grid, block by block (pipeline step 3, core).

What the local engine, the Spark tasks and predictions straight from the rasters share:
the input's description (``ChipInput``) and checks (``check_raster``), the sampler
(``InputSampler``: a windowed read where the raster is already on the chips' lattice,
one GDAL warp per block otherwise), sampling ahead on one thread per input
(``sample_ahead``), and the per-cell pixel moments the store's statistics are combined
from (``cell_moments``, ``statistics_of_cells``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import PovmapInputError
from ..raster_windows import finite_source, inside, source_window
from .chip_store import WIDENED_DTYPES

if TYPE_CHECKING:
    from pyproj import CRS

    from .grid_cells import GridCells


GDAL_CACHE_MB = 192  # decoded source tiles kept between blocks
BLOCKS_AHEAD = 2  # blocks sampled ahead of the writer (bounds memory)
MOMENT_CELLS = 8  # cells whose pixel moments are computed at once (float64 copies)
RESAMPLING_METHODS = ("nearest", "bilinear", "cubic", "cubic_spline", "lanczos", "average", "mode")
# Chips are stored compactly in float16 unless an input's values do not fit it: beyond
# ±65,504 float16 holds only infinity, and a block whose largest magnitude is below float16's
# smallest normal number (2**-14) would lose its relative precision or round to 0. Such an
# input is stored in float32 instead (its dtype is recorded in the manifest).
COMPACT_DTYPE = "float16"
WIDE_DTYPE = WIDENED_DTYPES[COMPACT_DTYPE]  # float32
FLOAT16_LARGEST = 65504.0
FLOAT16_SMALLEST_NORMAL = 2.0**-14


@dataclasses.dataclass
class ChipInput:
    name: str
    path: str
    bands: list
    resampling: str = "bilinear"
    parameter: str = "EXTRA"
    label: str | None = None  # the parameter's label in the dialog, for messages


def described(spec: ChipInput) -> str:
    """How messages name an input: its label and parameter, e.g. ``Night-time lights (NIGHTLIGHTS)``."""
    if spec.label:
        return f"{spec.label} ({spec.parameter})"
    return f"the input '{spec.name}' ({spec.parameter})"


def check_raster(spec: ChipInput, grid: GridCells) -> None:
    import rasterio
    from rasterio.warp import transform_bounds

    if spec.resampling not in RESAMPLING_METHODS:
        raise PovmapInputError(
            spec.parameter,
            f"unknown resampling '{spec.resampling}' (use one of {', '.join(RESAMPLING_METHODS)}).",
        )
    try:
        dataset = rasterio.open(spec.path)
    except Exception as error:
        raise PovmapInputError(
            spec.parameter, f"cannot open the raster '{spec.path}': {error}"
        ) from None
    with dataset:
        if dataset.crs is None:
            raise PovmapInputError(
                spec.parameter,
                f"the raster '{spec.path}' has no CRS; assign one (Raster ▸ Projections ▸ Assign Projection).",
            )
        wrong = [band for band in spec.bands if not 1 <= int(band) <= dataset.count]
        if wrong or not spec.bands:
            raise PovmapInputError(
                spec.parameter,
                f"band(s) {wrong or spec.bands} do not exist in '{spec.path}', which has {dataset.count} band(s).",
            )
        complex_types = sorted(
            {
                dataset.dtypes[int(band) - 1]
                for band in spec.bands
                if str(dataset.dtypes[int(band) - 1]).startswith("complex")
            }
        )
        if complex_types:
            raise PovmapInputError(
                spec.parameter,
                f"{described(spec)}: the raster '{spec.path}' holds complex numbers "
                f"({', '.join(complex_types)}), and chips hold real values. Make a real-valued raster "
                "first (e.g. the amplitude, or `gdal_translate -ot Float32`, which keeps the real part) "
                "and choose that one.",
            )
        grid_bounds = (
            grid.lefts.min(),
            grid.tops.min() - grid.cell_size,
            grid.lefts.max() + grid.cell_size,
            grid.tops.max(),
        )
        left, bottom, right, top = transform_bounds(
            grid.crs, dataset.crs, *grid_bounds, densify_pts=21
        )
        raster = dataset.bounds
        if (
            right <= raster.left
            or left >= raster.right
            or top <= raster.bottom
            or bottom >= raster.top
        ):
            raise PovmapInputError(
                spec.parameter,
                f"the raster '{spec.path}' does not overlap the grid; check that it covers the cells (and its CRS).",
            )


class WiderDtypeNeededError(Exception):
    """An input's chips do not fit float16 (found while sampling: the run starts again in float32)."""

    def __init__(self, spec: ChipInput, largest: float) -> None:
        self.spec, self.largest = spec, largest
        if largest > FLOAT16_LARGEST:
            reason = f"values reach {largest:,.7g}, beyond float16's ±{FLOAT16_LARGEST:,.0f}"
        else:
            reason = (
                f"values of a block are at most {largest:.3g}, below float16's normal range "
                f"(from {FLOAT16_SMALLEST_NORMAL:.2g}), where it rounds coarsely"
            )
        super().__init__(f"{described(spec)}: {reason}")


class InputSampler:
    """Samples one input raster block by block (one thread per input: a dataset is not thread-safe).

    When the raster already has the chips' CRS, pixel size and pixel alignment
    (Sentinel-2 in its own UTM zone at 10 m), every resampling method returns
    the source pixel at each pixel centre, so a windowed read gives exactly
    what the warp would, without warping; otherwise the block is warped.
    """

    def __init__(
        self, spec: ChipInput, grid_crs: CRS, resolution: float, chip_size: int, dtype: str
    ) -> None:
        import warnings

        import rasterio
        from rasterio.errors import NotGeoreferencedWarning

        # reproject() into a NumPy array warns that the array has no georeferencing; it is given.
        warnings.filterwarnings("ignore", category=NotGeoreferencedWarning)

        self.spec, self.chip_size, self.resolution = spec, chip_size, resolution
        self.spec_dtype = dtype
        self.grid_crs_wkt = grid_crs.to_wkt()
        self.dataset = rasterio.open(spec.path)
        self.aligned = _is_aligned(self.dataset, grid_crs, resolution)

    def close(self) -> None:
        self.dataset.close()

    def sample(
        self, lefts: np.ndarray, tops: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One block's cells: chips [n, H, W, bands] in the store's dtype (NaN = nodata), nodata
        fractions [n] and per-band pixel moments [n, bands, 5] (``cell_moments``).

        ``lefts``/``tops``: the block's chip corners in the grid CRS, on one pixel lattice.
        """
        size, resolution = self.chip_size, self.resolution
        left, top = float(np.min(lefts)), float(np.max(tops))
        x0 = np.round((np.asarray(lefts) - left) / resolution).astype("int64")
        y0 = np.round((top - np.asarray(tops)) / resolution).astype("int64")
        height, width = int(y0.max()) + size, int(x0.max()) + size
        if self.aligned and self._on_raster_lattice(left, top):
            warped = self._read_aligned(left, top, height, width)
        else:
            warped = self._warp(left, top, height, width)
        chips = np.stack(
            [warped[:, y : y + size, x : x + size] for y, x in zip(y0, x0, strict=True)]
        )
        # Infinite source pixels (and what resampling spread them to) are nodata, like NaN.
        chips[np.isinf(chips)] = np.nan
        if self.spec_dtype == COMPACT_DTYPE:
            largest = float(np.nanmax(np.abs(chips), initial=0.0))
            if largest > FLOAT16_LARGEST or 0 < largest < FLOAT16_SMALLEST_NORMAL:
                raise WiderDtypeNeededError(self.spec, largest)
        missing = np.isnan(chips)
        nodata = missing.any(axis=1).mean(axis=(1, 2))
        # In C order, as a store's rows are read back: reductions over a chip (the statistics
        # member's float64 sums) then add in the same order whether chips come from a store
        # or straight from the rasters (predict SOURCE=rasters), so they agree to the last bit.
        return channels_last(chips, self.spec_dtype), nodata, cell_moments(chips)

    def _warp(self, left: float, top: float, height: int, width: int) -> np.ndarray:
        import rasterio
        from rasterio.enums import Resampling
        from rasterio.warp import reproject

        warped = np.full((len(self.spec.bands), height, width), np.nan, dtype="float32")
        transform = rasterio.Affine(self.resolution, 0, left, 0, -self.resolution, top)
        common = {
            "dst_transform": transform,
            "dst_crs": self.grid_crs_wkt,
            "resampling": Resampling[self.spec.resampling],
        }
        window = self._source_window(left, top, height, width)
        values, source_transform = finite_source(self.dataset, self.spec.bands, window)
        complete = inside(self.dataset, window) and not np.isnan(values).any()
        # Every source pixel the kernels touch is valid: GDAL's unmasked kernels give the same
        # values as its nodata-aware ones, several times faster. Otherwise NaN is the nodata
        # (``finite_source``: the declared nodata, NaN and ±inf, whatever the raster declares).
        reproject(
            values,
            warped,
            src_transform=source_transform,
            src_crs=self.dataset.crs,
            src_nodata=None if complete else np.nan,
            dst_nodata=None if complete else np.nan,
            init_dest_nodata=not complete,
            **common,
        )
        return warped

    def _source_window(self, left: float, top: float, height: int, width: int) -> Any:
        """The source pixels around a block, with a margin for the resampling kernels."""
        dataset = self.dataset
        pixel = min(abs(dataset.transform.a), abs(dataset.transform.e))
        margin = 4 + int(np.ceil(self._source_pixels_per_chip_pixel(pixel)))
        return source_window(
            dataset,
            self.grid_crs_wkt,
            left,
            top - height * self.resolution,
            left + width * self.resolution,
            top,
            margin,
        )

    def _source_pixels_per_chip_pixel(self, source_pixel: float) -> float:
        """How many source pixels one chip pixel spans (kernels widen when downsampling)."""
        if self.dataset.crs.is_geographic:
            source_pixel *= (
                111_320.0 * 0.5
            )  # degrees to metres, conservatively short at high latitudes
        return self.resolution / source_pixel

    def _on_raster_lattice(self, left: float, top: float) -> bool:
        """Whether a block's corner lies on the raster's pixel corners (a read gives the warp)."""
        transform = self.dataset.transform
        offsets = np.array([left - transform.c, transform.f - top]) / self.resolution
        return bool(np.allclose(offsets, np.round(offsets), atol=1e-6))

    def _read_aligned(self, left: float, top: float, height: int, width: int) -> np.ndarray:
        from rasterio.windows import Window

        dataset = self.dataset
        column = int(round((left - dataset.transform.c) / self.resolution))
        row = int(round((dataset.transform.f - top) / self.resolution))
        window = (
            Window(column, row, width, height).intersection(
                Window(0, 0, dataset.width, dataset.height)
            )
            if column < dataset.width
            and row < dataset.height
            and column + width > 0
            and row + height > 0
            else None
        )
        out = np.full((len(self.spec.bands), height, width), np.nan, dtype="float32")
        if window is not None and window.width > 0 and window.height > 0:
            values = dataset.read(
                list(self.spec.bands), window=window, masked=True, out_dtype="float32"
            )
            y, x = int(window.row_off) - row, int(window.col_off) - column
            out[:, y : y + int(window.height), x : x + int(window.width)] = values.filled(np.nan)
        return out


def _is_aligned(dataset: Any, grid_crs: CRS, resolution: float) -> bool:
    """Whether the raster has the chips' CRS and pixel size (then blocks on its lattice are read)."""
    from pyproj import CRS

    transform = dataset.transform
    if (
        transform.b != 0
        or transform.d != 0
        or not np.isclose(transform.a, resolution)
        or not np.isclose(-transform.e, resolution)
    ):
        return False
    return CRS.from_user_input(dataset.crs.to_wkt()) == grid_crs


def samplers_of(
    described_inputs: Iterable[Mapping[str, Any]],
    grid_crs_wkt: str,
    resolution: float,
    chip_size: int,
) -> tuple[list[ChipInput], list[InputSampler]]:
    """(specs, samplers) of inputs described as plain dicts (``ChipInput`` fields and ``dtype``).

    How Spark tasks receive their inputs; the caller closes the samplers.
    """
    from pyproj import CRS

    grid_crs = CRS.from_wkt(grid_crs_wkt)
    specs, samplers = [], []
    try:
        for described_input in described_inputs:
            spec = ChipInput(**{k: v for k, v in described_input.items() if k != "dtype"})
            samplers.append(
                InputSampler(spec, grid_crs, resolution, chip_size, described_input["dtype"])
            )
            specs.append(spec)
    except BaseException:
        for sampler in samplers:
            sampler.close()
        raise
    return specs, samplers


def sample_ahead(
    samplers: Sequence[InputSampler], blocks: Sequence[tuple[np.ndarray, np.ndarray]]
) -> Iterator[tuple[int, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]]:
    """Yield (index, [(chips, nodata, moments) per input]) for ``blocks`` [(lefts, tops)] in order.

    One thread per input (GDAL releases the GIL; a dataset is not thread-safe),
    up to BLOCKS_AHEAD blocks sampled ahead of the consumer, which bounds memory.
    A ``WiderDtypeNeededError`` of a sampler is raised here, in the consumer's thread.
    Used by the Spark tasks that sample into a store and those that predict from rasters.
    """
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    pools = [
        ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"chips-{sampler.spec.name}")
        for sampler in samplers
    ]
    in_flight: deque[Any] = deque()
    try:
        for index, (lefts, tops) in enumerate(blocks):
            in_flight.append(
                (
                    index,
                    [
                        pool.submit(sampler.sample, lefts, tops)
                        for sampler, pool in zip(samplers, pools, strict=True)
                    ],
                )
            )
            while len(in_flight) > BLOCKS_AHEAD or (in_flight and index == len(blocks) - 1):
                done, futures = in_flight.popleft()
                yield done, [future.result() for future in futures]
    finally:
        for future in (future for _, futures in in_flight for future in futures):
            future.cancel()
        for pool in pools:
            pool.shutdown(wait=True)


def channels_last(chips: np.ndarray, dtype: str) -> np.ndarray:
    """``chips`` [n, bands, H, W] as the store holds them: [n, H, W, bands] in ``dtype``, C order.

    Band by band (a strided write per band is faster than numpy's transposing cast of
    the whole block); the same bytes as ``np.moveaxis(chips, 1, -1).astype(dtype)``.
    """
    out = np.empty((chips.shape[0], chips.shape[2], chips.shape[3], chips.shape[1]), dtype=dtype)
    for band in range(chips.shape[1]):
        out[..., band] = chips[:, band]
    return out


def cell_moments(chips: np.ndarray) -> np.ndarray:
    """Per cell and band of ``chips`` [n, bands, H, W] (float32, NaN = nodata): the valid
    pixels' count, mean, M2 (sum of squared deviations from the mean), min and max,
    as float64 [n, bands, 5] (zeros and ±inf where a cell has no valid pixel).

    Each cell's numbers depend on its own pixels only (every sum runs along one
    cell's pixels), not on the block it was sampled in: whichever run, engine or
    task samples a cell, its moments are the same bits.
    """
    if len(chips) > MOMENT_CELLS:  # a few cells at a time: float64 copies of a block are large
        return np.concatenate(
            [
                cell_moments(chips[start : start + MOMENT_CELLS])
                for start in range(0, len(chips), MOMENT_CELLS)
            ]
        )
    values = chips.reshape(chips.shape[0], chips.shape[1], -1).astype("float64")
    if not np.isnan(chips).any():  # every pixel valid (most cells): the same sums, fewer passes
        mean = values.sum(axis=-1) / values.shape[-1]
        deviations = values - mean[..., None]
        return np.stack(
            [
                np.full(mean.shape, float(values.shape[-1])),
                mean,
                (deviations * deviations).sum(axis=-1),
                values.min(axis=-1),
                values.max(axis=-1),
            ],
            axis=-1,
        )
    valid = ~np.isnan(values)
    count = valid.sum(axis=-1).astype("float64")
    total = np.where(valid, values, 0.0).sum(axis=-1)
    mean = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    deviations = np.where(valid, values - mean[..., None], 0.0)
    m2 = (deviations * deviations).sum(axis=-1)
    low = np.where(valid, values, np.inf).min(axis=-1, initial=np.inf)
    high = np.where(valid, values, -np.inf).max(axis=-1, initial=-np.inf)
    return np.stack([count, mean, m2, low, high], axis=-1)


def statistics_of_cells(moments: np.ndarray) -> dict[str, Any]:
    """Per-band count, mean, std, min and max over every valid pixel, from per-cell moments.

    ``moments`` [n_cells, bands, 5] (``cell_moments``, in store row order). The
    cells are combined in one step (total count; mean weighted by count; M2 as
    the cells' M2 plus their spread around the overall mean), in float64 and in
    row order, so the result does not depend on the order cells were sampled:
    a resumed store's statistics equal an uninterrupted run's bit for bit.
    """
    moments = np.ascontiguousarray(moments, dtype="float64")
    count, means, m2s = moments[..., 0], moments[..., 1], moments[..., 2]
    total = count.sum(axis=0)
    counted = total > 0
    mean = np.divide((count * means).sum(axis=0), total, out=np.zeros_like(total), where=counted)
    m2 = m2s.sum(axis=0) + (count * (means - mean) ** 2).sum(axis=0)
    std = np.sqrt(np.divide(m2, total, out=np.zeros_like(total), where=counted))
    return {  # null where a band has no valid pixel (JSON has no NaN)
        "count": total.tolist(),
        "mean": _where_counted(total, mean),
        "std": _where_counted(total, std),
        "min": _finite_or_none(moments[..., 3].min(axis=0, initial=np.inf)),
        "max": _finite_or_none(moments[..., 4].max(axis=0, initial=-np.inf)),
    }


def _where_counted(count: np.ndarray, values: np.ndarray) -> list[float | None]:
    return [
        float(value) if counted > 0 else None for counted, value in zip(count, values, strict=True)
    ]


def _finite_or_none(values: np.ndarray) -> list[float | None]:
    return [float(value) if np.isfinite(value) else None for value in values]
