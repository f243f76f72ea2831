"""No silent value loss: values beyond float16, NaN/inf pixels, complex rasters, JSON without NaN.

Small rasters made here with rasterio (fixed seed) over a strip of 100 m cells;
chips are 10 × 10 px at 10 m. Stored chips are compared with rasterio reading
the same window (aligned rasters) or with gdalwarp (rasters that are warped).
"""

import json
import os
import subprocess

import numpy as np
import pytest
import rasterio

from povmap_qgis.core import strict_json
from povmap_qgis.core.chips.chip_store import ChipStore
from povmap_qgis.core.chips.chip_store_writer import ChipStoreWriter
from povmap_qgis.core.chips.sampling import ChipInput, ChipOptions, sample_chips
from povmap_qgis.core.errors import PovmapCanceledError, PovmapInputError
from povmap_qgis.core.grid import cells
from povmap_qgis.core.model.learning_data import normalisation_from
from povmap_qgis.core.model.model_package import write_manifest
from povmap_qgis.core.progress import Reporter

CRS = "EPSG:32642"
CELL = 100.0
RESOLUTION = 10.0
ROW, COL = 28_000, 5_000  # the strip's first cell: x 500 km, y 2,800 km
STRIP = 32  # cells in a row: four blocks of 8 × 8 cells (the sampler's unit)
MARGIN = 5  # source pixels around the strip, so that warping sees complete sources


def strict_load(path):
    """A JSON file read as strict readers do: NaN/Infinity refused."""
    with open(path, encoding="utf-8") as handle:
        return strict_json.loads(handle.read())


@pytest.fixture(scope="module")
def strip_grid(tmp_path_factory):
    from helpers import write_polygons

    rows = np.full(STRIP, ROW, dtype="int64")
    cols = COL + np.arange(STRIP, dtype="int64")
    path = str(tmp_path_factory.mktemp("grid") / "strip.gpkg")
    write_polygons(
        path, cells.cell_boxes(rows, cols, CELL), CRS, cell_id=cells.encode_cell_ids(rows, cols)
    )
    return path


def write_raster(path, values, pixel=RESOLUTION, dtype=None, nodata=None):
    """A GeoTIFF over the strip (plus MARGIN pixels) in the grid CRS, ``values`` [bands, h, w]."""
    values = np.asarray(values)
    profile = {
        "driver": "GTiff",
        "width": values.shape[2],
        "height": values.shape[1],
        "count": values.shape[0],
        "dtype": dtype or values.dtype.name,
        "crs": CRS,
        "transform": rasterio.Affine(
            pixel, 0, COL * CELL - MARGIN * pixel, 0, -pixel, (ROW + 1) * CELL + MARGIN * pixel
        ),
        "nodata": nodata,
    }
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(values)
    return str(path)


def strip_shape(pixel=RESOLUTION, bands=1):
    return (
        bands,
        int(CELL / pixel) + 2 * MARGIN,
        int(STRIP * CELL / pixel) + 2 * MARGIN,
    )


def sample(grid, tmp_path, spec, name="x.chips", reporter=None):
    path = str(tmp_path / name)
    sample_chips(ChipOptions(grid_path=grid, inputs=[spec], output_path=path), reporter)
    return ChipStore(path)


def source_window(path, store, row):
    """What rasterio reads from an aligned raster for the chip of ``row`` ([H, W, bands])."""
    r, c = cells.decode_cell_ids(int(store.cell_ids[row]))
    with rasterio.open(path) as dataset:
        window = dataset.window(c * CELL, r * CELL, (c + 1) * CELL, (r + 1) * CELL)
        return np.moveaxis(dataset.read(window=window, out_dtype="float32"), 0, -1)


def input_manifest(store, name):
    return next(spec for spec in store.manifest["inputs"] if spec["name"] == name)


def test_values_beyond_float16_are_stored_in_float32_and_equal_the_source(strip_grid, tmp_path):
    """Night lights in nW up to 200,000 (float16 stops at 65,504): float32, same values, finite JSON."""
    rng = np.random.default_rng(14)
    values = rng.uniform(0, 200_000, strip_shape()).astype("float32")
    raster = write_raster(tmp_path / "bright.tif", values)
    store = sample(
        strip_grid,
        tmp_path,
        ChipInput("nightlights", raster, [1], parameter="NIGHTLIGHTS", label="Night-time lights"),
    )
    assert input_manifest(store, "nightlights")["dtype"] == "float32"
    chips = store.chips("nightlights")
    assert chips.dtype == np.float32 and np.isfinite(chips).all()
    assert float(chips.max()) > 65_504
    for row in (0, 13, STRIP - 1):
        assert np.array_equal(chips[row], source_window(raster, store, row))
    assert (store.nodata_fraction[:] == 0).all()
    manifest = strict_load(os.path.join(store.path, "manifest.json"))
    statistics = input_manifest(store, "nightlights")["statistics"]
    assert manifest["inputs"][0]["statistics"] == statistics
    assert statistics["max"][0] == pytest.approx(float(chips.max()))
    assert statistics["mean"][0] == pytest.approx(float(chips.astype("float64").mean()), rel=1e-6)


