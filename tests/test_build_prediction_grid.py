"""povmap:buildpredictiongrid: coverage, shared ids, habitability (QGIS references)."""

import os
import zipfile

import geopandas
import numpy as np
import pytest
import rasterio
import shapely
from helpers import read_grid, write_points, write_polygons
from qgis.core import QgsRasterLayer
from qgis_helpers import run_algorithm, run_failing

from povmap_qgis.core.grid import cells

ALG = "povmap:buildpredictiongrid"
UTM = "EPSG:32642"


def irregular_districts(tmp_path, crs=UTM):
    west = shapely.Polygon(
        [(600130, 2800270), (604420, 2800110), (603870, 2805380), (600260, 2804730)]
    )
    east = shapely.Polygon(
        [(604420, 2800110), (608710, 2800590), (607950, 2806120), (603870, 2805380)]
    )
    return write_polygons(tmp_path / "districts.gpkg", [west, east], crs, name=["West", "East"]), [
        west,
        east,
    ]


def cell_ids_of(frame):
    return set(frame["cell_id"].astype("int64"))


def test_covers_the_same_cells_as_qgis_creategrid_and_extractbylocation(povmap_provider, tmp_path):
    import processing

    path, _ = irregular_districts(tmp_path)
    results, _ = run_algorithm(
        ALG, {"AREA": str(path), "DISTRICT_FIELD": "name", "OUTPUT": str(tmp_path / "pred.gpkg")}
    )
    ours = read_grid(results["OUTPUT"])
    grid = processing.run(
        "native:creategrid",
        {
            "TYPE": 2,
            "EXTENT": f"600000,609000,2800000,2807000 [{UTM}]",
            "HSPACING": 1000,
            "VSPACING": 1000,
            "CRS": UTM,
            "OUTPUT": "TEMPORARY_OUTPUT",
        },
    )["OUTPUT"]
    covering = processing.run(
        "native:extractbylocation",
        {"INPUT": grid, "PREDICATE": [0], "INTERSECT": str(path), "OUTPUT": "TEMPORARY_OUTPUT"},
    )["OUTPUT"]
    reference = {
        int(
            cells.encode_cell_ids(
                round(f.geometry().boundingBox().yMinimum() / 1000),
                round(f.geometry().boundingBox().xMinimum() / 1000),
            )
        )
        for f in covering.getFeatures()
    }
    assert cell_ids_of(ours) == reference
    assert results["CELLS_KEPT"] == len(reference)
    # each cell takes the district it overlaps most
    west_only = int(cells.encode_cell_ids(2802, 601))
    east_only = int(cells.encode_cell_ids(2802, 606))
    by_id = ours.set_index("cell_id")["district"]
    assert by_id[west_only] == "West" and by_id[east_only] == "East"


def test_shares_cell_ids_with_the_training_grid(povmap_provider, tmp_path):
    path, _ = irregular_districts(tmp_path)
    rng = np.random.default_rng(2)
    x, y = 601000 + rng.random(3000) * 6000, 2801000 + rng.random(3000) * 4000
    points = write_points(tmp_path / "p.gpkg", x, y, UTM, score=rng.integers(1, 60, 3000))
    training, _ = run_algorithm(
        "povmap:buildtraininggrid",
        {
            "INPUT": str(points),
            "SCORE_FIELD": "score",
            "DISTRICTS": str(path),
            "DISTRICT_FIELD": "name",
            "OUTPUT": str(tmp_path / "train.gpkg"),
        },
    )
    prediction, _ = run_algorithm(
        ALG, {"AREA": str(path), "DISTRICT_FIELD": "name", "OUTPUT": str(tmp_path / "pred.gpkg")}
    )
    train, pred = (
        read_grid(training["OUTPUT"]).set_index("cell_id"),
        read_grid(prediction["OUTPUT"]).set_index("cell_id"),
    )
    assert set(train.index) <= set(pred.index)
    for cell_id in train.index:
        assert train.geometry[cell_id].equals(pred.geometry[cell_id])


