"""The statistics member stats_gbm (issue 10 part 1): gradient boosting on per-chip statistics,
stored as plain numbers and predicted with numpy exactly as scikit-learn does."""

import json
import os

import numpy as np
import pytest


def test_numpy_trees_equal_scikit_learns_predict_proba_on_random_data():
    from sklearn.ensemble import HistGradientBoostingClassifier

    from povmap_qgis.core.model import statistics_member

    rng = np.random.default_rng(0)
    features = rng.normal(size=(600, 8))
    features[:, 3] = np.round(features[:, 3], 1)  # ties on a threshold
    labels = features[:, 0] + 0.5 * features[:, 1] ** 2 + rng.normal(0, 0.7, 600) > 0.4
    model = HistGradientBoostingClassifier(random_state=1, **statistics_member.PARAMETERS)
    model.fit(features, labels.astype(int))
    stored = json.loads(json.dumps(statistics_member.export(model)))  # through plain JSON
    assert len(stored["trees"]) == model.n_iter_
    fresh = rng.normal(size=(2000, 8)) * 1.5  # beyond the training range too
    fresh[:5, 2] = np.nan  # missing values follow the stored direction
    expected = model.predict_proba(fresh)[:, 1]
    assert np.allclose(statistics_member.probabilities(stored, fresh), expected, rtol=0, atol=1e-12)
    assert np.allclose(
        statistics_member.raw_scores(stored, fresh), model.decision_function(fresh), atol=1e-12
    )
    # the first k trees: what staged_predict_proba gives after k iterations
    first = statistics_member.export(model, 7)
    staged = list(model.staged_predict_proba(fresh))[6][:, 1]
    assert np.allclose(statistics_member.probabilities(first, fresh), staged, atol=1e-12)


def test_chip_statistics_are_the_baselines_four_per_band():
    from povmap_qgis.core.model.statistics_member import chip_statistics, feature_definition

    rng = np.random.default_rng(2)
    chips = {"daytime": rng.normal(size=(5, 6, 6, 3)), "nightlights": rng.normal(size=(5, 6, 6, 1))}
    features = chip_statistics(chips, ["daytime", "nightlights"])
    definition = feature_definition(
        [{"name": "daytime", "shape": [6, 6, 3]}, {"name": "nightlights", "shape": [6, 6, 1]}]
    )
    assert features.shape == (5, len(definition)) == (5, 16)
    night = chips["nightlights"][..., 0]
    assert np.allclose(features[:, 12], night.mean(axis=(1, 2)))
    assert np.allclose(features[:, 13], night.max(axis=(1, 2)))
    assert np.allclose(features[:, 14], night.std(axis=(1, 2)))
    assert np.allclose(features[:, 15], night[:, 3, 3])
    assert definition[5] == {"input": "daytime", "band": 2, "statistic": "max"}


@pytest.fixture(scope="module")
def with_statistics(tiny_chips, tmp_path_factory):
    from povmap_qgis import runner

    folder = tmp_path_factory.mktemp("stats")
    package = str(folder / "stats.povmodel")
    runner.run_worker(
        "train",
        {
            "chips_path": tiny_chips["night"],
            "grid_path": tiny_chips["grid"],
            "output_path": package,
            "members": ["compact_cnn", "stats_gbm"],
            "epochs": 2,
            "seed": 5,
            "stacking": "off",  # prob_raw: the members' mean (stacking: tests/test_stacking.py)
        },
    )
    predictions = str(folder / "predictions.gpkg")
    runner.run_worker(
        "predict",
        {
            "model_path": package,
            "chips_path": tiny_chips["night"],
            "grid_path": tiny_chips["grid"],
            "output_path": predictions,
        },
    )
    return {"package": package, "predictions": predictions}


