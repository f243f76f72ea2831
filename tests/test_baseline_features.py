"""The baseline, out_of_range and drift of a stored package read each chip statistic in the
package's own feature order (the manifest's normalisation comes back in alphabetical order)."""

import numpy as np

from povmap_qgis.core.chips import chip_features
from povmap_qgis.core.chips.chip_store import ChipStore
from povmap_qgis.core.chips.input_transforms import apply_transform
from povmap_qgis.core.history import drift
from povmap_qgis.core.model import baseline, model_package
from povmap_qgis.paths import bundled_model_path


def test_a_stored_packages_features_follow_its_feature_list(tiny_chips):
    manifest = model_package.read_package(bundled_model_path())
    simple = manifest["baseline"]
    order = chip_features.feature_inputs(simple)
    # The trap: read back from the file, the normalisation is in another order than fitted.
    assert order == ["daytime", "nightlights", "accessibility"]
    assert list(manifest["normalisation"]) != order
    store = ChipStore(tiny_chips["chips"])
    rows = np.arange(0, len(store), 3)
    features = chip_features.chip_features(store, rows, manifest["normalisation"], order)
    assert features.shape == (len(rows), len(simple["features"]))
    for column, feature in enumerate(simple["features"]):
        name, band = feature["input"], feature["band"] - 1
        chips = apply_transform(store.batch_of(name, rows), manifest["normalisation"][name])
        values = np.asarray(chips, dtype="float64")[..., band]
        expected = {
            "mean": values.mean(axis=(1, 2)),
            "max": values.max(axis=(1, 2)),
            "std": values.std(axis=(1, 2)),
            "centre": values[:, values.shape[1] // 2, values.shape[2] // 2],
        }[feature["statistic"]]
        np.testing.assert_allclose(features[:, column], expected, rtol=1e-6, err_msg=str(feature))


def test_drift_of_the_tiny_sample_is_measured_per_input_in_that_order(tiny_chips):
    """Daytime and night lights of the tiny sample look like the demo's (PSI near the 0.25
    line, not the 8.3 that misordered statistics gave); its travel times do not (the tiny
    area is another landscape)."""
    scores, _ = drift.drift_scores(bundled_model_path(), tiny_chips["chips"])
    assert scores["daytime"] < 0.5 and scores["nightlights"] < 0.5, scores
    assert all(score < 5 for score in scores.values()), scores


def test_predicts_baseline_and_range_flags_use_the_packages_feature_order(tiny_chips):
    """What predict writes (prob_baseline, out_of_range, povmap_drift), without the members."""
    import json

    from povmap_qgis.core.model.prediction import trust_fields
    from povmap_qgis.core.progress import Reporter

    manifest = model_package.read_package(bundled_model_path())
    simple = manifest["baseline"]
    store = ChipStore(tiny_chips["chips"])
    rows = np.arange(len(store))
    members = {  # ensemble_outputs' shape: the mean, the spread and each member's probabilities
        "prob_mean": np.full(len(rows), 0.4),
        "disagreement": np.zeros(len(rows)),
        "members": [np.full(len(rows), 0.4) for _ in manifest["members"]],
    }
    by_hand = chip_features.chip_features(
        store, rows, manifest["normalisation"], chip_features.feature_inputs(simple)
    )
    # what predict computes from a store, and from the rasters (the chips of a batch)
    from_store = chip_features.package_features(store, rows, manifest)
    chips = {name: store.batch_of(name, rows) for name in manifest["normalisation"]}
    from_rasters = chip_features.features_of_chips(
        chips, manifest["normalisation"], chip_features.feature_inputs(simple)
    )
    np.testing.assert_array_equal(from_store, by_hand)
    np.testing.assert_array_equal(from_rasters, by_hand)
    fields, metadata = trust_fields(manifest, from_store, members, Reporter())
    np.testing.assert_allclose(
        fields["prob_baseline"], baseline.calibrated_probabilities(simple, by_hand), atol=1e-5
    )
    low, high = (
        np.asarray(simple["training_range"]["low"]),
        np.asarray(simple["training_range"]["high"]),
    )
    outside = ((by_hand < low) | (by_hand > high)).any(axis=1)
    assert (fields["out_of_range"] == outside).all() and not outside.all()
    assert all(score < 5 for score in json.loads(metadata["povmap_drift"]).values())


def test_drift_warns_once_naming_every_shifted_input_and_says_when_few_cells_measured_it():
    assert drift.warnings({"daytime": 0.1, "nightlights": 0.2}) == []
    (one,) = drift.warnings({"daytime": 0.1, "nightlights": 0.41}, cells=500)
    assert one.startswith("Input 'nightlights': the chips of this area differ") and "0.41" in one
    assert "out_of_range = 1" in one and "noisy" not in one
    (three,) = drift.warnings({"accessibility": 2.18, "daytime": 1.94, "nightlights": 1.57}, 56)
    assert three.startswith(
        "Inputs 'accessibility' (PSI 2.18), 'daytime' (PSI 1.94) and 'nightlights' (PSI 1.57)"
    )
    assert "only 56 cells" in three and "noisy" in three


def test_band_statistics_leave_out_nodata_pixels_like_pandas():
    """Per chip and band, against pandas' own NaN-skipping statistics, written cell by cell:
    chips with a few nodata pixels, an all-nodata band, float16 as stored, three bands."""
    import pandas as pd

    rng = np.random.default_rng(4)
    chips = (rng.random((6, 9, 7, 3)) * 40).astype("float16")
    chips[1, 2:5, 3, 0] = np.nan  # some nodata in one band
    chips[2, :, :, 2] = np.nan  # a band with no valid pixel
    chips[4, 0, :, :] = np.nan  # a row of nodata in every band
    statistics = chip_features.band_statistics(chips)
    assert statistics.shape == (6, 3 * len(chip_features.STATISTICS))
    for cell in range(6):
        for band in range(3):
            pixels = pd.Series(chips[cell, :, :, band].astype("float64").ravel())
            expected = [pixels.mean(), pixels.max(), pixels.std(ddof=0), pixels[4 * 7 + 3]]
            got = statistics[cell, band * 4 : band * 4 + 4]
            np.testing.assert_allclose(got, expected, rtol=1e-12, err_msg=f"{cell}, {band}")