def test_area_in_geographic_crs_uses_utm(povmap_provider, tmp_path):
    area = write_polygons(
        tmp_path / "aoi.gpkg", [shapely.box(68.30, 25.30, 68.34, 25.33)], "EPSG:4326", name=["AOI"]
    )
    results, feedback = run_algorithm(
        ALG, {"AREA": str(area), "OUTPUT": str(tmp_path / "pred.gpkg")}
    )
    assert results["GRID_CRS"] == UTM and any("UTM zone" in line for line in feedback.infos)
    assert 12 <= results["CELLS_KEPT"] <= 30


def write_habitability(tmp_path, crs=UTM):
    """100 m raster aligned with the cells: mean per cell is known exactly."""
    values = np.zeros((70, 90), dtype="float32")
    values[:, :45] = 1.0  # western half inhabited
    values[30:40, 60:70] = 0.5  # one cell at half density
    values[0:10, 80:90] = -9999  # nodata block
    path = tmp_path / "built_up.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=90,
        height=70,
        count=1,
        dtype="float32",
        crs=crs,
        nodata=-9999,
        transform=rasterio.Affine(100, 0, 600000, 0, -100, 2807000),
    ) as dataset:
        dataset.write(values, 1)
    return path


def test_habitable_mean_equals_qgis_zonal_statistics_and_filters(povmap_provider, tmp_path):
    import processing

    path, _ = irregular_districts(tmp_path)
    raster = write_habitability(tmp_path)
    everything, _ = run_algorithm(
        ALG,
        {
            "AREA": str(path),
            "HABITABLE": str(raster),
            "HABITABLE_MIN": -1,
            "OUTPUT": str(tmp_path / "all.gpkg"),
        },
    )
    zonal = processing.run(
        "native:zonalstatisticsfb",
        {
            "INPUT": everything["OUTPUT"],
            "INPUT_RASTER": str(raster),
            "RASTER_BAND": 1,
            "COLUMN_PREFIX": "ref_",
            "STATISTICS": [2],
            "OUTPUT": "TEMPORARY_OUTPUT",
        },
    )["OUTPUT"]
    reference = {feature["cell_id"]: feature["ref_mean"] for feature in zonal.getFeatures()}
    ours = read_grid(everything["OUTPUT"]).set_index("cell_id")["habitable_mean"]
    assert len(ours) > 20
    for cell_id, mean in ours.items():
        assert mean == pytest.approx(reference[cell_id], abs=1e-6)
    assert everything["CELLS_NO_HABITABLE_DATA"] >= 0

    habitable, feedback = run_algorithm(
        ALG,
        {
            "AREA": str(path),
            "HABITABLE": str(raster),
            "HABITABLE_MIN": 0.5,
            "OUTPUT": str(tmp_path / "hab.gpkg"),
        },
    )
    kept = read_grid(habitable["OUTPUT"])
    assert (kept["habitable_mean"] >= 0.5).all()
    assert set(kept["cell_id"]) == {cell_id for cell_id, mean in ours.items() if mean >= 0.5}
    assert habitable["CELLS_NOT_HABITABLE"] == int((ours < 0.5).sum())
    assert any("HABITABLE:" in line for line in feedback.infos)


def test_a_raster_inside_a_zip_is_read_in_place(povmap_provider, tmp_path):
    path, _ = irregular_districts(tmp_path)
    raster = write_habitability(tmp_path)
    archive = tmp_path / "built_up.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.write(raster, "built_up.tif")
    zipped = QgsRasterLayer(f"/vsizip/{archive}/built_up.tif", "raster inside a zip", "gdal")
    assert zipped.isValid()
    from_zip, _ = run_algorithm(
        ALG,
        {
            "AREA": str(path),
            "HABITABLE": zipped,
            "HABITABLE_MIN": 0.5,
            "OUTPUT": str(tmp_path / "zip.gpkg"),
        },
    )
    from_file, _ = run_algorithm(
        ALG,
        {
            "AREA": str(path),
            "HABITABLE": str(raster),
            "HABITABLE_MIN": 0.5,
            "OUTPUT": str(tmp_path / "tif.gpkg"),
        },
    )
    assert read_grid(from_zip["OUTPUT"]).equals(read_grid(from_file["OUTPUT"]))