def test_large_integers_are_kept_exactly_when_warped(strip_grid, tmp_path):
    """uint32 counts up to 5 million on a 20 m raster, resampled (nearest): the source's integers, not inf."""
    rng = np.random.default_rng(7)
    values = rng.integers(1_000_000, 5_000_000, strip_shape(pixel=20.0), dtype="uint32")
    raster = write_raster(tmp_path / "counts.tif", values, pixel=20.0)
    store = sample(
        strip_grid, tmp_path, ChipInput("counts", raster, [1], resampling="nearest", label="Counts")
    )
    assert input_manifest(store, "counts")["dtype"] == "float32"
    chips = store.chips("counts")
    assert np.isfinite(chips).all() and float(chips.min()) >= 1_000_000
    # each 20 m source pixel covers 2 × 2 chip pixels: upsampling by nearest repeats it exactly
    r, c = cells.decode_cell_ids(int(store.cell_ids[5]))
    with rasterio.open(raster) as dataset:
        window = dataset.window(c * CELL, r * CELL, (c + 1) * CELL, (r + 1) * CELL)
        source = dataset.read(1, window=window).astype("float32")
    assert np.array_equal(chips[5, ..., 0], np.kron(source, np.ones((2, 2), dtype="float32")))


def test_warped_large_values_match_gdalwarp_within_float32_precision(strip_grid, tmp_path):
    rng = np.random.default_rng(3)
    values = rng.uniform(60_000, 90_000, strip_shape(pixel=20.0)).astype("float32")
    raster = write_raster(tmp_path / "warped.tif", values, pixel=20.0)
    store = sample(strip_grid, tmp_path, ChipInput("bright", raster, [1], label="Bright"))
    assert input_manifest(store, "bright")["dtype"] == "float32"
    row = 9
    r, c = cells.decode_cell_ids(int(store.cell_ids[row]))
    reference = tmp_path / "cell.tif"
    subprocess.run(
        ["gdalwarp", "-q", "-overwrite", "-t_srs", CRS, "-te"]
        + [str(v) for v in (c * CELL, r * CELL, (c + 1) * CELL, (r + 1) * CELL)]
        + ["-tr", "10", "10", "-r", "bilinear", "-ot", "Float32", raster, str(reference)],
        check=True,
    )
    with rasterio.open(reference) as dataset:
        expected = dataset.read(1)
    np.testing.assert_allclose(store.chips("bright")[row, ..., 0], expected, rtol=2e-7, atol=0)


def test_values_that_fit_float16_stay_float16(strip_grid, tmp_path):
    """Reflectances (uint16, 0–10,000, nodata 0): the compact store is unchanged."""
    rng = np.random.default_rng(1)
    values = rng.integers(1, 10_000, strip_shape(bands=2), dtype="uint16")
    raster = write_raster(tmp_path / "s2.tif", values, nodata=0)
    store = sample(strip_grid, tmp_path, ChipInput("daytime", raster, [1, 2], label="Daytime"))
    assert input_manifest(store, "daytime")["dtype"] == "float16"
    assert np.array_equal(
        store.chips("daytime")[4], source_window(raster, store, 4).astype("float16")
    )


def test_tiny_values_are_not_rounded_away(strip_grid, tmp_path):
    """Radiance in W/cm²/sr (about 1e-9) would be 0 in float16: stored in float32, equal to the source."""
    rng = np.random.default_rng(5)
    values = rng.uniform(1e-10, 5e-9, strip_shape()).astype("float32")
    raster = write_raster(tmp_path / "radiance.tif", values)
    store = sample(strip_grid, tmp_path, ChipInput("radiance", raster, [1], label="Radiance"))
    assert input_manifest(store, "radiance")["dtype"] == "float32"
    assert np.array_equal(store.chips("radiance")[2], source_window(raster, store, 2))


