"""The invented landscape: river, canals, irrigation, settlements, houses, roads, districts."""

import dataclasses

import numpy as np

from .common import COARSE_M, DISTRICT_NAMES, PAD_M, TOWN_NAMES
from .settings import LandscapeSettings, SizeSettings
from .tools import Grid, chaikin, gently_curved_line, random_stream, smooth_noise


@dataclasses.dataclass
class River:
    """A meandering river flowing south; its geometry is a function of y."""

    x_mid: float
    amp1: float
    wave1: float
    phase1: float
    amp2: float
    wave2: float
    phase2: float
    belt_half: float
    belt_phase: float
    channel_half: float
    braid_phase: float

    def centre(self, y):
        return (
            self.x_mid
            + self.amp1 * np.sin(2 * np.pi * y / self.wave1 + self.phase1)
            + self.amp2 * np.sin(2 * np.pi * y / self.wave2 + self.phase2)
        )

    def slope(self, y):
        return self.amp1 * 2 * np.pi / self.wave1 * np.cos(
            2 * np.pi * y / self.wave1 + self.phase1
        ) + self.amp2 * 2 * np.pi / self.wave2 * np.cos(2 * np.pi * y / self.wave2 + self.phase2)

    def canal_line_x(self, y):
        """The smooth course the main canals follow (canals do not meander)."""
        return self.x_mid + 0.55 * self.amp1 * np.sin(2 * np.pi * y / self.wave1 + self.phase1)

    def belt_half_width(self, y):
        return self.belt_half * (1.0 + 0.18 * np.sin(2 * np.pi * y / 7300.0 + self.belt_phase))

    def braid_offset(self, y):
        return 0.45 * self.belt_half * np.sin(2 * np.pi * y / 3900.0 + self.braid_phase)

    def signed_distance(self, x, y):
        """Perpendicular distance from the centreline, negative on the west bank."""
        return (x - self.centre(y)) / np.sqrt(1.0 + self.slope(y) ** 2)

    def belt_polygon(self, y_from, y_to, margin=0.0):
        import shapely

        ys = np.arange(y_from, y_to + 50.0, 50.0)
        half = (self.belt_half_width(ys) + margin) * np.sqrt(1.0 + self.slope(ys) ** 2)
        left = np.column_stack([self.centre(ys) - half, ys])
        right = np.column_stack([self.centre(ys) + half, ys])[::-1]
        return shapely.Polygon(np.vstack([left, right])).buffer(0)


def make_river(rng, size, land):
    return River(
        x_mid=land.river_position * size.width_m,
        amp1=land.meander_amplitude_m,
        wave1=land.meander_wavelength_m,
        phase1=rng.uniform(0, 2 * np.pi),
        amp2=land.bend_amplitude_m,
        wave2=land.bend_wavelength_m,
        phase2=rng.uniform(0, 2 * np.pi),
        belt_half=land.river_belt_half_width_m,
        belt_phase=rng.uniform(0, 2 * np.pi),
        channel_half=land.channel_half_width_m,
        braid_phase=rng.uniform(0, 2 * np.pi),
    )


def command_edge_x(size, land, y, phase):
    """East edge of the canal command area; the desert starts beyond it."""
    return land.command_area_share * size.width_m + 1200.0 * np.sin(2 * np.pi * y / 9000.0 + phase)