def test_bad_input(povmap_provider, tmp_path):
    path, _ = irregular_districts(tmp_path)
    points = write_points(tmp_path / "p.gpkg", [600100.0], [2800100.0], UTM, score=[1])
    assert "Point geometries" in run_failing(
        ALG, {"AREA": str(points), "OUTPUT": str(tmp_path / "o.gpkg")}
    )
    assert "CELL_SIZE" in run_failing(
        ALG, {"AREA": str(path), "CELL_SIZE": -1, "OUTPUT": str(tmp_path / "o.gpkg")}
    )
    message = run_failing(
        ALG,
        {
            "AREA": str(path),
            "HABITABLE": str(write_habitability(tmp_path)),
            "HABITABLE_MIN": 5,
            "OUTPUT": str(tmp_path / "o.gpkg"),
        },
    )
    assert "HABITABLE_MIN" in message and "no cell is left" in message
    tiles = QgsRasterLayer(
        "type=xyz&url=http://127.0.0.1:9/{z}/{x}/{y}.png&zmax=19&zmin=0", "web tiles", "wms"
    )
    assert tiles.isValid()
    message = run_failing(
        ALG, {"AREA": str(path), "HABITABLE": tiles, "OUTPUT": str(tmp_path / "o.gpkg")}
    )
    assert (
        "HABITABLE" in message
        and "not a raster file (provider 'wms')" in message
        and "save it as a GeoTIFF" in message
    )
    assert not os.path.exists(tmp_path / "o.gpkg")


def test_runs_headless_with_qgis_process_on_a_filtered_layer(tiny_sample, tmp_path):
    from conftest import run_qgis_process

    output = tmp_path / "unsurveyed.gpkg"
    districts = os.path.join(tiny_sample, "synthetic_districts.gpkg")
    completed = run_qgis_process(
        "run",
        ALG,
        "--",
        f'AREA={districts}|layername=synthetic_districts|subset="surveyed" = 0',
        "DISTRICT_FIELD=name",
        f"CRS={UTM}",
        f"OUTPUT={output}",
    )
    assert "CELLS_KEPT:" in completed.stdout
    grid = read_grid(output)
    unsurveyed = geopandas.read_file(districts).query("surveyed == 0")
    assert set(grid["district"]) == set(unsurveyed["name"])
    assert grid.geometry.union_all().intersection(
        unsurveyed.geometry.union_all()
    ).area == pytest.approx(unsurveyed.geometry.area.sum(), rel=1e-9)


def build_core(tmp_path, name, **options):
    from povmap_qgis.core.grid import prediction_grid

    output = str(tmp_path / f"{name}.gpkg")
    prediction_grid.build_prediction_grid(
        prediction_grid.PredictionGridOptions(output_path=output, **options)
    )
    return read_grid(output)


def test_blocks_of_a_few_cells_give_the_same_grid_as_one_block(tmp_path, monkeypatch):
    from povmap_qgis.core.grid import prediction_grid

    path, _ = irregular_districts(tmp_path)
    options = {
        "area_path": str(path),
        "district_field": "name",
        "habitable_path": str(write_habitability(tmp_path)),
        "habitable_min": 0.25,
        "cell_size": 500.0,
    }
    whole = build_core(tmp_path, "whole", **options)
    monkeypatch.setattr(prediction_grid, "BLOCK_CELLS", 7)
    monkeypatch.setattr(prediction_grid, "WRITE_CHUNK_CELLS", 5)
    assert len(list(prediction_grid.cell_blocks(5600, 5614, 1200, 1218))) > 30
    blocked = build_core(tmp_path, "blocked", **options)
    assert len(whole) > 50 and set(whole["district"]) == {"West", "East"}
    assert blocked.drop(columns="geometry").equals(whole.drop(columns="geometry"))
    assert blocked.geometry.geom_equals_exact(whole.geometry, 0).all()
    assert list(blocked["cell_id"]) == sorted(blocked["cell_id"])