def test_nan_and_infinite_pixels_are_counted_as_nodata(strip_grid, tmp_path):
    values = np.full(strip_shape(), 20.0, dtype="float32")
    # cell 3's chip (10 × 10 px) gets 4 NaN, 3 +inf and 2 -inf pixels; cell 20's one +inf
    top, left = MARGIN, MARGIN + 3 * 10
    values[0, top, left : left + 4] = np.nan
    values[0, top + 5, left : left + 3] = np.inf
    values[0, top + 9, left + 8 : left + 10] = -np.inf
    values[0, top + 2, MARGIN + 20 * 10 + 7] = np.inf
    raster = write_raster(tmp_path / "holes.tif", values)
    store = sample(
        strip_grid,
        tmp_path,
        ChipInput("lights", raster, [1], parameter="NIGHTLIGHTS", label="Night-time lights"),
    )
    chips = store.chips("lights")
    assert not np.isinf(chips).any()
    assert np.isnan(chips[3]).sum() == 9 and np.isnan(chips[20]).sum() == 1
    fractions = np.asarray(store.nodata_fraction[:, 0])
    assert fractions[3] == pytest.approx(0.09) and fractions[20] == pytest.approx(0.01)
    assert (np.delete(fractions, [3, 20]) == 0).all()
    statistics = strict_load(os.path.join(store.path, "manifest.json"))["inputs"][0]["statistics"]
    assert statistics["min"] == [20.0] and statistics["max"] == [20.0]
    assert statistics["count"] == [STRIP * 100 - 10]


def test_infinite_pixels_in_a_warped_raster_are_nodata(strip_grid, tmp_path):
    values = np.full(strip_shape(pixel=20.0), 3.0, dtype="float32")
    values[0, MARGIN + 2, MARGIN + 6 * 5 + 2] = np.inf  # inside cell 6
    raster = write_raster(tmp_path / "warped_inf.tif", values, pixel=20.0)
    store = sample(strip_grid, tmp_path, ChipInput("warped", raster, [1], label="Warped"))
    chips = store.chips("warped")
    assert not np.isinf(chips).any() and np.isnan(chips[6]).any()
    fractions = np.asarray(store.nodata_fraction[:, 0])
    assert fractions[6] > 0 and (np.delete(fractions, 6) == 0).all()
    assert np.isfinite(chips[~np.isnan(chips)]).all()


def test_complex_rasters_are_refused_naming_the_input(strip_grid, tmp_path):
    values = (np.ones(strip_shape()) * (3 + 4j)).astype("complex64")
    raster = write_raster(tmp_path / "complex.tif", values)
    with pytest.raises(PovmapInputError) as caught:
        sample(
            strip_grid,
            tmp_path,
            ChipInput(
                "nightlights", raster, [1], parameter="NIGHTLIGHTS", label="Night-time lights"
            ),
        )
    message = str(caught.value)
    assert caught.value.parameter == "NIGHTLIGHTS"
    assert "Night-time lights (NIGHTLIGHTS)" in message and "complex" in message
    assert "real-valued raster" in message
    assert not os.path.exists(tmp_path / "x.chips")
    assert not os.path.exists(tmp_path / ".x.chips.partial")


def test_a_widened_store_resumes_in_float32_and_equals_an_uninterrupted_run(strip_grid, tmp_path):
    rng = np.random.default_rng(11)
    values = rng.uniform(50_000, 80_000, strip_shape()).astype("float32")
    raster = write_raster(tmp_path / "bright.tif", values)
    spec = ChipInput("bright", raster, [1], label="Bright")

    class StopLate(Reporter):
        calls = 0

        def canceled(self):
            self.calls += 1
            return self.calls > 5  # after the restart in float32 and two written blocks

    with pytest.raises(PovmapCanceledError):
        sample(strip_grid, tmp_path, spec, "a.chips", StopLate())
    partial = strict_load(str(tmp_path / ".a.chips.partial" / "manifest.json"))
    assert partial["inputs"][0]["dtype"] == "float32"
    summary = sample_chips(
        ChipOptions(grid_path=strip_grid, inputs=[spec], output_path=str(tmp_path / "a.chips"))
    )
    assert summary["resumed_cells"] > 0
    resumed, fresh = (
        ChipStore(str(tmp_path / "a.chips")),
        sample(strip_grid, tmp_path, spec, "b.chips"),
    )
    assert input_manifest(resumed, "bright")["dtype"] == "float32"
    assert np.array_equal(resumed.chips("bright"), fresh.chips("bright"))
    assert resumed.manifest["inputs"][0]["statistics"] == fresh.manifest["inputs"][0]["statistics"]


def test_json_writers_refuse_non_finite_numbers_naming_where(tmp_path):
    with pytest.raises(PovmapInputError) as caught:
        strict_json.dumps({"inputs": [{"name": "nightlights", "mean": [1.0, float("inf")]}]})
    assert "inputs[nightlights].mean[1]" in str(caught.value)
    with pytest.raises(ValueError):
        strict_json.loads('{"std": NaN}')
    assert strict_json.loads(strict_json.dumps({"a": [1.5, None]})) == {"a": [1.5, None]}


