"""Chip sampling (core): each chip equals gdalwarp onto its cell, nodata tracked, resume."""

import filecmp
import os
import shutil
import subprocess

import numpy as np
import pytest
import rasterio

from povmap_qgis.core.chips.chip_store import ChipStore, partial_store_path
from povmap_qgis.core.chips.sampling import ChipInput, ChipOptions, sample_chips
from povmap_qgis.core.errors import PovmapCanceledError, PovmapInputError
from povmap_qgis.core.grid import cells
from povmap_qgis.core.grid.training_grid import TrainingGridOptions, build_training_grid
from povmap_qgis.core.progress import Reporter


@pytest.fixture(scope="module")
def tiny_grid(tiny_sample, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("grid") / "grid.gpkg")
    build_training_grid(
        TrainingGridOptions(
            points_path=os.path.join(tiny_sample, "synthetic_survey.gpkg"),
            score_field="score",
            output_path=path,
            crs="EPSG:32642",
            min_obs=8,
        )
    )
    return path


def tiny_inputs(sample):
    return [
        ChipInput(
            "daytime",
            os.path.join(sample, "synthetic_daytime_s2l2a_10m.tif"),
            [1, 2, 3],
            parameter="DAYTIME",
        ),
        ChipInput(
            "nightlights",
            os.path.join(sample, "synthetic_viirs_15arcsec.tif"),
            [1],
            parameter="NIGHTLIGHTS",
        ),
        ChipInput(
            "accessibility",
            os.path.join(sample, "synthetic_accessibility_30arcsec.tif"),
            [1],
            parameter="ACCESSIBILITY",
        ),
    ]


def gdalwarp_chip(source, bands, crs, bounds, resolution, method, folder):
    """The reference: gdalwarp of one cell (bands picked with a VRT, GDAL 3.6 has no gdalwarp -b)."""
    picked = os.path.join(folder, "picked.vrt")
    subprocess.run(
        [
            "gdal_translate",
            "-q",
            "-of",
            "VRT",
            *sum((["-b", str(band)] for band in bands), []),
            source,
            picked,
        ],
        check=True,
    )
    output = os.path.join(folder, "cell.tif")
    subprocess.run(
        [
            "gdalwarp",
            "-q",
            "-overwrite",
            "-t_srs",
            crs,
            "-te",
            *map(str, bounds),
            "-tr",
            str(resolution),
            str(resolution),
            "-r",
            method,
            "-ot",
            "Float32",
            "-dstnodata",
            "nan",
            picked,
            output,
        ],
        check=True,
    )
    with rasterio.open(output) as dataset:
        return np.moveaxis(dataset.read(), 0, -1)


def assert_like_gdalwarp(chip, reference):
    """Same pixels as gdalwarp within resampling tolerance.

    Nodata masks agree on 99 % of pixels; values agree within float16 rounding
    plus 0.5 % of the chip's range on 99 % of pixels and 2 % everywhere (GDAL
    warps a block and a single cell in different chunks; measured on the real
    Sentinel-2 fixture: median 0.36, p99 3.4, max 11.8 on a 500–2870 range).
    """
    chip = chip.astype("float32")
    assert chip.shape == reference.shape
    assert (np.isnan(chip) != np.isnan(reference)).mean() < 0.01
    both = ~np.isnan(chip) & ~np.isnan(reference)
    if both.any():
        value_range = float(np.nanmax(reference) - np.nanmin(reference)) or 1e-6
        difference = np.abs(chip[both] - reference[both]) - 1e-3 * np.abs(reference[both])
        assert (difference <= 0.005 * value_range).mean() > 0.99
        assert difference.max() <= 0.02 * value_range