def make_canals(rng, size, land, river):
    """Main canals on both banks, branch canals away from the river, distributaries off both.

    Returns a list of (LineString, kind) with kind 'main', 'branch' or 'distributary'.
    """
    import shapely

    width, height = size.width_m, size.height_m
    edge_phase = rng.uniform(0, 2 * np.pi)
    ys = np.arange(-1000.0, height + 1001.0, 100.0)
    canals = []
    sides = [(+1, land.main_canal_offset_m), (-1, 0.9 * land.main_canal_offset_m)]
    belt = river.belt_polygon(-2000.0, height + 2000.0, margin=250.0)
    for side, offset in sides:
        main_line = shapely.LineString(
            np.column_stack([river.canal_line_x(ys) + side * offset, ys])
        )
        canals.append((main_line, "main"))
        take_offs = np.arange(height + 500.0, -500.0, -land.branch_canal_spacing_m) - rng.uniform(
            0, 1500
        )
        for y_start in take_offs:
            x_start = river.canal_line_x(y_start) + side * offset
            heading = np.deg2rad(rng.uniform(-28.0, 8.0))
            points = [(x_start, y_start)]
            x, y = x_start, y_start
            limit_east = command_edge_x(size, land, y_start, edge_phase) - rng.uniform(0, 2500)
            for _ in range(400):
                heading = np.clip(
                    heading + np.deg2rad(rng.normal(0, 3.0)), np.deg2rad(-40), np.deg2rad(20)
                )
                x += side * 250.0 * np.cos(heading)
                y += 250.0 * np.sin(heading)
                points.append((x, y))
                if (
                    (side > 0 and x > limit_east)
                    or (side < 0 and x < -1500.0)
                    or y < -1500.0
                    or y > height + 1500.0
                ):
                    break
            branch = shapely.LineString(points)
            canals.append((branch, "branch"))
            canals.extend(_distributaries(rng, branch, land))
        canals.extend(_distributaries(rng, main_line, land, towards_river=-side))
    result = []
    region = shapely.box(-1500, -1500, width + 1500, height + 1500)
    for line, kind in canals:
        clipped = shapely.intersection(shapely.difference(line, belt), region)
        for part in getattr(clipped, "geoms", [clipped]):
            if part.geom_type == "LineString" and part.length > 150.0:
                result.append((part, kind))
    return result


def _distributaries(rng, parent, land, towards_river=None):
    """Short canals leaving ``parent`` at right angles every ~1.4 km."""
    import shapely

    lines = []
    spacing = land.distributary_spacing_m
    for along in np.arange(
        rng.uniform(300, spacing), parent.length - 200.0, spacing * rng.uniform(0.8, 1.2)
    ):
        p = np.array(parent.interpolate(along).coords[0])
        q = np.array(parent.interpolate(min(along + 50.0, parent.length)).coords[0])
        tangent = (q - p) / (np.hypot(*(q - p)) + 1e-9)
        normal = np.array([-tangent[1], tangent[0]])
        if towards_river is not None:
            side = np.sign(normal[0]) * towards_river
            normal = normal * (1 if side > 0 else -1)
            length = rng.uniform(1200.0, 2600.0)
        else:
            normal = normal * (1 if rng.random() < 0.5 else -1)
            length = rng.uniform(900.0, 2400.0)
        bend = rng.normal(0, 0.12) * length
        points = [
            p,
            p + normal * length * 0.5 + tangent * bend * 0.3,
            p + normal * length + tangent * bend,
        ]
        lines.append((shapely.LineString(chaikin(points, 2)), "distributary"))
    return lines


def rasterize_lines(lines_with_values, grid, all_touched=True, dtype="uint8"):
    from rasterio.features import rasterize

    shapes = [(geometry, value) for geometry, value in lines_with_values if not geometry.is_empty]
    if not shapes:
        return np.zeros((grid.nrows, grid.ncols), dtype=dtype)
    return rasterize(
        shapes,
        out_shape=(grid.nrows, grid.ncols),
        transform=grid.local_transform(),
        all_touched=all_touched,
        dtype=dtype,
        fill=0,
    )


def irrigation_field(rng, land, river, canals, coarse):
    """0..1: how well a place is watered (drives crops, settlements and greenery)."""
    from scipy.ndimage import distance_transform_edt

    canal_mask = rasterize_lines([(line, 1) for line, _ in canals], coarse) > 0
    distance = distance_transform_edt(~canal_mask) * coarse.res
    noise = smooth_noise(rng, (coarse.nrows, coarse.ncols), 3000.0 / coarse.res)
    irrigation = np.exp(-((distance / land.irrigation_reach_m) ** 2)) + 0.2 * noise
    xs, ys = coarse.xs()[None, :], coarse.ys()[:, None]
    river_distance = np.abs(river.signed_distance(xs, ys))
    in_belt = river_distance < river.belt_half_width(ys)
    irrigation = np.where(in_belt, 0.45 + 0.15 * noise, irrigation)
    irrigation = np.where(river_distance < river.channel_half, 0.0, irrigation)
    return np.clip(irrigation, 0.0, 1.0).astype(np.float32), distance.astype(np.float32)


