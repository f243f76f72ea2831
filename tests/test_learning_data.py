"""Feeding chips to the models: augmentation, normalisation and its statistics, checked
against plain numpy written here (no TensorFlow needed, fast)."""

import numpy as np
import pytest

from povmap_qgis.core.chips.chip_store import ChipStore
from povmap_qgis.core.chips.chip_store_writer import ChipStoreWriter
from povmap_qgis.core.model import learning_data

SIZE = 6


def dihedral_reference(cell, transform):
    """The eight symmetries of a square, spelled out with numpy's flips and rotations."""
    rotated = np.rot90(cell, k=transform % 4, axes=(0, 1))
    return np.fliplr(rotated) if transform >= 4 else rotated


def test_every_input_of_a_cell_gets_the_same_flip_or_rotation():
    rng = np.random.default_rng(0)
    daytime = rng.normal(size=(8, SIZE, SIZE, 3)).astype("float32")
    # a second input that is a function of the first: it stays so only if both move alike
    lights = daytime[..., :1] * 2.0 + 1.0
    transforms = np.arange(8)
    out = learning_data.dihedral({"daytime": daytime, "nightlights": lights}, transforms)
    np.testing.assert_array_equal(out["nightlights"], out["daytime"][..., :1] * 2.0 + 1.0)
    for index, transform in enumerate(transforms):
        np.testing.assert_array_equal(
            out["daytime"][index], dihedral_reference(daytime[index], transform)
        )
    # the eight transforms of an asymmetric chip are eight different chips
    single = {"daytime": np.repeat(daytime[:1], 8, axis=0)}
    images = learning_data.dihedral(single, transforms)["daytime"]
    assert len({image.tobytes() for image in images}) == 8
    np.testing.assert_array_equal(images[0], daytime[0])


def test_normalise_scales_per_band_and_turns_nodata_into_the_mean():
    values = np.array([[[[1.0, 10.0], [np.nan, 30.0]]]], dtype="float16")  # [1, 1, 2, 2 bands]
    statistics = {"x": {"mean": [1.0, 20.0], "std": [2.0, 10.0]}}
    out = learning_data.normalise({"x": values}, statistics)["x"]
    assert out.dtype == np.float32
    expected = np.array([[[[0.0, -1.0], [0.0, 1.0]]]], dtype="float32")
    np.testing.assert_allclose(out, expected)
    assert np.isfinite(out).all()


def small_store(tmp_path, values):
    cell_ids = np.arange(len(values), dtype="int64") + 500_000_000_500_000_000
    inputs = [
        {
            "name": "nightlights",
            "source": "/data/viirs.tif",
            "bands": [1, 2],
            "dtype": "float16",
            "resampling": "bilinear",
        }
    ]
    settings = {"grid": "/data/grid.gpkg", "resolution": 10.0, "crs": "EPSG:32642"}
    writer = ChipStoreWriter(str(tmp_path / "s.chips"), cell_ids, inputs, SIZE, settings).open()
    writer.write(
        np.arange(len(values)),
        {"nightlights": values.astype("float16")},
        np.zeros((len(values), 1), dtype="float32"),
    )
    return ChipStore(writer.finish())


def test_normalisation_statistics_use_only_the_given_rows_and_skip_nodata(tmp_path):
    rng = np.random.default_rng(1)
    values = rng.gamma(2.0, 3.0, size=(40, SIZE, SIZE, 2))
    values[rng.random(values.shape) < 0.1] = np.nan
    values[30:] += 100.0  # rows that are not training rows must not move the statistics
    store = small_store(tmp_path, values)
    rows = np.arange(0, 30, 2)
    statistics = learning_data.normalisation_from(store, rows, batch_rows=4)["nightlights"]
    stored = values.astype("float16").astype("float64")[rows].reshape(-1, 2)
    np.testing.assert_allclose(statistics["mean"], np.nanmean(stored, axis=0), rtol=1e-9)
    np.testing.assert_allclose(statistics["std"], np.nanstd(stored, axis=0), rtol=1e-6)


def test_a_constant_band_gets_unit_std_instead_of_dividing_by_zero(tmp_path):
    values = np.ones((5, SIZE, SIZE, 2))
    values[:, :, :, 1] = np.arange(5)[:, None, None]
    store = small_store(tmp_path, values)
    statistics = learning_data.normalisation_from(store, np.arange(5))["nightlights"]
    assert statistics["std"][0] == 1.0 and statistics["mean"][0] == 1.0
    assert statistics["std"][1] == pytest.approx(np.std(np.arange(5)))
