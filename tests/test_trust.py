"""Issue 10, "can a programme trust this map?": value transforms of radiance-like inputs, the transparent
baseline, calibrated probabilities, the plain verdict — against independent computations."""

import numpy as np
import pytest


class FakeStore:
    """The two ChipStore methods the transform rule and the baseline read."""

    def __init__(self, chips):
        self.chips_by_input = chips
        self.input_names = list(chips)

    def chips(self, name):
        return self.chips_by_input[name]

    def batch_of(self, name, rows):
        return self.chips_by_input[name][np.asarray(rows)]

    def batch(self, rows, names=None):
        return {name: self.batch_of(name, rows) for name in (names or self.input_names)}


def heavy_tailed_store(cells=300, seed=0):
    rng = np.random.default_rng(seed)
    night = rng.lognormal(-1.0, 1.6, (cells, 10, 10, 1)).astype("float32")  # nW: dim, a few towns
    day = rng.normal(1000, 200, (cells, 10, 10, 3)).clip(1).astype("float32")  # reflectance
    night[0, 0, 0, 0] = np.nan  # nodata is ignored
    return FakeStore({"daytime": day, "nightlights": night})


def test_radiance_like_inputs_get_log1p_by_the_documented_rule_and_others_do_not():
    from povmap_qgis.core.input_transforms import RADIANCE_RATIO, choose_transforms

    store = heavy_tailed_store()
    chosen = choose_transforms(store, np.arange(300))
    assert chosen["daytime"] == {"transform": "none"}
    night = store.chips_by_input["nightlights"][:, ::5, ::5, 0].ravel()
    night = night[~np.isnan(night)]
    assert np.percentile(night, 99) > RADIANCE_RATIO * np.median(night)  # the rule holds here
    assert chosen["nightlights"]["transform"] == "log1p"
    assert chosen["nightlights"]["scale"] == pytest.approx([np.median(night)])
    # a negative value makes an input not radiance-like, whatever its spread
    store.chips_by_input["nightlights"][5, 0, 0, 0] = -1
    assert choose_transforms(store, np.arange(300))["nightlights"] == {"transform": "none"}


def test_one_transform_is_applied_by_normalisation_and_normalise_and_old_packages_read_unchanged():
    from povmap_qgis.core import learning_data

    store = heavy_tailed_store()
    normalisation = learning_data.training_normalisation(store, np.arange(200))
    night = normalisation["nightlights"]
    assert night["transform"] == "log1p" and normalisation["daytime"]["transform"] == "none"
    raw = store.chips_by_input["nightlights"][:200].astype("float64")
    transformed = np.log1p(raw / night["scale"][0])
    assert night["mean"][0] == pytest.approx(np.nanmean(transformed), rel=1e-6)
    assert night["std"][0] == pytest.approx(np.nanstd(transformed), rel=1e-5)
    normalised = learning_data.normalise(store.batch(np.arange(200)), normalisation)["nightlights"]
    expected = np.nan_to_num((transformed - night["mean"][0]) / night["std"][0])
    assert np.allclose(normalised, expected, atol=1e-5)
    # the log spreads the dim end: the dim half of the cells spans more of the normalised range
    dim = raw < np.nanmedian(raw)
    logged_share = np.ptp(normalised[dim]) / np.ptp(normalised[~np.isnan(raw)])
    linear = raw[~np.isnan(raw)]
    linear_share = np.ptp(raw[dim]) / np.ptp(linear)
    assert logged_share > 0.1 and logged_share > 20 * linear_share
    # a package from before the transform (no "transform" key) normalises linearly, as before
    old = {name: {"mean": spec["mean"], "std": spec["std"]} for name, spec in normalisation.items()}
    plain = learning_data.normalise(store.batch(np.arange(3)), old)["nightlights"]
    assert np.allclose(plain, np.nan_to_num((raw[:3] - night["mean"][0]) / night["std"][0]))