@dataclasses.dataclass
class Settlements:
    """Towns first, then villages, then hamlets (kind 0, 1, 2)."""

    x: np.ndarray
    y: np.ndarray
    kind: np.ndarray
    population: np.ndarray
    radius: np.ndarray
    electrified: np.ndarray
    names: list  # towns only
    town_shapes: list  # (radius, phases, amplitudes) per town
    town_polygons: list  # shapely, local metres

    @property
    def n_towns(self):
        return len(self.names)


def town_outline(x, y, radius, phases, amplitudes, points=96):
    import shapely

    theta = np.linspace(0, 2 * np.pi, points, endpoint=False)
    factor = town_radial_factor(theta, phases, amplitudes)
    return shapely.Polygon(
        np.column_stack([x + radius * factor * np.cos(theta), y + radius * factor * np.sin(theta)])
    )


def town_radial_factor(theta, phases, amplitudes):
    return 1.0 + sum(
        a * np.cos(k * theta + p) for k, a, p in zip((2, 3, 5), amplitudes, phases, strict=True)
    )


def make_towns(rng, size, river, irrigation, coarse, canal_distance):
    """Towns on watered land off the flood plain, both banks served, spaced apart."""
    west_quota = max(1, int(round(size.towns * 0.34)))
    chosen = []
    for _ in range(20_000):
        if len(chosen) == size.towns:
            break
        x = rng.uniform(2500.0, size.width_m - 2500.0)
        y = rng.uniform(2500.0, size.height_m - 2500.0)
        distance = river.signed_distance(x, y)
        if abs(distance) < river.belt_half_width(y) + 900.0:
            continue
        if coarse.sample(irrigation, x, y) < 0.5 or coarse.sample(canal_distance, x, y) < 200.0:
            continue
        west = sum(1 for _, _, w in chosen if w)
        is_west = distance < 0
        if is_west and west >= west_quota and len(chosen) < size.towns - 1:
            continue
        if not is_west and (len(chosen) - west) >= size.towns - west_quota:
            continue
        if any(np.hypot(x - cx, y - cy) < size.min_town_spacing_m for cx, cy, _ in chosen):
            continue
        chosen.append((x, y, is_west))
    if len(chosen) < size.towns:
        raise RuntimeError(
            f"could place only {len(chosen)} of {size.towns} towns; the region is too small for its settings."
        )
    low, high = size.town_population
    population = np.sort(np.exp(rng.uniform(np.log(low), np.log(high), size.towns)))[::-1].round(-2)
    return np.array([c[0] for c in chosen]), np.array([c[1] for c in chosen]), population


