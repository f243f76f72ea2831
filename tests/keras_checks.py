"""Keras checks that must run outside the QGIS test process (TensorFlow's HDF5 next to QGIS's).

Run by tests/test_models.py with the worker Python: ``python keras_checks.py NAME TMP_DIR``;
prints ``NAME: ok`` when every assertion held.
"""

import os
import sys

import numpy as np


def paper_members_build_run_and_take_a_training_step(folder):
    """The paper architecture is always exercised: ResNet50, ResNet50V2, ResNet101 at a small input size."""
    import keras

    from povmap_qgis.core.model.models import PAPER_MEMBERS, build_member

    inputs = [
        {"name": "daytime", "shape": [32, 32, 3]},
        {"name": "nightlights", "shape": [32, 32, 1]},
    ]
    rng = np.random.default_rng(0)
    batch = {
        "daytime": rng.normal(size=(4, 32, 32, 3)).astype("float32"),
        "nightlights": rng.normal(size=(4, 32, 32, 1)).astype("float32"),
    }
    labels = np.array([0, 1, 0, 1], dtype="float32")
    for architecture in PAPER_MEMBERS:
        model = build_member(architecture, inputs)
        assert {layer.name for layer in model.layers} >= {
            f"daytime_{architecture}",
            f"nightlights_{architecture}",
            "poor_probability",
        }
        before = model.get_layer("poor_probability").get_weights()[0].copy()
        # eagerly: tracing a 100-layer ResNet twice per member costs minutes on 2 cores and tests nothing more
        model.compile(
            optimizer=keras.optimizers.Adam(5e-5), loss="binary_crossentropy", run_eagerly=True
        )
        probabilities = model.predict_on_batch(batch)
        assert probabilities.shape == (4, 1) and np.all((probabilities >= 0) & (probabilities <= 1))
        loss = model.train_on_batch(batch, labels)
        assert np.isfinite(loss)
        assert not np.allclose(before, model.get_layer("poor_probability").get_weights()[0])
        keras.backend.clear_session()


def pretrained_backbone_weights_come_from_a_local_file(folder):
    """A Keras-format *_notop.h5 file (made here) is what the ResNet50 branch starts from."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    from povmap_qgis.core.model.models import build_member
    from povmap_qgis.core.model.pretrained import IMAGENET_FILES, backbone_weights

    reference = keras.applications.ResNet50(
        include_top=False, weights=None, input_shape=(32, 32, 3)
    )
    path = os.path.join(folder, IMAGENET_FILES["resnet50"][0])
    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, reference)
    found = backbone_weights(folder, ["resnet50"])
    assert found == {"resnet50": path}, found
    model = build_member(
        "resnet50", [{"name": "daytime", "shape": [32, 32, 3]}], backbone_weights=found["resnet50"]
    )
    backbone = model.get_layer("daytime_resnet50")
    loaded, expected = backbone.get_weights(), reference.get_weights()
    assert len(loaded) == len(expected)
    for values, wanted in zip(loaded, expected, strict=True):
        assert np.array_equal(values, wanted)


GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "architecture_golden.json")
GOLDEN_SEED = 20261206


def _architecture_fingerprints():
    """{"architecture@version": fingerprint} of every network architecture rebuilt from a seed.

    The fingerprint: each weight's shape, and on a fixed input the features the branches
    hand to the dropout layer (mean, std and the first 8 of cell 0) and the probabilities.
    An edit that changes what the same weights compute changes it.
    """
    import keras

    from povmap_qgis.core.model.models import (
        ARCHITECTURE_VERSIONS,
        COMPACT_MEMBERS,
        PAPER_MEMBERS,
        build_member,
    )

    rng = np.random.default_rng(0)
    compact_inputs = [
        {"name": "daytime", "shape": [40, 40, 3]},
        {"name": "nightlights", "shape": [40, 40, 1]},
    ]
    paper_inputs = [{"name": "daytime", "shape": [32, 32, 3]}]
    fingerprints = {}
    for architecture in COMPACT_MEMBERS + PAPER_MEMBERS:
        inputs = compact_inputs if architecture in COMPACT_MEMBERS else paper_inputs
        batch = {
            spec["name"]: rng.normal(size=(3, *spec["shape"])).astype("float32") for spec in inputs
        }
        keras.backend.clear_session()
        keras.utils.set_random_seed(GOLDEN_SEED)
        model = build_member(architecture, inputs)
        features = keras.Model(model.inputs, model.get_layer("dropout").input)
        merged = np.asarray(features(batch, training=False), dtype="float64")
        probabilities = np.asarray(model(batch, training=False), dtype="float64")
        fingerprints[f"{architecture}@{ARCHITECTURE_VERSIONS[architecture]}"] = {
            "weight_shapes": " ".join(
                "x".join(str(size) for size in weight.shape) for weight in model.weights
            ),
            "features_mean": float(merged.mean()),
            "features_std": float(merged.std()),
            "features_first": [float(value) for value in merged[0, :8]],
            "probabilities": [float(value) for value in probabilities[:, 0]],
        }
    return fingerprints


def architectures_are_what_their_versions_recorded(folder):
    """Every architecture rebuilt from a seed computes what its recorded version computed."""
    import json

    with open(GOLDEN, encoding="utf-8") as handle:
        recorded = json.load(handle)
    for key, fingerprint in _architecture_fingerprints().items():
        architecture, version = key.split("@")
        how = (
            f"if the change is meant, raise ARCHITECTURE_VERSIONS['{architecture}'] in "
            "povmap_qgis/core/model/models.py and run `python tests/keras_checks.py "
            "record_architectures -` (packages of the old version are then refused)"
        )
        assert key in recorded, (
            f"{architecture} version {version} has no recorded fingerprint: {how}"
        )
        expected = recorded[key]
        assert fingerprint["weight_shapes"] == expected["weight_shapes"], (
            f"{architecture} version {version}: other weight shapes; {how}"
        )
        for name in ("features_mean", "features_std", "features_first", "probabilities"):
            assert np.allclose(fingerprint[name], expected[name], rtol=1e-4, atol=1e-6), (
                f"{architecture} version {version}: {name} {fingerprint[name]} differ from the "
                f"recorded {expected[name]} for the same seeded weights; {how}"
            )


def record_architectures(folder):
    """Add the fingerprints of architecture versions not yet recorded (never rewrites one)."""
    import json

    recorded = {}
    if os.path.exists(GOLDEN):
        with open(GOLDEN, encoding="utf-8") as handle:
            recorded = json.load(handle)
    for key, fingerprint in _architecture_fingerprints().items():
        recorded.setdefault(key, fingerprint)
    with open(GOLDEN, "w", encoding="utf-8") as handle:
        json.dump(recorded, handle, indent=1, sort_keys=True)
        handle.write("\n")


if __name__ == "__main__":
    name, folder = sys.argv[1], sys.argv[2]
    globals()[name](folder)
    print(f"{name}: ok")
