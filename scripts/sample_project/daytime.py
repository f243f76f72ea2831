"""The Sentinel-2-like daytime image, written in strips."""

import dataclasses

import numpy as np

from .common import CRS_PROJECTED, GENERATOR_NAME, GENERATOR_VERSION, PIXEL_M, STRIP_ROWS, WORK_M
from .landscape import rasterize_lines
from .tools import bilinear, hash_ints, hash_unit, random_stream, smooth_noise, upsampled_noise

# Surface reflectance × 10000 of the materials, bands red (B4), green (B3), blue (B2), NIR (B8).
MATERIALS = [
    ("green crop", (330, 720, 340, 4300)),
    ("trees", (230, 430, 240, 2900)),
    ("dry vegetation", (1700, 1500, 1050, 2500)),
    ("moist soil", (1250, 1050, 800, 1750)),
    ("dry soil", (2050, 1750, 1300, 2450)),
    ("desert soil", (2900, 2450, 1850, 3300)),
    ("river sand", (2550, 2300, 1850, 2800)),
    ("saline crust", (3400, 3300, 3100, 3500)),
    ("river water", (850, 950, 780, 420)),
    ("canal water", (560, 720, 640, 330)),
    ("asphalt", (1050, 1020, 980, 1200)),
    ("concrete roof", (2900, 2800, 2650, 3050)),
    ("mud roof", (2450, 2100, 1650, 2700)),
    ("dark roof", (850, 820, 780, 1050)),
    ("settlement ground", (2150, 1850, 1450, 2450)),
    ("dirt track", (2700, 2350, 1850, 2900)),
]


M = {name: index for index, (name, _) in enumerate(MATERIALS)}


SPECTRA = np.array([spectrum for _, spectrum in MATERIALS], dtype=np.float32)


BAND_DESCRIPTIONS = (
    "B4 red (665 nm)",
    "B3 green (560 nm)",
    "B2 blue (490 nm)",
    "B8 near infrared (842 nm)",
)


ROAD_CODES = {"track": 1, "link": 2, "highway": 3}


@dataclasses.dataclass
class FineLayers:
    """What is drawn on the 10 m grid from vectors: codes per pixel."""

    roads: np.ndarray  # 0 none, 1 track, 2 link road, 3 highway
    canals: np.ndarray  # 0 none, 1 bank trees, 2 water
    roofs: np.ndarray  # 0 none, 1 mud, 2 concrete, 3 dark, 4 tree
    ground: np.ndarray  # settlement ground (village compounds)
    towns: np.ndarray  # 0 none, else town index + 1


def draw_fine_layers(rng, landscape, fine):
    """Rasterise roads, canals, towns and houses onto the 10 m grid."""
    from scipy.ndimage import binary_dilation

    road_shapes = [
        (line.buffer(10.0) if kind == "highway" else line, ROAD_CODES[kind])
        for kind_order in ("track", "link", "highway")
        for line, kind in landscape.roads.lines
        if kind == kind_order
    ]
    roads = _rasterize_mixed(road_shapes, fine)

    widths = {"main": 20.0, "branch": 9.0, "distributary": 0.0}
    canal_shapes = [
        (line.buffer(widths[kind] + 14.0), 1)
        for line, kind in landscape.canals
        if kind != "distributary"
    ]
    canal_shapes += [
        (line.buffer(widths[kind]) if widths[kind] else line, 2) for line, kind in landscape.canals
    ]
    canals = _rasterize_mixed(canal_shapes, fine)

    towns = rasterize_lines(
        [(polygon, k + 1) for k, polygon in enumerate(landscape.settlements.town_polygons)],
        fine,
        all_touched=False,
    )

    houses = landscape.houses
    roofs = np.zeros((fine.nrows, fine.ncols), np.uint8)
    rows, cols = fine.rows_cols(houses.x, houses.y)
    roofs[rows, cols] = houses.roof
    big = houses.big
    for dr, dc in ((0, 1), (1, 0), (1, 1)):
        r = np.clip(rows[big] + dr, 0, fine.nrows - 1)
        c = np.clip(cols[big] + dc, 0, fine.ncols - 1)
        roofs[r, c] = houses.roof[big]
    rural_house = roofs > 0
    rural_house &= towns == 0
    disk = np.array(
        [[0, 1, 1, 1, 0], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [0, 1, 1, 1, 0]], bool
    )
    ground = binary_dilation(rural_house, structure=disk) & (towns == 0)

    # Trees in and around villages (shade trees, orchards) and on the edges of towns.
    settlements = landscape.settlements
    trees_per = np.where(
        settlements.kind == 0, houses.count // 20, np.maximum(2, houses.count // 3)
    )
    owner = np.repeat(np.arange(len(trees_per)), trees_per)
    theta = rng.uniform(0, 2 * np.pi, len(owner))
    reach = settlements.radius[owner] * rng.uniform(0.3, 1.5, len(owner)) + 15.0
    tx = settlements.x[owner] + reach * np.cos(theta)
    ty = settlements.y[owner] + reach * np.sin(theta)
    tr, tc = fine.rows_cols(tx, ty)
    for dr, dc in ((0, 0), (0, 1), (1, 0), (1, 1)):
        keep = rng.random(len(tr)) < (0.9 if (dr, dc) == (0, 0) else 0.5)
        roofs[
            np.clip(tr[keep] + dr, 0, fine.nrows - 1), np.clip(tc[keep] + dc, 0, fine.ncols - 1)
        ] = 4
    return FineLayers(roads=roads, canals=canals, roofs=roofs, ground=ground, towns=towns)