def make_settlements(rng, size, land, river, irrigation, coarse, canal_distance):
    import shapely

    town_x, town_y, town_population = make_towns(
        rng, size, river, irrigation, coarse, canal_distance
    )
    town_radius = np.sqrt(town_population / land.town_people_per_km2 / np.pi) * 1000.0
    town_shapes, town_polygons = [], []
    for x, y, radius in zip(town_x, town_y, town_radius, strict=True):
        phases = rng.uniform(0, 2 * np.pi, 3)
        amplitudes = rng.uniform([0.08, 0.04, 0.02], [0.2, 0.12, 0.06])
        town_shapes.append((phases, amplitudes))
        town_polygons.append(town_outline(x, y, radius, phases, amplitudes))
    towns_zone = shapely.union_all([p.buffer(450.0) for p in town_polygons])
    shapely.prepare(towns_zone)

    area_km2 = size.width_m * size.height_m / 1e6
    rural = []
    for kind, density, median, spacing in (
        (1, land.village_density_km2, land.village_population_median, 420.0),
        (2, land.hamlet_density_km2, land.hamlet_population_median, 230.0),
    ):
        n = rng.poisson(density * area_km2)
        x = rng.uniform(150.0, size.width_m - 150.0, n)
        y = rng.uniform(150.0, size.height_m - 150.0, n)
        water = coarse.sample(irrigation, x, y)
        keep = rng.random(n) < (0.07 + 0.93 * water)
        keep &= np.abs(river.signed_distance(x, y)) > river.belt_half_width(y) + 150.0
        keep &= coarse.sample(canal_distance, x, y) > 90.0
        keep &= ~shapely.contains_xy(towns_zone, x, y)
        sigma = 0.55 if kind == 1 else 0.5
        population = np.clip(
            np.exp(rng.normal(np.log(median), sigma, n)), median / 4, median * 6
        ).round()
        rural.append((x[keep], y[keep], np.full(keep.sum(), kind), population[keep], spacing))

    x, y, kind, population = spaced_out(rural)
    radius = np.sqrt(population / land.village_people_per_km2 / np.pi) * 1000.0
    electrified = np.where(kind == 1, rng.random(len(x)) < 0.85, rng.random(len(x)) < 0.4)
    return Settlements(
        x=np.concatenate([town_x, x]),
        y=np.concatenate([town_y, y]),
        kind=np.concatenate([np.zeros(len(town_x), int), kind]),
        population=np.concatenate([town_population, population]),
        radius=np.concatenate([town_radius, radius]),
        electrified=np.concatenate([np.ones(len(town_x), bool), electrified]),
        names=TOWN_NAMES[: len(town_x)],
        town_shapes=town_shapes,
        town_polygons=town_polygons,
    )


