"""Binary classification metrics with answers a table can show.

Counts, recall, precision and accuracy come from the confusion counts
(numpy); AUC and the ROC curve from scikit-learn. This module decides what a
metric is when it is undefined (one class only, no positive prediction):
``None`` with a reason in ``notes``, never NaN in a table. The tests check
every function against scikit-learn on random inputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ..names import METRIC_NAMES, RANDOM_DRAWS

__all__ = ["METRIC_NAMES", "RANDOM_DRAWS"]
# Draws × cells held in memory at once by the random baseline (int64: 8 bytes each).
_RANDOM_CHUNK_VALUES = 4_000_000


def binary_metrics(
    labels: ArrayLike, predictions: ArrayLike, probabilities: ArrayLike | None = None
) -> dict[str, Any]:
    """n, recall, precision, accuracy, AUC (None where undefined) and the confusion counts tp, fp, fn, tn."""
    labels = _binary(labels, "labels")
    result: dict[str, Any] = {
        "n": int(len(labels)),
        "recall": None,
        "precision": None,
        "accuracy": None,
        "auc": None,
        "notes": [],
    }
    result.update(confusion_counts(labels, predictions))
    if not len(labels):
        result["notes"].append("no cells")
        return result
    result["accuracy"] = (result["tp"] + result["tn"]) / len(labels)
    if result["tp"] + result["fn"]:
        result["recall"] = result["tp"] / (result["tp"] + result["fn"])
    else:
        result["notes"].append("recall undefined: no poor cells")
    if result["tp"] + result["fp"]:
        result["precision"] = result["tp"] / (result["tp"] + result["fp"])
    else:
        result["notes"].append("precision undefined: no cell predicted poor")
    if probabilities is not None:
        if 0 < result["tp"] + result["fn"] < len(labels):
            from sklearn.metrics import roc_auc_score

            result["auc"] = float(roc_auc_score(labels, np.asarray(probabilities, dtype="float64")))
        else:
            result["notes"].append("AUC undefined: the cells hold one class only")
    return result


def confusion_counts(labels: ArrayLike, predictions: ArrayLike) -> dict[str, int]:
    """tp, fp, fn, tn of binary labels and predictions (1 = poor), as ints."""
    labels, predictions = _binary(labels, "labels"), _binary(predictions, "predictions")
    if len(labels) != len(predictions):
        raise ValueError(f"{len(labels)} labels but {len(predictions)} predictions")
    true_negative, false_positive, false_negative, true_positive = np.bincount(
        labels * 2 + predictions, minlength=4
    )
    return {
        "tp": int(true_positive),
        "fp": int(false_positive),
        "fn": int(false_negative),
        "tn": int(true_negative),
    }


def _binary(values: ArrayLike, name: str) -> np.ndarray:
    values = np.asarray(values).astype("int64").ravel()
    if len(values) and not np.isin(values, (0, 1)).all():
        raise ValueError(f"{name} must be 0 or 1")
    return values


def roc_points(labels: ArrayLike, probabilities: ArrayLike) -> dict[str, Any] | None:
    """The ROC curve (scikit-learn's points) or None when the cells hold one class only.

    ``thresholds[0]`` is scikit-learn's "above every probability" (infinite):
    stored as None so the result stays plain JSON.
    """
    from sklearn.metrics import roc_curve

    labels = np.asarray(labels, dtype="int64")
    if len(np.unique(labels)) != 2:
        return None
    false_positive_rate, true_positive_rate, thresholds = roc_curve(
        labels, np.asarray(probabilities, dtype="float64")
    )
    return {
        "fpr": [float(value) for value in false_positive_rate],
        "tpr": [float(value) for value in true_positive_rate],
        "thresholds": [float(value) if np.isfinite(value) else None for value in thresholds],
    }


def random_baseline(labels: ArrayLike, draws: int = RANDOM_DRAWS, seed: int = 0) -> dict[str, Any]:
    """Median recall, precision and accuracy of ``draws`` coin-flip predictions (the paper's baseline).

    A draw that predicts no cell poor has no precision and is left out of
    that median. AUC is 0.5 for a random guess (None with one class only).
    Vectorised; the draws are the same as ``rng.integers(0, 2, n)`` called
    ``draws`` times on ``numpy.random.default_rng(seed)``.
    """
    labels = np.asarray(labels, dtype="int64")
    count = int(len(labels))
    result: dict[str, Any] = {
        "n": count,
        "draws": int(draws),
        "recall": None,
        "precision": None,
        "accuracy": None,
        "auc": None,
        "notes": [],
    }
    if not count:
        result["notes"].append("no cells")
        return result
    rng = np.random.default_rng(seed)
    poor = labels == 1
    poor_cells = int(poor.sum())
    true_positives: Any = []  # lists of arrays, then one array each
    predicted_poor: Any = []
    correct: Any = []
    chunk = max(1, _RANDOM_CHUNK_VALUES // count)
    for start in range(0, int(draws), chunk):
        guesses = rng.integers(0, 2, (min(chunk, int(draws) - start), count)).astype(bool)
        hits = (guesses & poor).sum(axis=1)
        true_positives.append(hits)
        predicted_poor.append(guesses.sum(axis=1))
        correct.append(hits + (~guesses & ~poor).sum(axis=1))
    true_positives, predicted_poor, correct = (
        np.concatenate(values) if values else np.zeros(0, "int64")
        for values in (true_positives, predicted_poor, correct)
    )
    if len(correct):
        result["accuracy"] = float(np.median(correct / count))
    if poor_cells:
        result["recall"] = (
            float(np.median(true_positives / poor_cells)) if len(true_positives) else None
        )
    else:
        result["notes"].append("recall undefined: no poor cells")
    with_prediction = predicted_poor > 0
    if with_prediction.any():
        result["precision"] = float(
            np.median(true_positives[with_prediction] / predicted_poor[with_prediction])
        )
    else:
        result["notes"].append("precision undefined: no draw predicted a cell poor")
    if 0 < poor_cells < count:
        result["auc"] = 0.5
    else:
        result["notes"].append("AUC undefined: the cells hold one class only")
    return result


def threshold_for_recall(
    labels: ArrayLike, probabilities: ArrayLike, target_recall: float
) -> float:
    """The highest threshold whose recall on these cells reaches ``target_recall``."""
    labels = np.asarray(labels, dtype="int64")
    positives = np.sort(np.asarray(probabilities, dtype="float64")[labels == 1])[::-1]
    if not len(positives):
        raise ValueError("no poor cell in the validation set to set a threshold on")
    needed = int(np.ceil(target_recall * len(positives)))
    return float(positives[max(needed, 1) - 1])