def _rasterize_mixed(shapes, grid):
    """Lines are drawn one pixel wide (all touched), polygons by pixel centre; later shapes win."""
    from rasterio.features import rasterize

    out = np.zeros((grid.nrows, grid.ncols), np.uint8)
    lines = [(g, v) for g, v in shapes if g.geom_type in ("LineString", "MultiLineString")]
    polygons = [(g, v) for g, v in shapes if g.geom_type not in ("LineString", "MultiLineString")]
    # Draw in value order so that higher codes win across both kinds.
    for value in sorted({v for _, v in shapes}):
        for group, touched in ((lines, True), (polygons, False)):
            chosen = [(g, value) for g, v in group if v == value]
            if chosen:
                layer = rasterize(
                    chosen,
                    out_shape=out.shape,
                    transform=grid.local_transform(),
                    all_touched=touched,
                    dtype="uint8",
                    fill=0,
                )
                out = np.where(layer > 0, layer, out)
    return out


@dataclasses.dataclass
class NoiseFields:
    """Smooth fields on the coarse grid that shape the image at 10 m."""

    warp_u: np.ndarray
    warp_v: np.ndarray
    brightness: np.ndarray
    riparian: np.ndarray
    sandbars: np.ndarray
    saline: np.ndarray
    channel: np.ndarray
    dunes: np.ndarray


def make_noise_fields(rng, coarse):
    shape = (coarse.nrows, coarse.ncols)
    return NoiseFields(
        warp_u=25.0 * smooth_noise(rng, shape, 1500.0 / coarse.res),
        warp_v=25.0 * smooth_noise(rng, shape, 1500.0 / coarse.res),
        brightness=smooth_noise(rng, shape, 600.0 / coarse.res),
        riparian=smooth_noise(rng, shape, 250.0 / coarse.res),
        sandbars=smooth_noise(rng, shape, 200.0 / coarse.res),
        saline=smooth_noise(rng, shape, 700.0 / coarse.res),
        channel=smooth_noise(rng, shape, 400.0 / coarse.res),
        dunes=smooth_noise(rng, shape, 900.0 / coarse.res),
    )