def spaced_out(groups, bucket_m=500.0):
    """Drop settlements too close to one already kept (villages are placed before hamlets).

    ``groups`` holds (x, y, kind, population, spacing) per kind; ``bucket_m`` must
    be at least the largest spacing."""
    kept = []
    buckets = {}
    for x, y, kind, population, spacing in groups:
        for a, b, k, p in zip(x, y, kind, population, strict=True):
            key = (int(a // bucket_m), int(b // bucket_m))
            neighbours = (
                item
                for dx in (-1, 0, 1)
                for dy in (-1, 0, 1)
                for item in buckets.get((key[0] + dx, key[1] + dy), ())
            )
            if any(
                (a - c) ** 2 + (b - d) ** 2 < max(spacing, other) ** 2 for c, d, other in neighbours
            ):
                continue
            buckets.setdefault(key, []).append((a, b, spacing))
            kept.append((a, b, k, p))
    x, y, kind, population = (np.array(column) for column in zip(*kept, strict=True))
    return x, y, kind.astype(int), population


@dataclasses.dataclass
class Houses:
    """Every house of every settlement; households of the surveys live in them."""

    x: np.ndarray
    y: np.ndarray
    settlement: np.ndarray
    roof: np.ndarray  # 1 mud, 2 concrete, 3 dark
    big: np.ndarray  # 2 × 2 pixels instead of 1
    first: np.ndarray  # index of each settlement's first house
    count: np.ndarray  # houses per settlement


ROOF_SHARES = {0: (0.25, 0.55, 0.20), 1: (0.70, 0.20, 0.10), 2: (0.85, 0.05, 0.10)}


def make_houses(rng, settlements, land):
    count = np.maximum(3, np.round(settlements.population / land.people_per_house)).astype(np.int64)
    owner = np.repeat(np.arange(len(count)), count)
    n = len(owner)
    x = np.empty(n)
    y = np.empty(n)
    is_town = settlements.kind[owner] == 0
    # Towns: centre-heavy inside their irregular outline.
    for index, (phases, amplitudes) in enumerate(settlements.town_shapes):
        mine = np.flatnonzero(owner == index)
        theta = rng.uniform(0, 2 * np.pi, len(mine))
        reach = (
            settlements.radius[index]
            * town_radial_factor(theta, phases, amplitudes)
            * rng.random(len(mine)) ** 0.6
        )
        x[mine] = settlements.x[index] + reach * np.cos(theta)
        y[mine] = settlements.y[index] + reach * np.sin(theta)
    # Villages and hamlets: one to four neighbourhoods each.
    rural = np.flatnonzero(~is_town)
    who = owner[rural]
    clusters = np.clip(1 + settlements.population // 700, 1, 4).astype(np.int64)
    radius = settlements.radius
    centres = rng.normal(0.0, 1.0, (len(count), 4, 2)) * (0.45 * radius)[:, None, None]
    centres[:, 0, :] = 0.0
    chosen = np.floor(rng.random(len(rural)) * clusters[who]).astype(np.int64)
    spread = (0.5 * radius / np.sqrt(clusters))[who]
    x[rural] = settlements.x[who] + centres[who, chosen, 0] + rng.normal(0, 1, len(rural)) * spread
    y[rural] = settlements.y[who] + centres[who, chosen, 1] + rng.normal(0, 1, len(rural)) * spread

    kind = settlements.kind[owner]
    roof = np.empty(n, np.uint8)
    draw = rng.random(n)
    for k, (mud, concrete, _) in ROOF_SHARES.items():
        mine = kind == k
        roof[mine] = np.where(draw[mine] < mud, 1, np.where(draw[mine] < mud + concrete, 2, 3))
    big = rng.random(n) < np.where(kind == 0, 0.45, 0.3)
    first = np.concatenate([[0], np.cumsum(count)[:-1]])
    return Houses(x=x, y=y, settlement=owner, roof=roof, big=big, first=first, count=count)


@dataclasses.dataclass
class Roads:
    lines: list  # (LineString, kind) with kind 'track', 'link' or 'highway'


def make_roads(rng, size, settlements, river):
    """Highways join the towns (crossing the river on bridges); village roads and tracks
    form a spanning tree of the settlements on each bank."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import minimum_spanning_tree
    from scipy.spatial import Delaunay

    lines = []
    towns = np.column_stack(
        [settlements.x[: settlements.n_towns], settlements.y[: settlements.n_towns]]
    )
    distances = np.hypot(*(towns[:, None, :] - towns[None, :, :]).transpose(2, 0, 1))
    tree = minimum_spanning_tree(distances).tocoo()
    for i, j in zip(tree.row, tree.col, strict=True):
        lines.append((gently_curved_line(rng, towns[i], towns[j], 0.03), "highway"))
    north, south = int(np.argmax(towns[:, 1])), int(np.argmin(towns[:, 1]))
    lines.append(
        (
            gently_curved_line(
                rng,
                towns[north],
                (towns[north, 0] + rng.normal(0, 2500), size.height_m + 800),
                0.03,
            ),
            "highway",
        )
    )
    lines.append(
        (
            gently_curved_line(
                rng, towns[south], (towns[south, 0] + rng.normal(0, 2500), -800), 0.03
            ),
            "highway",
        )
    )

    points = np.column_stack([settlements.x, settlements.y])
    triangles = Delaunay(points).simplices
    edges = np.unique(
        np.sort(
            np.vstack([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [0, 2]]]), axis=1
        ),
        axis=0,
    )
    a, b = points[edges[:, 0]], points[edges[:, 1]]
    length = np.hypot(*(a - b).T)
    crosses = np.zeros(len(edges), bool)
    for t in (0.0, 0.25, 0.5, 0.75, 1.0):
        p = a + t * (b - a)
        crosses |= (
            np.abs(river.signed_distance(p[:, 0], p[:, 1])) < river.belt_half_width(p[:, 1]) + 50.0
        )
    crosses |= np.sign(river.signed_distance(a[:, 0], a[:, 1])) != np.sign(
        river.signed_distance(b[:, 0], b[:, 1])
    )
    usable = ~crosses & (length < 6000.0)
    graph = coo_matrix(
        (length[usable], (edges[usable, 0], edges[usable, 1])), shape=(len(points),) * 2
    )
    forest = minimum_spanning_tree(graph).tocoo()
    population, kind = settlements.population, settlements.kind
    for i, j in zip(forest.row, forest.col, strict=True):
        paved = kind[i] == 0 or kind[j] == 0 or min(population[i], population[j]) >= 700
        lines.append(
            (gently_curved_line(rng, points[i], points[j], 0.015), "link" if paved else "track")
        )
    return Roads(lines=lines)


@dataclasses.dataclass
class Districts:
    polygons: list  # shapely, local metres
    names: list
    surveyed: np.ndarray


def make_districts(rng, size, irrigation, coarse, count=7):
    """Seven compact districts (Lloyd-relaxed Voronoi cells clipped to the region);
    the most easterly well-watered one is left unsurveyed."""
    import shapely
    from scipy.spatial import cKDTree

    step = 500.0
    gx, gy = np.meshgrid(
        np.arange(step / 2, size.width_m, step), np.arange(step / 2, size.height_m, step)
    )
    samples = np.column_stack([gx.ravel(), gy.ravel()])
    seeds = np.column_stack(
        [rng.uniform(0, size.width_m, count), rng.uniform(0, size.height_m, count)]
    )
    for _ in range(25):
        owner = cKDTree(seeds).query(samples)[1]
        seeds = np.array(
            [
                samples[owner == k].mean(axis=0) if np.any(owner == k) else seeds[k]
                for k in range(count)
            ]
        )
    region = shapely.box(0, 0, size.width_m, size.height_m)
    cells = shapely.voronoi_polygons(shapely.MultiPoint(seeds), extend_to=region)
    polygons = []
    for seed in seeds:
        cell = next(g for g in cells.geoms if g.contains(shapely.Point(seed)))
        polygons.append(shapely.intersection(cell, region))
    order = np.lexsort((seeds[:, 0], -seeds[:, 1]))  # north to south, then west to east
    polygons = [polygons[k] for k in order]
    seeds = seeds[order]
    watered = np.array([_mean_inside(irrigation, coarse, p) for p in polygons])
    candidates = [k for k in range(count) if watered[k] > 0.35] or list(range(count))
    unsurveyed = max(candidates, key=lambda k: polygons[k].centroid.x)
    names = list(DISTRICT_NAMES[:count])
    surveyed = np.ones(count, dtype=np.int32)
    surveyed[unsurveyed] = 0
    return Districts(polygons=polygons, names=names, surveyed=surveyed)


def _mean_inside(array, grid, polygon):
    import shapely

    xs, ys = np.meshgrid(grid.xs(), grid.ys())
    inside = shapely.contains_xy(polygon, xs, ys)
    return float(array[inside].mean()) if inside.any() else 0.0


@dataclasses.dataclass
class Landscape:
    size: SizeSettings
    land: LandscapeSettings
    river: River
    canals: list
    irrigation: np.ndarray
    canal_distance: np.ndarray
    coarse: Grid
    settlements: Settlements
    houses: Houses
    roads: Roads
    districts: Districts


def make_landscape(seed, size, land):
    coarse = Grid.covering(size.width_m, size.height_m, COARSE_M, PAD_M)
    river = make_river(random_stream(seed, "river"), size, land)
    canals = make_canals(random_stream(seed, "canals"), size, land, river)
    irrigation, canal_distance = irrigation_field(
        random_stream(seed, "irrigation"), land, river, canals, coarse
    )
    settlements = make_settlements(
        random_stream(seed, "settlements"), size, land, river, irrigation, coarse, canal_distance
    )
    houses = make_houses(random_stream(seed, "houses"), settlements, land)
    roads = make_roads(random_stream(seed, "roads"), size, settlements, river)
    districts = make_districts(random_stream(seed, "districts"), size, irrigation, coarse)
    return Landscape(
        size=size,
        land=land,
        river=river,
        canals=canals,
        irrigation=irrigation,
        canal_distance=canal_distance,
        coarse=coarse,
        settlements=settlements,
        houses=houses,
        roads=roads,
        districts=districts,
    )