def round_area(cells_wanted, cell_size):
    radius = np.sqrt(cells_wanted / np.pi) * cell_size
    angles = np.linspace(0, 2 * np.pi, 300)
    disc = shapely.Polygon(
        np.c_[600000 + radius * np.cos(angles), 2800000 + radius * np.sin(angles)]
    )
    return geopandas.GeoDataFrame({"name": ["Disc"]}, geometry=[disc], crs=UTM)


def test_memory_of_the_block_loop_does_not_grow_with_the_area(monkeypatch):
    """Working memory above the result (row, column, polygon per cell) is the same for
    an area of 10 blocks and one of 40: only the compact result grows."""
    import tracemalloc
    from types import SimpleNamespace

    from povmap_qgis.core.grid import prediction_grid
    from povmap_qgis.core.progress import Reporter

    monkeypatch.setattr(prediction_grid, "BLOCK_CELLS", 2048)
    above_result = []
    for cells_wanted in (20_000, 80_000):
        areas = round_area(cells_wanted, 100.0)
        tracemalloc.start()
        try:
            rows, cols, polygon_index = prediction_grid._covering_cells(
                areas, SimpleNamespace(cell_size=100.0), Reporter()
            )
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert len(rows) == pytest.approx(cells_wanted, rel=0.05)
        result = rows.nbytes + cols.nbytes + polygon_index.nbytes
        # the result exists twice while the blocks' parts are joined; nothing else grows
        above_result.append(peak - 2 * result)
    assert above_result[1] < above_result[0] + 512 * 1024, above_result


def test_candidate_cell_limit_is_a_share_of_available_memory():
    from povmap_qgis.core.grid import prediction_grid

    assert prediction_grid.candidate_cell_limit(8 * 1024**3) == 8 * 1024**3 // 4 // 64
    assert prediction_grid.candidate_cell_limit(1024**4) == prediction_grid.MAX_CANDIDATE_CELLS
    assert prediction_grid.candidate_cell_limit(0) == prediction_grid.BLOCK_CELLS
    assert 0 < prediction_grid.available_memory()


@pytest.mark.parametrize("declared", [None, -9999.0])
def test_nan_and_inf_habitability_pixels_are_nodata_whatever_the_declared_value(tmp_path, declared):
    """A cell with a few NaN or infinite 100 m pixels keeps the mean of its other pixels
    (numpy's, per 10 × 10 block), instead of becoming 'no data' or infinite."""
    rng = np.random.default_rng(24)
    values = rng.uniform(0, 1, (70, 90)).astype("float32")
    holes = rng.random(values.shape)
    values[holes < 0.04] = np.nan
    values[(holes >= 0.04) & (holes < 0.07)] = np.inf
    values[(holes >= 0.07) & (holes < 0.08)] = -np.inf
    path = tmp_path / "holes.tif"
    with rasterio.open(
        path, "w", driver="GTiff", width=90, height=70, count=1, dtype="float32", crs=UTM,
        nodata=declared, transform=rasterio.Affine(100, 0, 600000, 0, -100, 2807000),
    ) as dataset:  # fmt: skip
        dataset.write(values, 1)
    area = write_polygons(tmp_path / "a.gpkg", [shapely.box(600000, 2800000, 609000, 2807000)], UTM)
    grid = build_core(
        tmp_path, "g", area_path=str(area), habitable_path=str(path), habitable_min=-1.0
    ).set_index("cell_id")
    assert len(grid) == 63
    finite = np.where(np.isfinite(values), values, np.nan)
    for cell_id, mean in grid["habitable_mean"].items():
        row, col = cells.decode_cell_ids(cell_id)
        top, left = (2807 - (row + 1)) * 10, (col - 600) * 10
        block = finite[top : top + 10, left : left + 10]
        assert mean == pytest.approx(float(np.nanmean(block)), rel=1e-5)
