"""The statistics member ``stats_gbm``: gradient boosting on per-chip statistics, stored as numbers.

An ensemble member that reads the same per-chip statistics as the transparent
baseline (``core.model.baseline``: mean, max, standard deviation and centre pixel of
each input band) instead of the chips' pixels. They are computed from the chips
the other members see (after the input's transform and normalisation; nodata
pixels at the band's training mean): a per-band linear rescaling that trees do
not notice. A scikit-learn ``HistGradientBoostingClassifier`` learns from the
training cells (balanced like the other members, so that its probability is on
their scale); the number of trees is chosen on the validation cells (lowest log
loss over the boosting iterations: the "best weights" of a network).

Stored safely: the fitted trees' arrays (``TreePredictor.nodes`` of scikit-learn
1.5: feature, threshold, where missing values go, children, leaf flag and value)
written as plain numbers in ``stats_gbm.trees.json`` with its sha256 in the
manifest — never a pickle. ``probabilities`` re-implements the prediction in
numpy (raw score = the model's baseline + the leaf value of each tree; logistic
link), so a package loads without scikit-learn's internals.

The object ``StatisticsMember`` answers the few calls the training and
prediction loops make of a Keras member (``predict_on_batch``, ``save_weights``,
``count_params``, ``inputs``), so it is selectable like any member
(``MEMBERS=compact_cnn,stats_gbm``) on every engine.
"""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import strict_json
from ..chips.chip_features import STATISTICS, band_statistics

if TYPE_CHECKING:
    from ..progress import Reporter


NAME = "stats_gbm"
KIND = "hist_gradient_boosting"
WEIGHTS_SUFFIX = ".trees.json"
PARAMETERS = {
    "max_iter": 200,
    "learning_rate": 0.05,
    "max_leaf_nodes": 8,
    "min_samples_leaf": 10,
    "l2_regularization": 1.0,
    "early_stopping": False,
}


def is_statistics_member(architecture: str) -> bool:
    return architecture == NAME


def weights_file(architecture: str) -> str:
    return f"{architecture}{WEIGHTS_SUFFIX}"


def chip_statistics(chips: Mapping[str, np.ndarray], input_names: Sequence[str]) -> np.ndarray:
    """[n, features]: mean, max, std and centre of each band of each input (normalised chips)."""
    return np.concatenate([band_statistics(chips[name]) for name in input_names], axis=1)


def feature_definition(inputs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"input": spec["name"], "band": band + 1, "statistic": statistic}
        for spec in inputs
        for band in range(int(spec["shape"][-1]))
        for statistic in STATISTICS
    ]


def export(model: Any, trees: int | None = None) -> dict[str, Any]:
    """The fitted classifier's first ``trees`` trees (all: None) as JSON-ready numbers."""
    predictors = model._predictors[: trees or len(model._predictors)]
    exported = []
    for (predictor,) in predictors:  # binary: one tree per iteration
        nodes = predictor.nodes
        if nodes["is_categorical"].any():
            raise ValueError("categorical splits are not supported")
        exported.append(
            {
                "feature": nodes["feature_idx"].astype(int).tolist(),
                "threshold": nodes["num_threshold"].astype(float).tolist(),
                "missing_left": nodes["missing_go_to_left"].astype(int).tolist(),
                "left": nodes["left"].astype(int).tolist(),
                "right": nodes["right"].astype(int).tolist(),
                "leaf": nodes["is_leaf"].astype(int).tolist(),
                "value": nodes["value"].astype(float).tolist(),
            }
        )
    return {
        "kind": KIND,
        "baseline": float(np.asarray(model._baseline_prediction).ravel()[0]),
        "trees": exported,
    }


