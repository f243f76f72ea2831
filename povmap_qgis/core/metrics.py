"""Binary classification metrics with answers a table can show.

scikit-learn computes them; this module decides what a metric is when it is
undefined (one class only, no positive prediction): ``None`` with a reason,
never NaN in a table.
"""

import numpy as np

METRIC_NAMES = ("recall", "precision", "accuracy", "auc")


def binary_metrics(labels, predictions, probabilities=None):
    """n, recall, precision, accuracy, AUC (None where undefined) and the confusion counts."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_score, recall_score, roc_auc_score

    labels = np.asarray(labels, dtype="int64")
    predictions = np.asarray(predictions, dtype="int64")
    result = {"n": int(len(labels)), "recall": None, "precision": None, "accuracy": None, "auc": None, "notes": []}
    if not len(labels):
        result["notes"].append("no cells")
        return result
    true_negative, false_positive, false_negative, true_positive = confusion_matrix(labels, predictions, labels=[0, 1]).ravel()
    result.update(tp=int(true_positive), fp=int(false_positive), fn=int(false_negative), tn=int(true_negative))
    result["accuracy"] = float(accuracy_score(labels, predictions))
    if true_positive + false_negative:
        result["recall"] = float(recall_score(labels, predictions, zero_division=0))
    else:
        result["notes"].append("recall undefined: no poor cells")
    if true_positive + false_positive:
        result["precision"] = float(precision_score(labels, predictions, zero_division=0))
    else:
        result["notes"].append("precision undefined: no cell predicted poor")
    if probabilities is not None:
        if len(np.unique(labels)) == 2:
            result["auc"] = float(roc_auc_score(labels, np.asarray(probabilities, dtype="float64")))
        else:
            result["notes"].append("AUC undefined: the cells hold one class only")
    return result


def random_baseline(labels, draws=1000, seed=0):
    """Median recall, precision and accuracy of ``draws`` coin-flip predictions (the paper's baseline)."""
    labels = np.asarray(labels, dtype="int64")
    rng = np.random.default_rng(seed)
    scores = {name: [] for name in ("recall", "precision", "accuracy")}
    for _ in range(draws):
        guessed = binary_metrics(labels, rng.integers(0, 2, len(labels)))
        for name in scores:
            if guessed[name] is not None:
                scores[name].append(guessed[name])
    result = {"n": int(len(labels)), "draws": int(draws), "auc": 0.5, "notes": []}
    for name, values in scores.items():
        result[name] = float(np.median(values)) if values else None
    return result


def threshold_for_recall(labels, probabilities, target_recall):
    """The highest threshold whose recall on these cells reaches ``target_recall``."""
    labels = np.asarray(labels, dtype="int64")
    positives = np.sort(np.asarray(probabilities, dtype="float64")[labels == 1])[::-1]
    if not len(positives):
        raise ValueError("no poor cell in the validation set to set a threshold on")
    needed = int(np.ceil(target_recall * len(positives)))
    return float(positives[max(needed, 1) - 1])
