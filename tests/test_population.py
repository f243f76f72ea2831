"""People per cell from a population raster (core/grid/population.py), against shapely's exact
intersections of every pixel with every cell, written out here."""

import numpy as np
import pytest

UTM_42N = "EPSG:32642"  # central meridian 69° E
PIXEL_DEG = 3 / 3600  # WorldPop's 3 arc-seconds


def lattice_cells(lon, lat, side, size=1000.0):
    """side × side squares of ``size`` m on the UTM 42N lattice, from near (lon, lat) down-right."""
    import geopandas
    import shapely
    from pyproj import Transformer

    x, y = Transformer.from_crs(4326, UTM_42N, always_xy=True).transform(lon, lat)
    x0, y0 = np.floor(x / size) * size, np.ceil(y / size) * size
    columns, rows = np.meshgrid(np.arange(side), np.arange(side))
    lefts, tops = x0 + columns.ravel() * size, y0 - rows.ravel() * size
    return geopandas.GeoSeries(shapely.box(lefts, tops - size, lefts + size, tops), crs=UTM_42N)


def population_raster(path, cells, pixel=PIXEL_DEG, margin=3, seed=0, spoil=True):
    """A raster in EPSG:4326 over the cells (``margin`` pixels beyond): people per pixel with a
    declared nodata block, NaN, infinite and negative pixels; returns its cleaned values."""
    import rasterio
    from rasterio.transform import from_origin

    left, bottom, right, top = cells.to_crs(4326).total_bounds
    width = int(np.ceil((right - left) / pixel)) + 2 * margin
    height = int(np.ceil((top - bottom) / pixel)) + 2 * margin
    transform = from_origin(left - margin * pixel, top + margin * pixel, pixel, pixel)
    values = (np.random.default_rng(seed).random((height, width)) ** 3 * 40).astype("float32")
    if spoil:
        values[5:15, 10:30] = -9999  # declared nodata
        values[20, 40:60] = np.nan
        values[21, 40:45] = np.inf
        values[22, 40:45] = -3.0
    with rasterio.open(
        path, "w", driver="GTiff", width=width, height=height, count=1, dtype="float32",
        crs="EPSG:4326", transform=transform, nodata=-9999,
    ) as raster:  # fmt: skip
        raster.write(values, 1)
    cleaned = values.astype("float64")
    cleaned[~np.isfinite(cleaned) | (cleaned < 0)] = 0.0
    return cleaned, transform


