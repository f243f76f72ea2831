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


if __name__ == "__main__":
    name, folder = sys.argv[1], sys.argv[2]
    globals()[name](folder)
    print(f"{name}: ok")