@pytest.mark.slow  # trains real models
def test_stats_gbm_is_stored_as_numbers_hashed_and_predicts_like_a_member(
    with_statistics, tiny_chips
):
    from helpers import read_grid

    from povmap_qgis.core.chips.chip_store import ChipStore
    from povmap_qgis.core.model import learning_data, model_package, statistics_member

    package = with_statistics["package"]
    with open(os.path.join(package, "manifest.json"), encoding="utf-8") as handle:
        manifest = json.load(handle)
    member = next(m for m in manifest["members"] if m["name"] == "stats_gbm")
    assert member["weights"] == "stats_gbm.trees.json" and len(member["sha256"]) == 64
    assert not [name for name in os.listdir(package) if name.endswith((".pkl", ".pickle"))]
    with open(os.path.join(package, member["weights"]), encoding="utf-8") as handle:
        stored = json.load(handle)
    assert stored["kind"] == "hist_gradient_boosting" and 1 <= stored["trees_kept"] <= 200
    assert len(stored["trees"]) == stored["trees_kept"] == member["best_epoch"]
    assert [f["statistic"] for f in stored["features"]] == ["mean", "max", "std", "centre"]
    # the layer's prob_stats_gbm: the stored trees on the normalised chips' statistics
    frame = read_grid(with_statistics["predictions"])
    store = ChipStore(tiny_chips["night"])
    rows = learning_data.store_rows_for(store, frame["cell_id"].astype("int64").to_numpy())
    chips = learning_data.normalise(store.batch(rows, ["nightlights"]), manifest["normalisation"])
    expected = statistics_member.probabilities(
        stored, statistics_member.chip_statistics(chips, ["nightlights"])
    )
    assert np.allclose(frame["prob_stats_gbm"], expected, atol=2e-5)
    assert np.allclose(frame["prob_raw"], (frame["prob_compact_cnn"] + expected) / 2, atol=1e-4)
    assert manifest["stacking"] == {"method": "none", "note": "STACKING=off"}
    # altered trees are refused like altered weights
    manifest_read = model_package.read_package(package)
    assert [m["name"] for m in manifest_read["members"]] == ["compact_cnn", "stats_gbm"]


@pytest.mark.slow  # trains real models
def test_altered_trees_are_refused(with_statistics, tmp_path):
    import shutil

    from povmap_qgis.core.errors import PovmapInputError
    from povmap_qgis.core.model import model_package

    copy = str(tmp_path / "altered.povmodel")
    shutil.copytree(with_statistics["package"], copy)
    path = os.path.join(copy, "stats_gbm.trees.json")
    with open(path, encoding="utf-8") as handle:
        stored = json.load(handle)
    stored["trees"][0]["value"][-1] += 1.0
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(stored, handle)
    with pytest.raises(PovmapInputError, match="stats_gbm"):
        model_package.read_package(copy)


@pytest.mark.slow  # trains real models
def test_predicting_from_the_rasters_equals_predicting_from_the_store(
    with_statistics, tiny_sample, tiny_chips, tmp_path
):
    """SOURCE=rasters, local engine, through the worker: every field as from the store,
    with a statistics member and the baseline. (One-band chips have the same layout either
    way: the chips' C order is pinned in test_chips_core on three-band daytime chips.)"""
    from helpers import read_grid

    from povmap_qgis import runner

    output = str(tmp_path / "from_rasters.gpkg")
    runner.run_worker(
        "predict",
        {
            "model_path": with_statistics["package"],
            "chips_path": None,
            "source": "rasters",
            "inputs": [
                {
                    "name": "nightlights",
                    "path": os.path.join(tiny_sample, "synthetic_viirs_15arcsec.tif"),
                    "bands": [1],
                    "parameter": "NIGHTLIGHTS",
                }
            ],
            "grid_path": tiny_chips["grid"],
            "output_path": output,
        },
    )
    expected, found = read_grid(with_statistics["predictions"]), read_grid(output)
    assert os.listdir(tmp_path) == ["from_rasters.gpkg"]
    assert list(found.columns) == list(expected.columns)
    assert {"prob_stats_gbm", "prob_compact_cnn", "prob_baseline"} <= set(found.columns)
    for name in expected.columns:
        if name != "geometry":
            assert found[name].tolist() == expected[name].tolist(), name
