"""Small tools: seeded random streams, hashing, grids, smooth noise, curves."""

import dataclasses
import zlib

import numpy as np

from .common import ORIGIN_X, ORIGIN_Y


def random_stream(seed, name):
    """An independent generator per component, so one change does not shift the others."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


_GOLDEN = 0x9E3779B97F4A7C15


_MIX1 = np.uint64(0xBF58476D1CE4E5B9)


_MIX2 = np.uint64(0x94D049BB133111EB)


def _splitmix(z):
    z = z ^ (z >> np.uint64(30))
    z = z * _MIX1
    z = z ^ (z >> np.uint64(27))
    z = z * _MIX2
    return z ^ (z >> np.uint64(31))


def hash_ints(*values):
    """Deterministic 64-bit hash of integer arrays (element-wise, wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        h = None
        for value in values:
            value = np.atleast_1d(value)
            v = value if value.dtype == np.uint64 else value.astype(np.int64).astype(np.uint64)
            v = v + np.uint64(_GOLDEN)
            h = (
                _splitmix(v)
                if h is None
                else _splitmix(h ^ (v + (h << np.uint64(6)) + (h >> np.uint64(2))))
            )
        return h


def hash_unit(h, salt):
    """A uniform number in [0, 1) from a hash and a salt."""
    with np.errstate(over="ignore"):
        mixed = _splitmix(h + np.uint64((salt * _GOLDEN) % (1 << 64)))
    return (mixed >> np.uint64(40)).astype(np.float32) * np.float32(1.0 / (1 << 24))


@dataclasses.dataclass(frozen=True)
class Grid:
    """A north-up grid in local metres (x east and y north of the region's south-west corner)."""

    x0: float
    y0: float
    res: float
    ncols: int
    nrows: int

    @classmethod
    def covering(cls, width, height, res, pad=0.0):
        return cls(
            -pad,
            -pad,
            res,
            int(round((width + 2 * pad) / res)),
            int(round((height + 2 * pad) / res)),
        )

    @property
    def y_top(self):
        return self.y0 + self.nrows * self.res

    def xs(self):
        return self.x0 + (np.arange(self.ncols) + 0.5) * self.res

    def ys(self):
        return self.y_top - (np.arange(self.nrows) + 0.5) * self.res

    def local_transform(self):
        from affine import Affine

        return Affine(self.res, 0.0, self.x0, 0.0, -self.res, self.y_top)

    def utm_transform(self):
        from affine import Affine

        return Affine(self.res, 0.0, ORIGIN_X + self.x0, 0.0, -self.res, ORIGIN_Y + self.y_top)

    def rows_cols(self, x, y):
        rows = np.clip(
            np.floor((self.y_top - np.asarray(y)) / self.res).astype(np.int64), 0, self.nrows - 1
        )
        cols = np.clip(
            np.floor((np.asarray(x) - self.x0) / self.res).astype(np.int64), 0, self.ncols - 1
        )
        return rows, cols

    def sample(self, array, x, y):
        rows, cols = self.rows_cols(x, y)
        return array[rows, cols]


def smooth_noise(rng, shape, sigma_px):
    """Gaussian-filtered white noise scaled to unit standard deviation."""
    from scipy.ndimage import gaussian_filter

    field = gaussian_filter(rng.standard_normal(shape), sigma_px, mode="reflect")
    return ((field - field.mean()) / (field.std() + 1e-12)).astype(np.float32)


def bilinear(coarse, grid, xs, ys):
    """Bilinear interpolation of ``coarse`` (on ``grid``) at the outer product of ``ys`` × ``xs``."""
    fx = (xs - grid.x0) / grid.res - 0.5
    fy = (grid.y_top - ys) / grid.res - 0.5
    ix = np.clip(np.floor(fx).astype(np.int64), 0, grid.ncols - 2)
    iy = np.clip(np.floor(fy).astype(np.int64), 0, grid.nrows - 2)
    wx = np.clip(fx - ix, 0, 1).astype(np.float32)[None, :]
    wy = np.clip(fy - iy, 0, 1).astype(np.float32)[:, None]
    top = coarse[np.ix_(iy, ix)] * (1 - wx) + coarse[np.ix_(iy, ix + 1)] * wx
    bottom = coarse[np.ix_(iy + 1, ix)] * (1 - wx) + coarse[np.ix_(iy + 1, ix + 1)] * wx
    return top * (1 - wy) + bottom * wy


def upsampled_noise(rng, shape, cell_px):
    """Unit noise varying smoothly over ``cell_px`` pixels (bilinear from a coarser random grid)."""
    small = rng.standard_normal((shape[0] // cell_px + 3, shape[1] // cell_px + 3)).astype(
        np.float32
    )
    fy, fx = (np.arange(shape[0]) + 0.5) / cell_px, (np.arange(shape[1]) + 0.5) / cell_px
    iy, ix = fy.astype(np.int64), fx.astype(np.int64)
    wy, wx = (fy - iy).astype(np.float32)[:, None], (fx - ix).astype(np.float32)[None, :]
    top = small[np.ix_(iy, ix)] * (1 - wx) + small[np.ix_(iy, ix + 1)] * wx
    bottom = small[np.ix_(iy + 1, ix)] * (1 - wx) + small[np.ix_(iy + 1, ix + 1)] * wx
    return top * (1 - wy) + bottom * wy


def chaikin(points, rounds=2):
    """Corner-cutting smoothing of an open polyline (keeps the end points)."""
    points = np.asarray(points, dtype=float)
    for _ in range(rounds):
        q = 0.75 * points[:-1] + 0.25 * points[1:]
        r = 0.25 * points[:-1] + 0.75 * points[1:]
        middle = np.empty((2 * len(q), 2))
        middle[0::2], middle[1::2] = q, r
        points = np.vstack([points[:1], middle, points[-1:]])
    return points


def gently_curved_line(rng, start, end, wobble=0.04):
    """A road from ``start`` to ``end`` that bends a little, as roads do."""
    import shapely

    start, end = np.asarray(start, float), np.asarray(end, float)
    direction = end - start
    length = np.hypot(*direction)
    if length < 1.0:
        return shapely.LineString([start, end + 1.0])
    normal = np.array([-direction[1], direction[0]]) / length
    ts = np.array([0.0, 0.33, 0.67, 1.0])
    offsets = np.concatenate([[0.0], rng.normal(0.0, wobble * length, 2), [0.0]])
    points = start[None, :] + ts[:, None] * direction[None, :] + offsets[:, None] * normal[None, :]
    return shapely.LineString(chaikin(points, 2))