def exact_people(cells, values, transform):
    """Σ pixel value × (area of the pixel inside the cell) / (pixel area), by shapely."""
    import shapely

    exact, inside = [], []
    pixel_area = abs(transform.a * transform.e)
    height, width = values.shape
    raster = shapely.box(transform.c, transform.f + height * transform.e,
                         transform.c + width * transform.a, transform.f)  # fmt: skip
    for polygon in cells.to_crs(4326).values:
        left, bottom, right, top = polygon.bounds
        c0, c1 = (
            int((left - transform.c) // transform.a),
            int((right - transform.c) // transform.a) + 1,
        )
        r0, r1 = (
            int((transform.f - top) // -transform.e),
            int((transform.f - bottom) // -transform.e) + 1,
        )
        c0, r0, c1, r1 = max(c0, 0), max(r0, 0), min(c1, width), min(r1, height)
        columns, rows = np.meshgrid(np.arange(c0, c1), np.arange(r0, r1))
        boxes = shapely.box(
            transform.c + columns * transform.a, transform.f + (rows + 1) * transform.e,
            transform.c + (columns + 1) * transform.a, transform.f + rows * transform.e,
        )  # fmt: skip
        share = shapely.area(shapely.intersection(boxes, polygon)) / pixel_area
        exact.append(float((values[rows, columns] * share).sum()))
        inside.append(shapely.area(shapely.intersection(polygon, raster)) / polygon.area)
    return np.array(exact), np.array(inside)


@pytest.mark.parametrize("longitude", [69.2, 66.1])  # near the central meridian, and 3° west of it
def test_grid_cells_get_the_people_of_the_area_of_each_pixel_inside_them(tmp_path, longitude):
    from povmap_qgis.core.grid.population import cell_population, square_lattice

    cells = lattice_cells(longitude, 35.5, 14)
    assert len(square_lattice(cells).members) == len(cells)  # the grid way, not the polygon one
    values, transform = population_raster(tmp_path / "people.tif", cells)
    ours, inside = cell_population(cells, str(tmp_path / "people.tif"))
    exact, _ = exact_people(cells, values, transform)
    relative = np.abs(ours / exact - 1)
    # (the way this replaced, 10 × 10 sub-pixels per pixel, was off by 0.4 % in the median)
    assert relative.max() < 0.015
    assert np.median(relative) < 0.003
    assert (inside == 1).all()
    assert (exact[:4] < exact.mean()).any()  # the spoiled pixels (nodata, NaN, ±inf, < 0) count 0
    nobody, no_share = cell_population(cells.iloc[:0], str(tmp_path / "people.tif"))
    assert len(nobody) == len(no_share) == 0


def test_strips_and_transformation_steps_do_not_change_the_people(tmp_path, monkeypatch):
    """The raster read in strips of a few rows gives the people of one strip (each pixel is
    in one strip; the transformation is interpolated between other rows), and the
    transformation taken at every 3rd pixel those of every 32nd."""
    from povmap_qgis.core.grid import population

    cells = lattice_cells(67.5, 35.5, 10)
    population_raster(tmp_path / "people.tif", cells)
    whole, _ = population.cell_population(cells, str(tmp_path / "people.tif"))
    monkeypatch.setattr(population, "STRIP_PIXELS", 1500)
    strips, _ = population.cell_population(cells, str(tmp_path / "people.tif"))
    np.testing.assert_allclose(strips, whole, rtol=1e-4)
    assert strips.sum() == pytest.approx(whole.sum(), rel=1e-6)
    monkeypatch.setattr(population, "FRAME_STEP", 3)
    finer, _ = population.cell_population(cells, str(tmp_path / "people.tif"))
    np.testing.assert_allclose(finer, whole, rtol=1e-4)


def test_cells_partly_outside_the_raster_count_only_the_people_inside(tmp_path):
    import rasterio
    from rasterio.windows import Window

    from povmap_qgis.core.grid.population import cell_population

    cells = lattice_cells(69.2, 35.5, 8)
    values, transform = population_raster(tmp_path / "full.tif", cells, spoil=False)
    with rasterio.open(tmp_path / "full.tif") as full:  # the raster without its west half
        window = Window(
            values.shape[1] // 2, 0, values.shape[1] - values.shape[1] // 2, values.shape[0]
        )
        profile = dict(full.profile, width=window.width, transform=full.window_transform(window))
        with rasterio.open(tmp_path / "east.tif", "w", **profile) as east:
            east.write(full.read(window=window))
    ours, inside = cell_population(cells, str(tmp_path / "east.tif"))
    exact, exact_inside = exact_people(cells, values[:, window.col_off :], profile["transform"])
    assert 0 < (inside < 1).sum() < len(cells) and (inside == 0).any()
    np.testing.assert_allclose(inside, exact_inside, atol=1e-6)
    whole_cells = exact_inside == 1
    np.testing.assert_allclose(ours[whole_cells], exact[whole_cells], rtol=0.01)
    cut = (exact_inside > 0) & ~whole_cells  # within 1 % of a whole cell's people
    np.testing.assert_allclose(ours[cut], exact[cut], atol=0.01 * exact[whole_cells].mean())
    assert (ours[exact_inside == 0] == 0).all()


def test_coarse_rasters_and_other_polygons_beside_grid_cells(tmp_path):
    """A raster of 30″ pixels (about 0.9 km, a pixel in two to four cells), and a grid with a
    hexagon among its cells (the polygon way for it alone): against the exact intersections."""
    import geopandas
    import shapely

    from povmap_qgis.core.grid.population import cell_population

    cells = lattice_cells(69.2, 35.5, 6)
    values, transform = population_raster(
        tmp_path / "coarse.tif", cells, pixel=30 / 3600, spoil=False
    )
    ours, _ = cell_population(cells, str(tmp_path / "coarse.tif"))
    exact, _ = exact_people(cells, values, transform)
    np.testing.assert_allclose(ours, exact, rtol=0.01)

    fine, fine_transform = population_raster(tmp_path / "fine.tif", cells)
    centre = cells.iloc[14].centroid
    angles = np.radians(np.arange(0, 360, 60))
    hexagon = shapely.Polygon(
        np.c_[centre.x + 600 * np.cos(angles), centre.y + 600 * np.sin(angles)]
    )
    mixed = geopandas.GeoSeries([*cells.values, hexagon], crs=cells.crs)
    together, _ = cell_population(mixed, str(tmp_path / "fine.tif"))
    apart, _ = cell_population(cells, str(tmp_path / "fine.tif"))
    np.testing.assert_allclose(together[:-1], apart, rtol=1e-12)
    exact_hexagon, _ = exact_people(mixed.iloc[-1:], fine, fine_transform)
    assert together[-1] == pytest.approx(exact_hexagon[0], rel=0.01)