def test_chips_equal_gdalwarp_per_cell_on_the_sample(tiny_sample, tiny_grid, tmp_path):
    store_path = str(tmp_path / "tiny.chips")
    summary = sample_chips(
        ChipOptions(grid_path=tiny_grid, inputs=tiny_inputs(tiny_sample), output_path=store_path)
    )
    store = ChipStore(store_path)
    assert summary["sampled"] == len(store) > 20 and summary["chip_size"] == 100
    assert store.chips("daytime").shape[1:] == (100, 100, 3)
    for row in (0, len(store) // 2, len(store) - 1):
        r, c = cells.decode_cell_ids(int(store.cell_ids[row]))
        bounds = (c * 1000.0, r * 1000.0, (c + 1) * 1000.0, (r + 1) * 1000.0)
        for spec in tiny_inputs(tiny_sample):
            reference = gdalwarp_chip(
                spec.path, spec.bands, "EPSG:32642", bounds, 10, "bilinear", str(tmp_path)
            )
            assert_like_gdalwarp(store.batch([row])[spec.name][0], reference)
    assert (store.nodata_fraction[:] == 0).all()
    means = store.manifest["inputs"][0]["statistics"]["mean"]
    assert len(means) == 3 and all(200 < mean < 5000 for mean in means)


class StopAfterTwoBlocks(Reporter):
    calls = 0

    def canceled(self):
        self.calls += 1
        return self.calls > 2


def assert_same_store_files(path, other):
    """Every file of two stores (chips, cell ids, nodata, manifest with its statistics) byte for byte."""
    assert sorted(os.listdir(path)) == sorted(os.listdir(other))
    for name in os.listdir(path):
        assert filecmp.cmp(os.path.join(path, name), os.path.join(other, name), shallow=False), name


def stop_early(grid, inputs, output):
    with pytest.raises(PovmapCanceledError):
        sample_chips(
            ChipOptions(grid_path=grid, inputs=inputs, output_path=str(output)),
            StopAfterTwoBlocks(),
        )
    assert not os.path.exists(output) and os.path.isdir(partial_store_path(str(output)))


def test_a_stopped_run_resumes_and_gives_the_same_store(tiny_sample, tiny_grid, tmp_path):
    inputs = tiny_inputs(tiny_sample)[1:]
    stop_early(tiny_grid, inputs, tmp_path / "a.chips")
    summary = sample_chips(
        ChipOptions(grid_path=tiny_grid, inputs=inputs, output_path=str(tmp_path / "a.chips"))
    )
    assert (
        summary["resumed_cells"] > 0
        and summary["sampled"] + summary["resumed_cells"] == summary["cells"]
    )
    fresh = sample_chips(
        ChipOptions(grid_path=tiny_grid, inputs=inputs, output_path=str(tmp_path / "b.chips"))
    )
    assert fresh["resumed_cells"] == 0
    # Chips and the manifest's statistics too: the same bytes as an uninterrupted run.
    assert_same_store_files(tmp_path / "a.chips", tmp_path / "b.chips")


def test_a_grid_exported_to_another_file_still_resumes(tiny_sample, tiny_grid, tmp_path):
    """A filtered GRID reaches the worker as a new temporary export each run: same cells, new path."""
    inputs = tiny_inputs(tiny_sample)[1:]
    stop_early(tiny_grid, inputs, tmp_path / "a.chips")
    exported = str(tmp_path / "export-of-the-run.gpkg")
    shutil.copyfile(tiny_grid, exported)
    summary = sample_chips(
        ChipOptions(grid_path=exported, inputs=inputs, output_path=str(tmp_path / "a.chips"))
    )
    assert summary["resumed_cells"] > 0
    store = ChipStore(str(tmp_path / "a.chips"))
    assert store.manifest["settings"]["grid"] == exported  # where the finishing run read it
    sample_chips(
        ChipOptions(grid_path=exported, inputs=inputs, output_path=str(tmp_path / "b.chips"))
    )
    assert_same_store_files(tmp_path / "a.chips", tmp_path / "b.chips")


def test_a_grid_with_other_cells_at_the_same_path_starts_afresh(tiny_sample, tiny_grid, tmp_path):
    import pyogrio

    inputs = tiny_inputs(tiny_sample)[1:]
    grid = str(tmp_path / "grid.gpkg")
    shutil.copyfile(tiny_grid, grid)
    stop_early(grid, inputs, tmp_path / "a.chips")
    frame = pyogrio.read_dataframe(grid)
    os.remove(grid)
    pyogrio.write_dataframe(frame.iloc[::-1].iloc[: len(frame) - 3], grid)  # other cells, order
    summary = sample_chips(
        ChipOptions(grid_path=grid, inputs=inputs, output_path=str(tmp_path / "a.chips"))
    )
    assert summary["resumed_cells"] == 0 and summary["cells"] == len(frame) - 3
    sample_chips(ChipOptions(grid_path=grid, inputs=inputs, output_path=str(tmp_path / "b.chips")))
    assert_same_store_files(tmp_path / "a.chips", tmp_path / "b.chips")


def test_a_raster_rewritten_before_the_resume_starts_the_store_afresh(
    tiny_sample, tiny_grid, tmp_path
):
    inputs = tiny_inputs(tiny_sample)[1:]
    lights = str(tmp_path / "lights.tif")
    shutil.copyfile(inputs[0].path, lights)
    inputs[0] = ChipInput("nightlights", lights, [1], parameter="NIGHTLIGHTS")
    stop_early(tiny_grid, inputs, tmp_path / "a.chips")
    with rasterio.open(lights, "r+") as dataset:  # the same file, brighter
        dataset.write(dataset.read(1) * 2 + 1, 1)
    summary = sample_chips(
        ChipOptions(grid_path=tiny_grid, inputs=inputs, output_path=str(tmp_path / "a.chips"))
    )
    assert summary["resumed_cells"] == 0
    sample_chips(
        ChipOptions(grid_path=tiny_grid, inputs=inputs, output_path=str(tmp_path / "b.chips"))
    )
    assert_same_store_files(tmp_path / "a.chips", tmp_path / "b.chips")


def test_cell_moments_depend_on_the_cell_only_and_combine_like_numpy():
    from povmap_qgis.core.chips.raster_sampler import cell_moments, statistics_of_cells

    rng = np.random.default_rng(5)
    chips = rng.normal(1500, 300, (21, 2, 10, 10)).astype("float32")
    chips[rng.random(chips.shape) < 0.2] = np.nan
    chips[4, 1] = np.nan  # a cell without any valid pixel in one band
    together = cell_moments(chips)
    alone = np.concatenate([cell_moments(chips[row : row + 1]) for row in range(len(chips))])
    assert together.tobytes() == alone.tobytes()
    order = rng.permutation(len(chips))
    shuffled = cell_moments(chips[order])
    assert shuffled.tobytes() == together[order].tobytes()
    statistics = statistics_of_cells(together)
    reference = np.moveaxis(chips, 1, 0).reshape(2, -1).astype("float64")
    assert statistics["count"] == [float(np.isfinite(band).sum()) for band in reference]
    assert statistics["mean"] == pytest.approx(np.nanmean(reference, axis=1).tolist(), rel=1e-12)
    assert statistics["std"] == pytest.approx(np.nanstd(reference, axis=1).tolist(), rel=1e-10)
    assert statistics["min"] == np.nanmin(reference, axis=1).tolist()
    assert statistics["max"] == np.nanmax(reference, axis=1).tolist()


def test_cell_moments_of_a_whole_cell_are_the_same_bits_beside_cells_with_nodata():
    """Cells without nodata take a shorter way (no masks): a cell's moments are the same bits
    whether it is computed alone (the short way) or beside cells with nodata (the masked way),
    and equal numpy's per-cell figures."""
    from povmap_qgis.core.chips.raster_sampler import cell_moments

    rng = np.random.default_rng(8)
    chips = rng.normal(0.2, 0.05, (19, 3, 12, 12)).astype("float32")
    chips[[1, 9, 17], 2, :3] = np.nan  # one cell with nodata in each group of 8
    together = cell_moments(chips)
    alone = np.concatenate([cell_moments(chips[row : row + 1]) for row in range(len(chips))])
    assert together.tobytes() == alone.tobytes()
    values = chips.reshape(19, 3, -1).astype("float64")
    whole = np.setdiff1d(np.arange(19), [1, 9, 17])
    expected_mean = values[whole].mean(axis=-1)
    np.testing.assert_array_equal(together[whole, :, 0], 144.0)
    np.testing.assert_allclose(together[whole, :, 1], expected_mean, rtol=1e-14)
    np.testing.assert_allclose(together[whole, :, 2], values[whole].var(axis=-1) * 144, rtol=1e-10)
    np.testing.assert_array_equal(together[whole, :, 3], values[whole].min(axis=-1))
    np.testing.assert_array_equal(together[whole, :, 4], values[whole].max(axis=-1))


def test_bad_inputs_name_the_parameter(tiny_sample, tiny_grid, tmp_path):
    daytime = tiny_inputs(tiny_sample)[0]

    def fails(parameter, text, **overrides):
        options = {
            "grid_path": tiny_grid,
            "inputs": [daytime],
            "output_path": str(tmp_path / "x.chips"),
        }
        options.update(overrides)
        with pytest.raises(PovmapInputError) as caught:
            sample_chips(ChipOptions(**options))
        assert caught.value.parameter == parameter and text in str(caught.value), str(caught.value)
        assert not os.path.exists(tmp_path / "x.chips")

    fails(
        "DAYTIME",
        "band(s) [7] do not exist",
        inputs=[ChipInput("daytime", daytime.path, [1, 2, 7], parameter="DAYTIME")],
    )
    fails("DAYTIME", "at least one input", inputs=[])
    fails(
        "ID_FIELD",
        "no cell_id field",
        grid_path=os.path.join(tiny_sample, "synthetic_districts.gpkg"),
    )
    fails("CHIP_SIZE", "does not cover", chip_size=64)
    lonely = tmp_path / "elsewhere.tif"
    with rasterio.open(
        lonely,
        "w",
        driver="GTiff",
        width=10,
        height=10,
        count=1,
        dtype="float32",
        crs="EPSG:32642",
        transform=rasterio.Affine(10, 0, 100000, 0, -10, 1000000),
    ) as dataset:
        dataset.write(np.ones((1, 10, 10), dtype="float32"))
    fails("EXTRA", "does not overlap the grid", inputs=[ChipInput("far", str(lonely), [1])])
    no_crs = tmp_path / "no_crs.tif"
    with rasterio.open(
        no_crs, "w", driver="GTiff", width=10, height=10, count=1, dtype="float32"
    ) as dataset:
        dataset.write(np.ones((1, 10, 10), dtype="float32"))
    fails("EXTRA", "has no CRS", inputs=[ChipInput("nocrs", str(no_crs), [1])])


DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def aoi_grid(tmp_path, lonlat_box, crs):
    """A prediction grid (the real algorithm's core) over a lon/lat box."""
    import shapely
    from helpers import write_polygons

    from povmap_qgis.core.grid.prediction_grid import PredictionGridOptions, build_prediction_grid

    area = write_polygons(
        tmp_path / "aoi.gpkg", [shapely.box(*lonlat_box)], "EPSG:4326", name=["aoi"]
    )
    build_prediction_grid(
        PredictionGridOptions(
            area_path=str(area), output_path=str(tmp_path / "cells.gpkg"), crs=crs
        )
    )
    return str(tmp_path / "cells.gpkg")


@pytest.mark.parametrize(
    "fixture, bands, lonlat_box, crs",
    [
        # 13-band int16 Sentinel-2 in EPSG:4326, nodata 0; the box reaches past the image: edge cells are partly outside.
        (
            "sentinel2_l1c_13band_spain_512px.tif",
            [4, 3, 2],
            (-0.79, 38.09, -0.745, 38.13),
            "EPSG:32630",
        ),
        # float64 VIIRS at 15" (~460 m, coarser than a cell) in EPSG:4326, nodata 0.
        ("viirs_burundi_2016_15arcsec.tif", [1], (29.90, -3.40, 29.95, -3.36), "EPSG:32735"),
    ],
)
def test_real_rasters_in_geographic_crs_equal_gdalwarp(tmp_path, fixture, bands, lonlat_box, crs):
    grid = aoi_grid(tmp_path, lonlat_box, crs)
    source = os.path.join(DATA, fixture)
    summary = sample_chips(
        ChipOptions(
            grid_path=grid,
            inputs=[ChipInput("daytime", source, bands)],
            output_path=str(tmp_path / "real.chips"),
        )
    )
    store = ChipStore(str(tmp_path / "real.chips"))
    fractions = store.nodata_fraction[:, 0]
    rows = sorted({0, len(store) - 1, int(np.argmax(fractions)), int(np.argmin(fractions))})
    for row in rows:
        r, c = cells.decode_cell_ids(int(store.cell_ids[row]))
        bounds = (c * 1000.0, r * 1000.0, (c + 1) * 1000.0, (r + 1) * 1000.0)
        reference = gdalwarp_chip(source, bands, crs, bounds, 10, "bilinear", str(tmp_path))
        chip = store.batch([row])["daytime"][0]
        assert_like_gdalwarp(chip, reference)
        assert fractions[row] == pytest.approx(np.isnan(reference).any(axis=-1).mean(), abs=0.01)
    if fixture.startswith("sentinel2"):
        assert (
            fractions.max() > 0.1 and summary["flagged"] > 0
        )  # cells past the image edge: NaN, flagged, never zeros
        assert not (
            np.nan_to_num(store.chips("daytime")[int(np.argmax(fractions))], nan=1) == 0
        ).any()
    else:
        chip = store.batch([rows[0]])["daytime"][0, :, :, 0].astype("float32")
        # ~460 m pixels on a 10 m chip: a smooth ramp between a few source values, no steps
        steps = max(np.abs(np.diff(chip, axis=0)).max(), np.abs(np.diff(chip, axis=1)).max())
        assert steps <= (chip.max() - chip.min()) / 10 + 1e-3


def test_a_styled_geopackage_is_read_by_its_spatial_layer(tmp_path):
    import warnings

    from helpers import write_points

    from povmap_qgis.core.chips.grid_cells import read_grid_cells
    from povmap_qgis.paths import style_path

    points = write_points(
        tmp_path / "p.gpkg",
        [600100.0, 600200, 600300],
        [2800100.0] * 3,
        "EPSG:32642",
        score=[1, 2, 3],
    )
    build_training_grid(
        TrainingGridOptions(
            points_path=str(points),
            score_field="score",
            output_path=str(tmp_path / "g.gpkg"),
            style_qml_path=style_path("training_grid"),
        )
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        grid = read_grid_cells(str(tmp_path / "g.gpkg"))
    assert grid.ids.tolist() == [cells.encode_cell_ids(2800, 600)] and grid.cell_size == 1000.0
    assert grid.povmap_ids


def test_sampled_chips_are_a_stores_rows_to_the_last_bit_and_in_its_layout(tiny_sample, tiny_chips):
    """What predicting from rasters hands the members equals what a store gives back.

    Same values and the same C layout: the statistics member's float64 sums over a chip
    add in memory order, and a transposed layout changed them in the last bits (enough to
    flip a tree's split: prob_stats_gbm differed by up to 0.008 before the fix).
    """
    from povmap_qgis.core.chips.grid_cells import group_blocks, read_grid_cells
    from povmap_qgis.core.chips.raster_sampler import InputSampler
    from povmap_qgis.core.model.learning_data import normalise
    from povmap_qgis.core.model.statistics_member import chip_statistics

    store = ChipStore(tiny_chips["chips"])
    grid = read_grid_cells(tiny_chips["grid"])
    cell_ids = grid.ids
    block = max(group_blocks(np.arange(len(cell_ids)), grid), key=len)
    positions = {int(cell): row for row, cell in enumerate(store.cell_ids)}
    store_rows = np.array([positions[int(cell)] for cell in cell_ids[block]])
    spec = ChipInput(
        "daytime", os.path.join(tiny_sample, "synthetic_daytime_s2l2a_10m.tif"), [1, 2, 3]
    )
    sampler = InputSampler(spec, grid.crs, 10.0, 100, "float16")
    try:
        sampled, _, _ = sampler.sample(grid.lefts[block], grid.tops[block])
    finally:
        sampler.close()
    stored = store.batch_of("daytime", store_rows)
    assert len(block) > 4 and sampled.flags.c_contiguous
    assert sampled.dtype == stored.dtype and np.array_equal(sampled, stored, equal_nan=True)
    scale = {"daytime": {"mean": [1000.0, 1000.0, 800.0], "std": [500.0, 500.0, 400.0]}}
    from_rasters = chip_statistics(normalise({"daytime": sampled}, scale), ["daytime"])
    from_store = chip_statistics(normalise({"daytime": stored}, scale), ["daytime"])
    assert np.array_equal(from_rasters, from_store)
