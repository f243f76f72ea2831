"""core/validation/metrics.py agrees with scikit-learn on random inputs; undefined values are None with a note, never NaN."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from povmap_qgis.core.validation import metrics

PROPERTY_SETTINGS = settings(
    max_examples=1000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
# Few distinct probabilities: ties between poor and not-poor cells are common.
TIED_PROBABILITIES = st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.5, 0.75, 0.9, 1.0])
ANY_PROBABILITY = st.floats(0.0, 1.0, allow_nan=False)


@st.composite
def labelled_cells(draw, max_cells=60):
    """Labels (sometimes one class only), predictions (sometimes one class only) and probabilities (often tied)."""
    count = draw(st.integers(1, max_cells))
    label_kind = draw(st.sampled_from(["mixed", "mixed", "mixed", "all poor", "none poor"]))
    labels = {"mixed": st.integers(0, 1), "all poor": st.just(1), "none poor": st.just(0)}[
        label_kind
    ]
    prediction_kind = draw(st.sampled_from(["mixed", "mixed", "all poor", "none poor"]))
    predictions = {"mixed": st.integers(0, 1), "all poor": st.just(1), "none poor": st.just(0)}[
        prediction_kind
    ]
    probabilities = draw(st.sampled_from([TIED_PROBABILITIES, ANY_PROBABILITY]))
    return (
        np.array(draw(st.lists(labels, min_size=count, max_size=count))),
        np.array(draw(st.lists(predictions, min_size=count, max_size=count))),
        np.array(draw(st.lists(probabilities, min_size=count, max_size=count))),
    )


def assert_table_value(value):
    """What a table may show: None (undefined) or a finite number."""
    assert value is None or (isinstance(value, float) and math.isfinite(value)), value


@PROPERTY_SETTINGS
@given(labelled_cells())
def test_binary_metrics_agree_with_scikit_learn(cells):
    labels, predictions, probabilities = cells
    result = metrics.binary_metrics(labels, predictions, probabilities)
    true_negative, false_positive, false_negative, true_positive = confusion_matrix(
        labels, predictions, labels=[0, 1]
    ).ravel()
    assert (result["tp"], result["fp"], result["fn"], result["tn"]) == (
        true_positive,
        false_positive,
        false_negative,
        true_negative,
    )
    assert result["n"] == len(labels)
    assert result["accuracy"] == pytest.approx(accuracy_score(labels, predictions))
    if labels.any():
        assert result["recall"] == pytest.approx(recall_score(labels, predictions))
    else:
        assert result["recall"] is None and "recall undefined: no poor cells" in result["notes"]
    if predictions.any():
        assert result["precision"] == pytest.approx(precision_score(labels, predictions))
    else:
        assert (
            result["precision"] is None
            and "precision undefined: no cell predicted poor" in result["notes"]
        )
    if len(set(labels)) == 2:
        assert result["auc"] == pytest.approx(roc_auc_score(labels, probabilities))
    else:
        assert (
            result["auc"] is None
            and "AUC undefined: the cells hold one class only" in result["notes"]
        )
    for name in metrics.METRIC_NAMES:
        assert_table_value(result[name])


@settings(
    max_examples=600, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(labelled_cells())
def test_confusion_counts_and_roc_points_agree_with_scikit_learn(cells):
    labels, predictions, probabilities = cells
    expected = confusion_matrix(labels, predictions, labels=[0, 1])
    counts = metrics.confusion_counts(labels, predictions)
    assert [[counts["tn"], counts["fp"]], [counts["fn"], counts["tp"]]] == expected.tolist()
    curve = metrics.roc_points(labels, probabilities)
    if len(set(labels)) < 2:
        assert curve is None
        return
    false_positive_rate, true_positive_rate, thresholds = roc_curve(labels, probabilities)
    assert curve["fpr"] == pytest.approx(false_positive_rate.tolist())
    assert curve["tpr"] == pytest.approx(true_positive_rate.tolist())
    assert curve["thresholds"][0] is None and curve["thresholds"][1:] == pytest.approx(
        thresholds[1:].tolist()
    )
    # the area under these points is scikit-learn's AUC (ties included)
    assert np.trapz(curve["tpr"], curve["fpr"]) == pytest.approx(
        roc_auc_score(labels, probabilities)
    )


@settings(max_examples=150, deadline=None, database=None)
@given(labelled_cells(max_cells=40), st.integers(1, 25), st.integers(0, 2**32 - 1))
def test_random_baseline_is_the_median_of_scikit_learn_scores_of_coin_flips(cells, draws, seed):
    labels = cells[0]
    result = metrics.random_baseline(labels, draws, seed)
    rng = np.random.default_rng(seed)
    scores = {"recall": [], "precision": [], "accuracy": []}
    for _ in range(draws):
        guessed = rng.integers(0, 2, len(labels))
        scores["accuracy"].append(accuracy_score(labels, guessed))
        if labels.any():
            scores["recall"].append(recall_score(labels, guessed))
        if guessed.any():
            scores["precision"].append(precision_score(labels, guessed))
    for name, values in scores.items():
        if values:
            assert result[name] == pytest.approx(float(np.median(values))), name
        else:
            assert result[name] is None and any(
                note.startswith(f"{name} undefined") for note in result["notes"]
            )
        assert_table_value(result[name])
    assert result["auc"] == (0.5 if len(set(labels)) == 2 else None)
    assert result["n"] == len(labels) and result["draws"] == draws


@pytest.mark.parametrize("poor_share", [0.5, 0.2])
def test_random_baseline_medians_are_those_of_chance(poor_share):
    labels = (np.arange(2000) < 2000 * poor_share).astype(int)
    result = metrics.random_baseline(labels, draws=1000, seed=4)
    assert result["recall"] == pytest.approx(0.5, abs=0.02)
    assert result["accuracy"] == pytest.approx(0.5, abs=0.02)
    assert result["precision"] == pytest.approx(
        poor_share, abs=0.02
    )  # a coin flip's precision is the share of poor cells
    assert result["auc"] == 0.5 and result["draws"] == 1000


def test_random_baseline_is_repeatable_and_memory_bounded():
    labels = np.resize([0, 1, 1], 30001)
    first = metrics.random_baseline(
        labels, draws=300, seed=11
    )  # 300 × 30001 values: several chunks
    assert first == metrics.random_baseline(labels, draws=300, seed=11)
    assert first != metrics.random_baseline(labels, draws=300, seed=12)


def test_undefined_metrics_say_why():
    one_class = metrics.binary_metrics([1, 1, 1], [0, 0, 0], [0.2, 0.3, 0.4])
    assert one_class["recall"] == 0.0 and one_class["accuracy"] == 0.0
    assert one_class["precision"] is None and one_class["auc"] is None
    assert one_class["notes"] == [
        "precision undefined: no cell predicted poor",
        "AUC undefined: the cells hold one class only",
    ]
    empty = metrics.binary_metrics([], [], [])
    assert (
        empty["n"] == 0
        and all(empty[name] is None for name in metrics.METRIC_NAMES)
        and empty["notes"] == ["no cells"]
    )
    assert metrics.random_baseline([], 10)["notes"] == ["no cells"]


@settings(max_examples=300, deadline=None, database=None)
@given(labelled_cells(), st.floats(0.05, 1.0))
def test_threshold_for_recall_reaches_the_target(cells, target):
    labels, _, probabilities = cells
    if not labels.any():
        with pytest.raises(ValueError, match="no poor cell"):
            metrics.threshold_for_recall(labels, probabilities, target)
        return
    threshold = metrics.threshold_for_recall(labels, probabilities, target)
    assert recall_score(labels, probabilities >= threshold) >= target - 1e-9
    higher = probabilities[probabilities > threshold]
    if len(higher):  # the next higher probability as threshold would miss the target
        assert recall_score(labels, probabilities >= higher.min()) < target