def raw_scores(stored: Mapping[str, Any], features: np.ndarray) -> np.ndarray:
    """The boosting's raw score (log-odds) of each row of ``features``, in numpy."""
    features = np.asarray(features, dtype="float64")
    rows = np.arange(len(features))
    scores = np.full(len(features), float(stored["baseline"]))
    for tree in stored["trees"]:
        feature, threshold = np.asarray(tree["feature"]), np.asarray(tree["threshold"])
        missing_left = np.asarray(tree["missing_left"], dtype=bool)
        left, right = np.asarray(tree["left"]), np.asarray(tree["right"])
        leaf, value = np.asarray(tree["leaf"], dtype=bool), np.asarray(tree["value"])
        node = np.zeros(len(features), dtype="int64")
        while not leaf[node].all():
            x = features[rows, feature[node]]
            go_left = np.where(np.isnan(x), missing_left[node], x <= threshold[node])
            node = np.where(leaf[node], node, np.where(go_left, left[node], right[node]))
        scores += value[node]
    return scores


def probabilities(stored: Mapping[str, Any], features: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-raw_scores(stored, features)))


class StatisticsMember:
    """A stored ``stats_gbm`` member, used where the loops use a Keras member."""

    def __init__(self, stored: dict[str, Any], input_names: Sequence[str]) -> None:
        self.stored = stored
        self.input_names = list(input_names)
        self.inputs = [types.SimpleNamespace(name=name) for name in self.input_names]

    def predict_on_batch(self, chips: Mapping[str, np.ndarray]) -> np.ndarray:
        return probabilities(self.stored, chip_statistics(chips, self.input_names)).astype(
            "float32"
        )

    def count_params(self) -> int:
        return int(sum(len(tree["value"]) for tree in self.stored["trees"]))

    def save_weights(self, path: str) -> None:
        text = strict_json.dumps(self.stored, None, f"the {NAME} trees", sort_keys=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)

    @classmethod
    def load(cls, path: str, input_names: Sequence[str]) -> StatisticsMember:
        with open(path, encoding="utf-8") as handle:
            stored = strict_json.loads(handle.read())  # NaN/Infinity refused (ValueError)
        if not isinstance(stored, dict):
            raise ValueError(f"{path}: not a {NAME} member")
        non_finite = strict_json.non_finite_paths(stored)
        if non_finite:
            raise ValueError(f"{path}: numbers that are not finite at {', '.join(non_finite[:3])}")
        if stored.get("kind") != KIND:
            raise ValueError(f"{path}: not a {NAME} member ({stored.get('kind')})")
        return cls(stored, input_names)


def fit(
    inputs: Sequence[Mapping[str, Any]],
    train_data: Any,
    validation_data: Any,
    seed: int,
    reporter: Reporter,
    class_weight: Mapping[int, float] | None = None,
) -> tuple[StatisticsMember, list[float]]:
    """Fit on one pass of ``train_data`` (the members' batches); trees chosen on validation.

    ``class_weight`` ({label: weight}, BALANCE=class_weights) weighs the training cells.

    Returns the member and the validation log loss after each boosting iteration.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    names = [spec["name"] for spec in inputs]
    train_x, train_y = _collected(train_data, names)
    validation_x, validation_y = _collected(validation_data, names)
    model = HistGradientBoostingClassifier(random_state=seed, **PARAMETERS)
    weights = None if not class_weight else np.array([class_weight[int(y)] for y in train_y])
    model.fit(train_x, train_y, sample_weight=weights)
    losses = [
        _log_loss(validation_y, staged[:, 1]) for staged in model.staged_predict_proba(validation_x)
    ]
    best = int(np.argmin(losses)) + 1
    stored = export(model, best)
    stored.update(
        features=feature_definition(inputs),
        parameters=dict(PARAMETERS, random_state=seed),
        trees_kept=best,
        training_cells=int(len(train_y)),
    )
    reporter.info(
        f"{NAME}: {best} of {len(losses)} trees kept (validation log loss {losses[best - 1]:.4f}) "
        f"on {len(train_y)} training cells"
    )
    return StatisticsMember(stored, names), losses


def _collected(batches: Sequence[Any], names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    features, labels = [], []
    for index in range(len(batches)):
        chips, batch_labels = batches[index][:2]
        features.append(chip_statistics(chips, names))
        labels.append(np.asarray(batch_labels))
    return np.concatenate(features), np.concatenate(labels).astype("int64")


def _log_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    p = np.clip(np.asarray(probabilities, dtype="float64"), 1e-7, 1 - 1e-7)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))
