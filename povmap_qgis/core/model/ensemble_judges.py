"""The ensemble's judges, fitted without the test cells, and its metrics on held-out cells.

The transparent baseline (fitted on the training cells), the stacking of members and
baseline (``stacking.py``), the Platt calibration, the decision threshold and the interval
rule, all fitted on the validation cells; the ensemble's outputs (prob_mean, votes, pred);
the members', ensemble's, baseline's and random baseline's metrics and ROC curves on some
cells. Shared by ``train`` and each cross-validation fold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..chips import chip_features
from ..names import BASELINE, ENSEMBLE, RANDOM, RANDOM_DRAWS
from ..validation import metrics
from . import stacking
from .training_settings import DEFAULT_NOMINAL

if TYPE_CHECKING:
    from ..chips.chip_store import ChipStore


# the parts whose probabilities train keeps of each member (calibration, then holdout metrics)
PARTS = ("validation", "test")


def ensemble_outputs(
    member_probabilities: Sequence[np.ndarray],
    threshold: float,
    calibrated: np.ndarray | None = None,
    decision: float | None = None,
) -> dict[str, Any]:
    """prob_mean (the members' mean), votes, pred, disagreement (std of members) and members
    (their probabilities, for ``stacking.combine``).

    ``pred``: with a ``decision`` threshold, ``calibrated`` (the calibrated mean;
    the raw mean when None) >= ``decision``; without one (packages from before the
    decision threshold), the members' majority vote at ``threshold`` (the paper).
    ``votes`` (members at ``threshold``) are kept as information either way.
    """
    stacked = np.vstack(member_probabilities)
    votes = (stacked >= threshold).sum(axis=0)
    mean = stacked.mean(axis=0)
    if decision is None:
        pred = (votes * 2 > len(stacked)).astype("int32")
    else:
        scale = mean if calibrated is None else np.asarray(calibrated, dtype="float64")
        pred = (scale >= decision).astype("int32")
    return {
        "prob_mean": mean,
        "votes": votes,
        "pred": pred,
        "disagreement": stacked.std(axis=0),
        "members": list(member_probabilities),
    }


def fit_baseline_and_calibration(
    store: ChipStore,
    store_rows: np.ndarray,
    labels: np.ndarray,
    split: dict[str, np.ndarray],
    normalisation: dict[str, Any],
    member_probabilities: Mapping[str, Sequence[np.ndarray]],
    target_recall: float | None = None,
    districts: np.ndarray | None = None,
    nominal: float = DEFAULT_NOMINAL,
    members: Sequence[Any] | None = None,
    stacking_mode: str = "off",
    fitted_stacking: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The transparent baseline (fitted on the training cells), the stacking and the ensemble's
    calibration.

    The baseline is calibrated on the validation cells (``calibration.fit_platt``),
    never on the test cells. ``split``: {"train", "validation", "test"} rows of
    ``labels``; ``member_probabilities``: {"validation": [...], "test": [...]} per
    member (``members``: their names). ``prob_raw`` is :func:`stacking.combine` of the
    members and the baseline's raw probability: with ``stacking_mode`` "validation" the
    stacking is fitted on the validation cells; with ``fitted_stacking`` (the nested
    cross-validation's, fitted on inner out-of-fold predictions) that one is used;
    otherwise ("off") it is the members' mean. The ensemble's calibration is Platt
    scaling of the validation cells' ``prob_raw``. Also returns ``raw_test`` and the
    calibrated ensemble and baseline probabilities of the test cells and the ensemble's
    decision threshold and its rule (``calibration.decision_threshold``; the prevalence
    is that of the training cells before undersampling). Shared by ``train`` and the
    cross-validation. ``interval``: the prob_low/prob_high rule fitted on the
    validation cells' ``prob_raw`` and their ``districts`` (each labelled cell's, or
    None) at the ``nominal`` coverage (``intervals.fit_interval``).
    """
    from . import baseline, calibration, intervals

    members = list(members or range(len(member_probabilities["validation"])))
    validation_labels = labels[split["validation"]]
    fitted = baseline.fit_calibrated(
        store,
        (store_rows[split["train"]], labels[split["train"]]),
        (store_rows[split["validation"]], validation_labels),
        normalisation,
        target_recall,
    )
    candidates = {
        part: stacking.candidates_of(
            members,
            member_probabilities[part],
            baseline.probabilities(
                fitted, chip_features.chip_features(store, store_rows[split[part]], normalisation)
            ),
        )
        for part in PARTS
    }
    if fitted_stacking is not None:
        combiner = fitted_stacking
    elif stacking_mode == "validation":
        combiner = stacking.fit(candidates["validation"], validation_labels, "validation cells")
    else:
        combiner = {"method": "none", "note": "STACKING=off"}
    raw = {part: stacking.combine(combiner, candidates[part]) for part in PARTS}
    ensemble_calibration = dict(
        calibration.fit_platt(raw["validation"], validation_labels), fitted_on="validation cells"
    )
    calibrated_validation = calibration.calibrate(raw["validation"], ensemble_calibration)
    decision, rule = calibration.decision_threshold(
        target_recall,
        validation_labels,
        calibrated_validation,
        float(np.mean(labels[split["train"]])),
        ensemble_calibration,
    )
    validation_districts = None if districts is None else np.asarray(districts)[split["validation"]]
    interval_rule = intervals.fit_interval(
        raw["validation"],
        validation_labels,
        validation_districts,
        ensemble_calibration,
        nominal,
        seed=0,
    )
    return {
        "baseline": fitted,
        "stacking": combiner,
        "calibration": ensemble_calibration,
        "interval": interval_rule,
        "decision_threshold": decision,
        "decision_rule": rule,
        "calibrated_validation": calibrated_validation,
        "raw_test": raw["test"],
        "candidates_validation": candidates["validation"],
        "candidates_test": candidates["test"],
        "calibrated_test": calibration.calibrate(raw["test"], ensemble_calibration),
        "baseline_test": calibration.calibrate(
            candidates["test"][stacking.BASELINE], fitted["calibration"]
        ),
    }


def holdout_metrics(
    members: Sequence[str],
    labels: np.ndarray,
    member_probabilities: Sequence[np.ndarray],
    threshold: float,
    seed: int,
    calibrated: np.ndarray | None = None,
    baseline: tuple[np.ndarray, float] | None = None,
    decision_threshold: float | None = None,
    raw: Any = None,
) -> dict[str, Any]:
    """Metrics of the members, the ensemble, the baseline (when given) and random on some cells.

    ``calibrated``: the ensemble's calibrated probability (its AUC, Brier score
    and ECE; those of ``raw`` — ``prob_raw``, default the members' mean — are kept as
    ``brier_raw`` / ``ece_raw``). ``baseline``: (calibrated probability, threshold on that scale).
    ``decision_threshold``: the ensemble predicts poor where ``calibrated`` >= it
    (None: the members' majority vote).
    """
    from . import calibration

    result = {}
    for name, probabilities in zip(members, member_probabilities, strict=True):
        result[name] = metrics.binary_metrics(labels, probabilities >= threshold, probabilities)
    ensemble = ensemble_outputs(member_probabilities, threshold, calibrated, decision_threshold)
    if calibrated is None:
        result[ENSEMBLE] = metrics.binary_metrics(labels, ensemble["pred"], ensemble["prob_mean"])
    else:
        result[ENSEMBLE] = metrics.binary_metrics(labels, ensemble["pred"], calibrated)
        raw = calibration.scores(labels, ensemble["prob_mean"] if raw is None else raw)
        result[ENSEMBLE].update(calibration.scores(labels, calibrated))
        result[ENSEMBLE].update({f"{key}_raw": value for key, value in raw.items()})
    if baseline is not None:
        probabilities, cut = baseline
        result[BASELINE] = metrics.binary_metrics(labels, probabilities >= cut, probabilities)
        result[BASELINE].update(calibration.scores(labels, probabilities))
    result[RANDOM] = metrics.random_baseline(labels, RANDOM_DRAWS, seed)
    return result


def holdout_curves(
    members: Sequence[str],
    labels: np.ndarray,
    member_probabilities: Sequence[np.ndarray],
    calibrated: np.ndarray,
    baseline: np.ndarray,
) -> dict[str, Any]:
    """ROC curves (``metrics.roc_points``) of the members, the calibrated ensemble and the
    baseline on some cells, as :func:`holdout_metrics` scores them (None with one class)."""
    curves = {
        name: metrics.roc_points(labels, values)
        for name, values in zip(members, member_probabilities, strict=True)
    }
    curves[ENSEMBLE] = metrics.roc_points(labels, calibrated)
    curves[BASELINE] = metrics.roc_points(labels, baseline)
    return curves