def old_store_with(tmp_path, name, lights):
    """A chip store as written before values were checked (float16 with inf) or with given chips."""
    path = str(tmp_path / name)
    cell_ids = np.arange(len(lights), dtype="int64")
    spec = {"name": "nightlights", "source": "/x.tif", "bands": [1], "dtype": "float16"}
    writer = ChipStoreWriter(path, cell_ids, [spec], lights.shape[1], {"grid": "/g"}).open()
    writer.write(np.arange(len(lights)), {"nightlights": lights}, np.zeros((len(lights), 1)))
    writer.finish({"nightlights": None})
    return ChipStore(path)


def test_a_constant_input_normalises_with_std_one_and_finite_json(tmp_path):
    store = old_store_with(tmp_path, "constant.chips", np.full((6, 4, 4, 1), 7.0, dtype="float16"))
    normalisation = normalisation_from(store, np.arange(6))
    assert normalisation["nightlights"]["mean"] == [7.0]
    assert normalisation["nightlights"]["std"] == [1.0]
    json.loads(strict_json.dumps(normalisation))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_a_model_manifest_with_infinite_normalisation_is_refused_naming_the_input(tmp_path):
    """A store from before this fix holds inf: the model manifest is refused, not written with Infinity."""
    lights = np.full((6, 4, 4, 1), np.inf, dtype="float16")  # 70,000 as float16 stored it
    store = old_store_with(tmp_path, "old.chips", lights)
    normalisation = normalisation_from(store, np.arange(6))
    folder = tmp_path / "model.povmodel"
    folder.mkdir()
    with pytest.raises(PovmapInputError) as caught:
        write_manifest(str(folder), {"members": [], "normalisation": normalisation})
    assert "normalisation.nightlights.mean[0]" in str(caught.value)
    assert not (folder / "manifest.json").exists()


def gdalwarp_cell(raster, store, row, tmp_path, resampling="bilinear"):
    """What gdalwarp gives for the chip of ``row``, NaN being the source's nodata."""
    r, c = cells.decode_cell_ids(int(store.cell_ids[row]))
    reference = tmp_path / f"cell{row}.tif"
    subprocess.run(
        ["gdalwarp", "-q", "-overwrite", "-t_srs", CRS, "-te"]
        + [str(v) for v in (c * CELL, r * CELL, (c + 1) * CELL, (r + 1) * CELL)]
        + ["-tr", "10", "10", "-r", resampling, "-ot", "Float32"]
        + ["-srcnodata", "nan", "-dstnodata", "nan", raster, str(reference)],
        check=True,
    )
    with rasterio.open(reference) as dataset:
        return dataset.read(1)


@pytest.mark.parametrize("declared", [None, -9999.0])
def test_nan_and_inf_pixels_are_nodata_when_warped_whatever_the_declared_value(
    strip_grid, tmp_path, declared
):
    """3 % NaN and 2 % infinite pixels in a 20 m raster that declares no nodata (or another
    value): the chips are gdalwarp's with NaN as the source nodata, not NaN spread by the
    bilinear kernel (2.6 % NaN pixels became 11 % nodata)."""
    rng = np.random.default_rng(24)
    values = rng.uniform(1, 50, strip_shape(pixel=20.0)).astype("float32")
    holes = rng.random(values.shape)
    values[holes < 0.03] = np.nan
    values[(holes >= 0.03) & (holes < 0.05)] = np.inf
    raster = write_raster(tmp_path / "holes20.tif", values, pixel=20.0, nodata=declared)
    reference = write_raster(  # what gdalwarp is told: inf as NaN, NaN declared nodata
        tmp_path / "reference20.tif",
        np.where(np.isfinite(values), values, np.nan),
        pixel=20.0,
        nodata=np.nan,
    )
    store = sample(strip_grid, tmp_path, ChipInput("holes", raster, [1], label="Holes"))
    chips = store.chips("holes")
    assert input_manifest(store, "holes")["dtype"] == "float16"
    for row in range(STRIP):  # NaN where gdalwarp has NaN, values to float16's precision
        np.testing.assert_allclose(
            chips[row, ..., 0].astype("float32"),
            gdalwarp_cell(reference, store, row, tmp_path),
            rtol=1e-3,
        )
    fraction = float(np.isnan(chips).mean())
    assert fraction < 2 * 0.05, fraction  # about the share of invalid pixels, not 4 times it


def test_a_raster_a_third_infinite_is_sampled_not_refused(strip_grid, tmp_path):
    values = np.full(strip_shape(pixel=20.0), 4.0, dtype="float32")
    values[:, :, ::3] = np.inf  # every third column
    raster = write_raster(tmp_path / "third_inf.tif", values, pixel=20.0)
    store = sample(strip_grid, tmp_path, ChipInput("third", raster, [1], label="Third"))
    valid = store.chips("third")[~np.isnan(store.chips("third"))]
    assert valid.size > 0.5 * store.chips("third").size and (valid == 4.0).all()
