"""Ensemble member architectures, rebuilt from code when a model package is loaded.

Every member has one branch per chip-store input (global average pooling and a
dense layer at the end of each), branches concatenated, dropout and a sigmoid
— the paper's design. Two presets:

``paper``: ResNet50, ResNet50V2 and ResNet101 backbones (Keras applications)
in every branch, Adam 5e-5, batch 16, up to 30 epochs, early stopping with
patience 10. GPU work: ~4 samples/s on 2 CPU cores.

``compact``: three small CNNs that train on 2 CPU cores in minutes, and the
statistics member ``stats_gbm`` (gradient boosting on per-chip statistics, seconds);
their probabilities and the transparent baseline's are combined by stacking
(core/model/stacking.py), so a member that adds nothing gets no weight. The
daytime chip (100 × 100 px at 10 m) goes through a strided convolution that
reads single 10 m pixels (one roof is one pixel) and three convolution blocks
at 50, 25 and 12 px; every other input is resampled from ~500 m–1 km
sources, so its chip is nearly constant: it is pooled to 5 × 5 and read by one
small convolution. The members differ in width and structure (plain, wide,
residual) so that their errors differ, which is what an ensemble needs.
Loading never executes stored code: the architecture is named in the
manifest and rebuilt here; only weights are read from the package.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

PAPER_MEMBERS = ("resnet50", "resnet50v2", "resnet101")
COMPACT_MEMBERS = ("compact_cnn", "compact_wide", "compact_residual")
# gradient boosting on per-chip statistics, not a network: core/model/statistics_member.py
STATISTICS_MEMBERS = ("stats_gbm",)
ARCHITECTURES = PAPER_MEMBERS + COMPACT_MEMBERS + STATISTICS_MEMBERS
# The version of each architecture's code, recorded per member in a model package: what its
# weights need to compute what they computed when trained. Raise an architecture's number
# with any edit that changes what the same weights compute (a layer, an activation, a
# normalisation, their order) and record its golden outputs (tests/keras_checks.py
# record_architectures); packages of another version are then refused (model_package.py).
ARCHITECTURE_VERSIONS = {
    "resnet50": 1,
    "resnet50v2": 1,
    "resnet101": 1,
    "compact_cnn": 1,
    "compact_wide": 1,
    "compact_residual": 1,
    "stats_gbm": 1,
}
# what packages from before versions were recorded were built with
FIRST_ARCHITECTURE_VERSION = 1

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "members": PAPER_MEMBERS,
        "learning_rate": 5e-5,
        "batch_size": 16,
        "epochs": 30,
        "patience": 10,
        "dense_units": 256,
        "dropout": 0.5,
    },
    "compact": {
        "members": COMPACT_MEMBERS + STATISTICS_MEMBERS,
        "learning_rate": 1e-3,
        "batch_size": 32,
        "epochs": 30,
        "patience": 8,
        "dense_units": 32,
        "dropout": 0.3,
    },
}

_COMPACT_FILTERS = {
    "compact_cnn": (16, 32, 64),
    "compact_wide": (32, 64, 96),
    "compact_residual": (16, 32, 64),
}


def preset_for(architecture: str) -> str:
    return "paper" if architecture in PAPER_MEMBERS else "compact"


def build_member(
    architecture: str,
    inputs: Sequence[dict[str, Any]],
    dense_units: int | None = None,
    dropout: float | None = None,
    backbone_weights: str | None = None,
) -> Any:
    """A compiled-ready Keras model for one member.

    ``inputs``: [{"name", "shape": [H, W, bands]}] in chip-store order.
    ``backbone_weights``: path of an ImageNet ``*_notop.h5`` file for the
    paper backbones (3-band daytime branch only), or None for random init.
    """
    import keras

    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"unknown architecture '{architecture}' (known: {', '.join(ARCHITECTURES)})"
        )
    preset = PRESETS[preset_for(architecture)]
    dense_units = dense_units or preset["dense_units"]
    dropout = preset["dropout"] if dropout is None else dropout
    tensors, features = [], []
    for spec in inputs:
        tensor = keras.Input(shape=tuple(spec["shape"]), name=spec["name"])
        tensors.append(tensor)
        if architecture in PAPER_MEMBERS:
            branch = _resnet_branch(
                architecture, tensor, spec, backbone_weights if spec["shape"][-1] == 3 else None
            )
        elif spec["name"] == "daytime":
            branch = _compact_image_branch(architecture, tensor, spec["name"])
        else:
            branch = _compact_coarse_branch(tensor, spec["name"])
        features.append(
            keras.layers.Dense(dense_units, activation="relu", name=f"{spec['name']}_dense")(branch)
        )
    merged = (
        features[0] if len(features) == 1 else keras.layers.Concatenate(name="branches")(features)
    )
    merged = keras.layers.Dropout(dropout, name="dropout")(merged)
    # float32 output even under mixed precision: a sigmoid in float16 saturates early.
    output = keras.layers.Dense(1, activation="sigmoid", name="poor_probability", dtype="float32")(
        merged
    )
    return keras.Model(tensors, output, name=architecture)


def _resnet_branch(
    architecture: str, tensor: Any, spec: dict[str, Any], weights: str | None
) -> Any:
    import keras

    applications = {
        "resnet50": keras.applications.ResNet50,
        "resnet50v2": keras.applications.ResNet50V2,
        "resnet101": keras.applications.ResNet101,
    }
    height, width, bands = spec["shape"]
    backbone = applications[architecture](
        include_top=False,
        weights=weights,
        input_shape=(height, width, bands),
        pooling=None,
        name=f"{spec['name']}_{architecture}",
    )
    return keras.layers.GlobalAveragePooling2D(name=f"{spec['name']}_pool")(backbone(tensor))


def _compact_image_branch(architecture: str, tensor: Any, name: str) -> Any:
    import keras
    from keras import layers

    # A strided convolution reads the 10 m pixels (a single roof is one pixel) while halving the size.
    x = layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name=f"{name}_stem")(tensor)
    x = layers.Activation("relu", name=f"{name}_stem_relu")(
        layers.BatchNormalization(name=f"{name}_stem_bn")(x)
    )
    for block, filters in enumerate(_COMPACT_FILTERS[architecture]):
        kernel = 5 if architecture == "compact_wide" and block == 0 else 3
        shortcut = x
        x = layers.Conv2D(
            filters, kernel, padding="same", use_bias=False, name=f"{name}_conv{block}"
        )(x)
        x = layers.BatchNormalization(name=f"{name}_bn{block}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{block}")(x)
        if architecture == "compact_residual":
            x = layers.Conv2D(
                filters, 3, padding="same", use_bias=False, name=f"{name}_conv{block}b"
            )(x)
            x = layers.BatchNormalization(name=f"{name}_bn{block}b")(x)
            shortcut = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_project{block}")(
                shortcut
            )
            x = layers.Activation("relu", name=f"{name}_relu{block}b")(
                layers.Add(name=f"{name}_add{block}")([x, shortcut])
            )
        x = layers.MaxPooling2D(2, name=f"{name}_pool{block}")(x)
    return keras.layers.GlobalAveragePooling2D(name=f"{name}_gap")(x)


def _compact_coarse_branch(tensor: Any, name: str) -> Any:
    from keras import layers

    size = int(tensor.shape[1])
    x = layers.AveragePooling2D(max(1, size // 5), name=f"{name}_to_5px")(tensor)
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name=f"{name}_conv")(x)
    return layers.GlobalAveragePooling2D(name=f"{name}_gap")(x)