def write_daytime(path, seed, landscape, fine):
    """Synthesise the Sentinel-2-like image strip by strip; return NDVI on the 100 m region grid."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.windows import Window

    layers = draw_fine_layers(random_stream(seed, "fine-layers"), landscape, fine)
    noise = make_noise_fields(random_stream(seed, "daytime-noise"), landscape.coarse)
    block = int(round(WORK_M / PIXEL_M))
    ndvi = np.zeros((fine.nrows // block, fine.ncols // block), np.float32)
    profile = {
        "driver": "GTiff",
        "width": fine.ncols,
        "height": fine.nrows,
        "count": 4,
        "dtype": "uint16",
        "crs": CRS_PROJECTED,
        "transform": fine.utm_transform(),
        "nodata": 0,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
        "predictor": 2,
        "zlevel": 6,
        "interleave": "pixel",
        "photometric": "RGB",
        "num_threads": "ALL_CPUS",
    }
    factors = [f for f in (2, 4, 8, 16, 32, 64) if min(fine.ncols, fine.nrows) / f >= 128]
    with rasterio.Env(
        COMPRESS_OVERVIEW="DEFLATE", PREDICTOR_OVERVIEW=2, GDAL_NUM_THREADS="ALL_CPUS"
    ):
        with rasterio.open(path, "w", **profile) as dst:
            for index, row0 in enumerate(range(0, fine.nrows, STRIP_ROWS)):
                row1 = min(row0 + STRIP_ROWS, fine.nrows)
                rng = random_stream(seed, f"daytime-strip-{index}")
                bands = synthesise_strip(rng, seed, landscape, fine, layers, noise, row0, row1)
                dst.write(bands, window=Window(0, row0, fine.ncols, row1 - row0))
                red, nir = bands[0].astype(np.float32), bands[3].astype(np.float32)
                strip_ndvi = (nir - red) / (nir + red)
                h, w = (row1 - row0) // block, fine.ncols // block
                ndvi[row0 // block : row0 // block + h] = (
                    strip_ndvi[: h * block, : w * block]
                    .reshape(h, block, w, block)
                    .mean(axis=(1, 3))
                )
            for band, description in enumerate(BAND_DESCRIPTIONS, start=1):
                dst.set_band_description(band, description)
            dst.update_tags(
                SYNTHETIC="yes",
                DESCRIPTION="SYNTHETIC Sentinel-2 L2A-like surface reflectance x 10000 (invented place)",
                GENERATOR=f"{GENERATOR_NAME} {GENERATOR_VERSION}",
                SEED=str(seed),
                BAND_ORDER="B4 red, B3 green, B2 blue, B8 NIR",
            )
            dst.build_overviews(factors, Resampling.average)
    return ndvi


def synthesise_strip(rng, seed, landscape, fine, layers, noise, row0, row1):
    """Rows ``row0``–``row1`` of the image as uint16 [4, rows, cols]."""
    land, river, coarse = landscape.land, landscape.river, landscape.coarse
    # One extra row so that field boundaries can be found across the strip edge.
    extra = 1 if row1 < fine.nrows else 0
    ys = fine.y_top - (np.arange(row0, row1 + extra) + 0.5) * fine.res
    xs = fine.xs()
    shape = (len(ys), len(xs))

    material_a = np.full(shape, M["desert soil"], np.uint8)
    material_b = np.full(shape, M["dry vegetation"], np.uint8)
    mix = np.zeros(shape, np.float32)

    # Field parcels: blocks of the canal-colony layout split into strips and pieces.
    angle = np.deg2rad(land.field_angle_deg)
    grid_x, grid_y = xs[None, :].astype(np.float32), ys[:, None].astype(np.float32)
    u = np.cos(angle) * grid_x + np.sin(angle) * grid_y + bilinear(noise.warp_u, coarse, xs, ys)
    v = -np.sin(angle) * grid_x + np.cos(angle) * grid_y + bilinear(noise.warp_v, coarse, xs, ys)
    size = land.field_block_m
    bi, bj = np.floor(u / size).astype(np.int64), np.floor(v / size).astype(np.int64)
    fu, fv = u / size - bi, v / size - bj
    del u, v
    block_hash = hash_ints(np.int64(seed), bi, bj)
    swap = hash_unit(block_hash, 1) < 0.5
    strips = (2 + (block_hash >> np.uint64(8)) % np.uint64(4)).astype(np.float32)
    pieces = (1 + (block_hash >> np.uint64(16)) % np.uint64(3)).astype(np.float32)
    strip = np.floor(np.where(swap, fv, fu) * strips).astype(np.int64)
    piece = np.floor(np.where(swap, fu, fv) * pieces).astype(np.int64)
    del fu, fv, swap, strips, pieces
    parcel = hash_ints(block_hash, strip * 8 + piece)
    del strip, piece
    centre_u, centre_v = (bi + 0.5) * size, (bj + 0.5) * size
    centre_x = np.cos(angle) * centre_u - np.sin(angle) * centre_v
    centre_y = np.sin(angle) * centre_u + np.cos(angle) * centre_v
    del centre_u, centre_v, bi, bj
    watered = coarse.sample(landscape.irrigation, centre_x, centre_y)
    del centre_x, centre_y

    boundary = np.zeros(shape, bool)
    boundary[:, :-1] |= parcel[:, :-1] != parcel[:, 1:]
    boundary[:-1, :] |= parcel[:-1, :] != parcel[1:, :]
    cultivated_draw, state, vigour = (
        hash_unit(parcel, 2),
        hash_unit(parcel, 3),
        hash_unit(parcel, 4),
    )
    tree_line = hash_unit(parcel, 5) < 0.06
    del parcel

    farmland = watered > 0.05 + 0.12 * hash_unit(
        block_hash, 6
    )  # ragged edge, a few outlying fields
    cultivated = farmland & (cultivated_draw < np.minimum(1.1 * watered, 0.96))
    fallow = farmland & ~cultivated
    saline = fallow & (bilinear(noise.saline, coarse, xs, ys) > 1.7) & (watered < 0.7)
    crop_plan = [  # (upper bound of state, material a, material b, mix low, mix span)
        (0.50, "moist soil", "green crop", 0.62, 0.33),
        (0.66, "moist soil", "green crop", 0.22, 0.30),
        (0.80, "dry soil", "dry vegetation", 0.45, 0.45),
        (0.93, "moist soil", "dry soil", 0.10, 0.50),
        (1.01, "canal water", "green crop", 0.35, 0.30),
    ]
    lower = 0.0
    for upper, a, b, low, span in crop_plan:
        chosen = cultivated & (state >= lower) & (state < upper)
        material_a[chosen], material_b[chosen] = M[a], M[b]
        mix[chosen] = low + span * vigour[chosen]
        lower = upper
    material_a[fallow], material_b[fallow] = M["dry soil"], M["dry vegetation"]
    mix[fallow] = 0.08 + 0.3 * vigour[fallow]
    material_a[saline], material_b[saline] = M["saline crust"], M["dry soil"]
    mix[saline] = 0.45 + 0.45 * vigour[saline]
    within = (
        1.0
        + 0.07 * upsampled_noise(rng, shape, 3)
        + 0.01 * rng.standard_normal(shape, dtype=np.float32)
    )
    mix *= within
    mix[boundary & farmland] *= 0.6
    trees = farmland & (
        (boundary & tree_line) | (rng.random(shape, dtype=np.float32) < 0.003 * watered)
    )
    material_a[trees], material_b[trees], mix[trees] = M["trees"], M["green crop"], 0.3
    del cultivated_draw, state, vigour, tree_line, cultivated, fallow, saline, within, trees

    # Desert beyond the canals: bright soil, dune ripples, sparse scrub.
    desert = ~farmland
    dunes = bilinear(noise.dunes, coarse, xs, ys)
    ripple = np.sin(2 * np.pi * (0.8 * grid_x + 0.6 * grid_y) / 420.0 + 2.0 * dunes)
    mix[desert] = np.clip(0.06 + 0.05 * ripple[desert] + 0.04 * dunes[desert], 0.0, 0.3)
    scrub = desert & (rng.random(shape, dtype=np.float32) < 0.02)
    material_a[scrub], mix[scrub] = M["dry vegetation"], 0.5
    del ripple, dunes, scrub, farmland, desert, boundary

    # The river: flood plain (riparian forest, sand bars, kacha fields), channels, embankments.
    distance = (grid_x - river.centre(ys)[:, None]) / np.sqrt(1.0 + river.slope(ys) ** 2)[:, None]
    belt = river.belt_half_width(ys)[:, None]
    in_belt = np.abs(distance) < belt
    thicket = bilinear(noise.riparian, coarse, xs, ys) + 0.5 * upsampled_noise(rng, shape, 3)
    riparian = in_belt & (thicket > 0.5)
    material_a[riparian], material_b[riparian] = M["trees"], M["dry vegetation"]
    mix[riparian] = np.clip(0.6 - 0.25 * (thicket[riparian] - 0.5), 0.15, 0.6)
    del thicket
    sand_noise = bilinear(noise.sandbars, coarse, xs, ys)
    sand = in_belt & (np.abs(distance) < river.channel_half + 300.0) & (sand_noise > 0.25)
    material_a[sand], material_b[sand], mix[sand] = M["river sand"], M["dry vegetation"], 0.04
    wobble = bilinear(noise.channel, coarse, xs, ys)
    water = np.abs(distance) < river.channel_half * (1.0 + 0.35 * wobble)
    braid = (
        (np.abs(distance - river.braid_offset(ys)[:, None]) < 55.0 * (1.0 + 0.5 * wobble))
        & (wobble > -0.3)
        & in_belt
    )
    water = (water | braid) & ~(sand_noise > 1.5)
    material_a[water], material_b[water], mix[water] = (
        M["river water"],
        M["river sand"],
        0.05 * (1 + wobble[water]),
    )
    embankment = np.abs(np.abs(distance) - (belt + 40.0)) < 7.0
    material_a[embankment], mix[embankment] = M["dirt track"], 0.0
    del (
        distance,
        belt,
        in_belt,
        riparian,
        sand_noise,
        sand,
        wobble,
        water,
        braid,
        embankment,
        grid_x,
        grid_y,
    )

    rows = slice(row0, row1 + extra)
    canals, roads, roofs = layers.canals[rows], layers.roads[rows], layers.roofs[rows]
    ground, towns = layers.ground[rows], layers.towns[rows]
    _paint(material_a, material_b, mix, canals == 1, "trees", "green crop", 0.3)
    _paint(material_a, material_b, mix, canals == 2, "canal water", "green crop", 0.05)
    _paint(material_a, material_b, mix, ground, "settlement ground", "trees", 0.06)
    in_town = towns > 0
    _paint(material_a, material_b, mix, in_town, "settlement ground", "asphalt", 0.35)
    streets, town_roofs = _town_fabric(seed, landscape, towns, xs, ys)
    roofs = np.where(in_town, town_roofs, roofs)
    for code, name, b, amount in (
        (1, "mud roof", "dark roof", 0.0),
        (2, "concrete roof", "dark roof", 0.0),
        (3, "dark roof", "asphalt", 0.2),
        (4, "trees", "green crop", 0.25),
    ):
        _paint(material_a, material_b, mix, roofs == code, name, b, amount)
    _paint(material_a, material_b, mix, streets, "asphalt", "settlement ground", 0.15)
    _paint(material_a, material_b, mix, roads == 1, "dirt track", "dry soil", 0.2)
    _paint(material_a, material_b, mix, roads == 2, "asphalt", "dirt track", 0.1)
    _paint(material_a, material_b, mix, roads == 3, "asphalt", "dirt track", 0.05)
    del canals, roads, roofs, ground, towns, in_town, streets, town_roofs

    np.clip(mix, 0.0, 1.0, out=mix)
    brightness = (
        1.0
        + 0.04 * bilinear(noise.brightness, coarse, xs, ys)
        + 0.015 * upsampled_noise(rng, shape, 2)
        + 0.004 * rng.standard_normal(shape, dtype=np.float32)
    )
    bands = np.empty((4,) + shape, np.uint16)
    for band in range(4):
        a, b = SPECTRA[material_a, band], SPECTRA[material_b, band]
        value = (a + mix * (b - a)) * brightness + rng.normal(0.0, 3.0, shape).astype(np.float32)
        bands[band] = np.clip(np.rint(value), 1, 10000).astype(np.uint16)
    return bands[:, : row1 - row0]


def _paint(material_a, material_b, mix, where, a, b, amount):
    material_a[where], material_b[where], mix[where] = M[a], M[b], amount


def _town_fabric(seed, landscape, towns, xs, ys):
    """Streets and buildings of the towns: a street grid per town, blocks of lots whose
    roofs vary by block (some blocks are parks or open ground), built-up less densely
    towards the edge. Returns (streets mask, roof codes as in ``FineLayers.roofs``)."""
    streets = np.zeros(towns.shape, bool)
    roofs = np.zeros(towns.shape, np.uint8)
    inside = np.nonzero(towns)
    if not len(inside[0]):
        return streets, roofs
    settlements = landscape.settlements
    town = (towns[inside] - 1).astype(np.int64)
    town_hash = hash_ints(np.int64(seed), np.arange(settlements.n_towns))
    angles = np.deg2rad(hash_unit(town_hash, 1) * 90.0)
    spacing_u = 80.0 + 60.0 * hash_unit(town_hash, 2)
    spacing_v = 90.0 + 70.0 * hash_unit(town_hash, 3)
    x, y = xs[inside[1]], ys[inside[0]]
    u = np.cos(angles[town]) * x + np.sin(angles[town]) * y
    v = -np.sin(angles[town]) * x + np.cos(angles[town]) * y
    streets[inside] = (np.mod(u, spacing_u[town]) < 11.0) | (np.mod(v, spacing_v[town]) < 11.0)

    block = hash_ints(town, np.floor(u / spacing_u[town]), np.floor(v / spacing_v[town]))
    lot = hash_ints(block, np.floor(u / 18.0), np.floor(v / 18.0))
    edge = np.hypot(x - settlements.x[town], y - settlements.y[town]) / settlements.radius[town]
    block_kind = hash_unit(block, 1)
    built = (block_kind >= 0.12) & (hash_unit(lot, 1) < 0.95 - 0.45 * np.clip(edge, 0, 1))
    material = hash_unit(lot, 2) + 0.5 * (hash_unit(block, 2) - 0.5)
    codes = np.where(material < 0.5, 2, np.where(material < 0.88, 1, 3)).astype(np.uint8)
    codes = np.where(built, codes, 0)
    codes = np.where(block_kind < 0.06, 4, codes)  # parks and orchards
    roofs[inside] = codes
    return streets, roofs
