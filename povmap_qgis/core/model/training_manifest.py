"""What ``train`` writes into its model package besides the members' weights.

The manifest (inputs, normalisation, label, training record, holdout metrics, judges,
software), the training data's fingerprint, the list of the cells the members learned
from, and the private folder the package is written into before it is published.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..atomic import partial_path
from ..errors import PovmapInputError
from ..labels import label_sentence, poor_below_from_metadata
from . import model_package, models
from .member_fitting import MEMBER_FIT_KEYS
from .training_split import grid_id_field

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from ..chips.chip_store import ChipStore
    from .training import TrainOptions


def member_records(
    members: Sequence[str], fitted: dict[str, Any], preset: dict[str, Any]
) -> list[dict[str, Any]]:
    """The manifest's ``members``: each member's architecture, weights file and training."""
    return [
        {
            "name": architecture,
            "architecture": architecture,
            "architecture_version": models.ARCHITECTURE_VERSIONS[architecture],
            "weights": fitted[architecture]["weights"],
            "dense_units": preset["dense_units"],
            "dropout": preset["dropout"],
        }
        | {key: fitted[architecture][key] for key in MEMBER_FIT_KEYS}
        for architecture in members
    ]


def package_manifest(
    options: TrainOptions,
    store: ChipStore,
    training_cells: tuple[pd.DataFrame, dict[str, np.ndarray], np.ndarray],
    learned_from: tuple[list[dict[str, Any]], dict[str, Any]],
    member_records: list[dict[str, Any]],
    preset: dict[str, Any],
    judged: dict[str, Any],
    environment: dict[str, Any],
    seconds: float,
) -> dict[str, Any]:
    """The model package's manifest. ``training_cells``: (cells, split, balanced training rows);
    ``learned_from``: (inputs, normalisation); ``judged``: from ``training._judge``."""
    from ..geopackage import read_layer_metadata
    from ..version import plugin_version

    inputs, normalisation = learned_from
    grid_metadata = read_layer_metadata(options.grid_path, options.grid_layer)
    cutoff = grid_metadata.get("cutoff")
    poor_below = poor_below_from_metadata(grid_metadata.get("poor_below"))
    manifest = {
        "format": model_package.FORMAT,
        "format_version": model_package.FORMAT_VERSION,
        "preset": options.preset,
        "members": member_records,
        "inputs": inputs,
        "chip_size": int(store.manifest["chip_size"]),
        "resolution": float(store.manifest["settings"]["resolution"]),
        "cell_size": float(store.manifest["settings"]["cell_size"]),
        "crs": store.manifest["settings"]["crs"],
        "normalisation": normalisation,
        "threshold": float(judged["threshold"]),
        "threshold_rule": judged["threshold_rule"],
        "vote": (
            "votes: members with probability >= threshold (information); "
            "pred: calibrated prob_mean >= decision_threshold"
        ),
        "label": {
            "cutoff": None if cutoff is None else float(cutoff),
            "poor_below": poor_below,
            "meaning": label_sentence(cutoff, poor_below),
        },
        "training": _training_record(options, training_cells, preset, seconds),
        "metrics": {"holdout": judged["holdout"]},
        "software": {"povmap_qgis": plugin_version(), **environment},
    }
    manifest["training"]["fingerprint"] = training_fingerprint(
        options, training_cells[0], [member["name"] for member in member_records]
    )
    if options.demonstration_notice:
        manifest["notice"] = options.demonstration_notice
    manifest["calibration"] = judged["calibration"]
    manifest["interval"] = judged["interval"]
    manifest["stacking"] = judged["stacking"]
    manifest["baseline"] = judged["baseline"]
    manifest["decision_threshold"] = float(judged["decision_threshold"])
    manifest["decision_rule"] = judged["decision_rule"]
    return manifest


def _training_record(
    options: TrainOptions,
    training_cells: tuple[pd.DataFrame, dict[str, np.ndarray], np.ndarray],
    preset: dict[str, Any],
    seconds: float,
) -> dict[str, Any]:
    """The manifest's ``training``: inputs, split, balance, cells per part and settings."""
    cells, split, train_rows = training_cells
    labels = cells["label"].to_numpy()
    return {
        "chips": os.path.abspath(options.chips_path),
        "grid": os.path.abspath(options.grid_path),
        "split": options.split,
        "test_districts": options.test_districts,
        "balance": options.balance,
        "seed": options.seed,
        "pretrained": options.pretrained or "none",
        "cells": {part: int(len(rows)) for part, rows in split.items()}
        | {"train_after_balancing": int(len(train_rows))},
        "poor": {part: int(labels[rows].sum()) for part, rows in split.items()},
        "districts_seen": _districts_seen(cells, split),
        "learning_rate": preset["learning_rate"],
        "batch_size": preset["batch_size"],
        "max_epochs": preset["epochs"],
        "patience": preset["patience"],
        "seconds": round(seconds, 1),
    }


def training_fingerprint(options: TrainOptions, cells: pd.DataFrame, members: Sequence[str]) -> str:
    """12 hex digits naming what a model was trained on: the labelled cells (ids and labels,
    whatever file holds them) and the settings that make it another model (preset, members,
    split, held-out districts). Retraining on the same data with another seed keeps it; a
    different survey, grid or preset changes it. The run history's default model name ends
    with it, so two projects' packages called ``model.povmodel`` are not versions of one model."""
    import hashlib

    import numpy as np

    order = np.argsort(cells["cell_id"].to_numpy())
    record = {
        "cells": cells["cell_id"].to_numpy()[order].tolist(),
        "labels": cells["label"].to_numpy()[order].tolist(),
        "preset": options.preset,
        "members": list(members),
        "split": options.split,
        "test_districts": sorted(options.test_districts or []),
    }
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def write_package_training_cells(
    folder: str,
    store: ChipStore,
    options: TrainOptions,
    cells: pd.DataFrame,
    split: dict[str, np.ndarray],
) -> dict[str, Any]:
    """The package's list of the cells the members learned from (training + validation): an
    evaluation on them is not a test on new cells (model_package.read_training_cells)."""
    import numpy as np

    rows = np.concatenate([split["train"], split["validation"]])
    settings = store.manifest["settings"]
    return model_package.write_training_cells(
        folder,
        cells["cell_id"].to_numpy()[rows],
        grid_id_field(store, options),
        settings["crs"],
        float(settings["cell_size"]),
    )


def _districts_seen(cells: pd.DataFrame, split: dict[str, np.ndarray]) -> dict[str, int]:
    """{district: labelled cells the members learned from (training + validation)}; the test cells are not seen."""
    import numpy as np

    rows = np.concatenate([split["train"], split["validation"]])
    districts = cells["district"].iloc[rows] if "district" in cells else None
    if districts is None or districts.isna().all():
        return {}
    counts = districts.dropna().astype(str).value_counts()
    return {str(name): int(counts[name]) for name in sorted(counts.index)}


def partial_package_folder(path: str) -> str:
    folder, name = os.path.split(os.path.abspath(path.rstrip("/")))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise PovmapInputError(
            "OUTPUT",
            f"the folder '{folder}' does not exist or is not writable; choose another output path.",
        )
    partial = partial_path(os.path.join(folder, name))  # owned by this run: see atomic.run_partials
    os.makedirs(partial)
    return partial
