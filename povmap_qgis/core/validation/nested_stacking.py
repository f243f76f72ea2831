"""The cross-validation's stacking of members and baseline, fitted without the held-out fold.

STACKING=nested: in each fold the stacking's weights are fitted on inner out-of-fold
predictions of the fold's training districts (``INNER_FOLDS`` folds of whole districts,
members and baseline retrained in each), so the held-out fold is never seen by members,
stacking or calibration. Also what the image members add: the stacking refitted without
them on the same cells, calibrated as the map is, and its out-of-fold AUC beside the map's
(``stacking_summary``, ``images_sentence``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..progress import StageReporter
from ..wording import metric_text
from .district_folds import assign_folds, validation_split

if TYPE_CHECKING:
    import numpy as np

    from ..progress import Reporter
    from .district_folds import DistrictFolds
    from .fold_training import FoldTraining, OutOfFold


INNER_FOLDS = 3  # STACKING=nested: inner folds of whole districts inside each fold's training


class InnerFoldsReporter(StageReporter):
    """The inner folds' messages and progress, without their per-epoch metrics: the fold's run
    history holds the metrics of the members that predict the fold."""

    def metric(self, name: str, value: float, step: int | None = None) -> None:
        pass

    def stage(self, start: float, end: float) -> Reporter:
        return InnerFoldsReporter(self, start, end)


def fit_members_on(
    run: FoldTraining,
    rows: np.ndarray,
    seeds: tuple[int, int, int, int],
    reporter: Reporter,
    predict: Mapping[str, np.ndarray],
    predict_validation: bool = False,
) -> dict[str, Any]:
    """The members trained on ``rows`` as ``train`` trains them: a validation share split off
    (stratified), the training rows balanced, normalised on the balanced rows; they then predict
    ``predict`` ({name: rows}) and, with ``predict_validation``, the validation rows.

    ``seeds``: (split seed, split index, batch seed, fitting seed). Returns {"train_rows",
    "validation", "balanced", "normalisation", "fitted", "predicted"}.
    """
    from ..model import learning_data, member_fitting, training_split

    store, store_rows, labels = run.store, run.store_rows, run.labels
    split_seed, split_index, batch_seed, fit_seed = seeds
    share = training_split.PAPER_FRACTIONS[1] / sum(training_split.PAPER_FRACTIONS[:2])
    train_rows, validation = validation_split(rows, labels, share, split_seed, split_index)
    balanced, class_weight = training_split.balanced_training_rows(
        train_rows, labels, run.options, reporter
    )
    normalisation = learning_data.training_normalisation(store, store_rows[balanced], reporter)
    batches = member_fitting.member_batches(
        store,
        (store_rows, labels),
        balanced,
        validation,
        normalisation,
        run.preset["batch_size"],
        batch_seed,
    )
    wanted = {name: store_rows[chosen] for name, chosen in predict.items()}
    if predict_validation:
        wanted["validation"] = store_rows[validation]
    fitted, predicted = member_fitting.fit_members(
        run.members,
        run.inputs,
        run.preset,
        batches,
        class_weight,
        fit_seed,
        reporter,
        predict_on=(store, normalisation, wanted),
    )
    return {
        "train_rows": train_rows,
        "validation": validation,
        "balanced": balanced,
        "normalisation": normalisation,
        "fitted": fitted,
        "predicted": predicted,
    }


def inner_stacking(
    run: FoldTraining, folds: DistrictFolds, fold: int, rows: np.ndarray, reporter: Reporter
) -> dict[str, Any] | None:
    """STACKING=nested: the stacking fitted on inner out-of-fold predictions of ``rows`` (the
    fold's training cells).

    The training districts are split into ``INNER_FOLDS`` folds of whole districts
    (:func:`assign_folds`); for each, the members (as ``train`` trains them) and the
    baseline learn from the others and predict it. Returns {"stacking", "candidates"
    ({name: probability of each of ``rows``})}, or None when the training cells lie in
    one district (then the stacking is fitted on the validation cells, with a warning).
    """
    import numpy as np

    from ..chips.chip_features import chip_features
    from ..model import baseline, stacking

    options, store, store_rows, labels = run.options, run.store, run.store_rows, run.labels
    districts = folds.districts[rows]
    count = min(INNER_FOLDS, len(np.unique(districts)))
    if count < 2:
        reporter.warning(
            f"fold {fold}: its training cells lie in one district, so there are no inner folds "
            "of districts; its stacking is fitted on its validation cells (STACKING=validation)."
        )
        return None
    assignment = assign_folds(districts, count, options.seed + fold)
    inner_folds = np.array([assignment[name] for name in districts])
    names = list(run.members) + [stacking.BASELINE]
    candidates = {name: np.full(len(rows), np.nan) for name in names}
    for inner in range(1, count + 1):
        reporter.check_canceled()
        stage = reporter.stage(100 * (inner - 1) / count, 100 * inner / count)
        held = inner_folds == inner
        trained = fit_members_on(
            run,
            rows[~held],
            (
                options.seed + 100 * fold,
                inner,
                options.seed + 100 * fold + inner,
                options.seed + 1000 * fold + 100 * inner,
            ),
            stage,
            {"held": rows[held]},
        )
        train_rows, normalisation = trained["train_rows"], trained["normalisation"]
        predicted = trained["predicted"]
        simple = baseline.fit(
            chip_features(store, store_rows[train_rows], normalisation),
            labels[train_rows],
            normalisation,
        )
        found = stacking.candidates_of(
            run.members,
            predicted["held"],
            baseline.probabilities(
                simple, chip_features(store, store_rows[rows[held]], normalisation)
            ),
        )
        for name in names:
            candidates[name][held] = found[name]
    fitted = stacking.fit(
        candidates,
        labels[rows],
        f"inner out-of-fold cells ({count} folds of the training districts)",
        names=names,
    )
    reporter.info(f"fold {fold}: {stacking.describe(fitted)}")
    return {"stacking": fitted, "candidates": candidates}


def stacking_without_images(
    members: Sequence[Any], fitted: Any, fit_set: tuple[Any, np.ndarray]
) -> dict[str, Any] | None:
    """The fold's stacking refitted on the same cells without the image members (every member
    but the statistics members), to measure what they add; None without a stacking or without
    image members. Returns {"stacking", "names"}."""
    from ..model import stacking, statistics_member

    images = [member for member in members if not statistics_member.is_statistics_member(member)]
    if not stacking.is_stacked(fitted) or not images:
        return None
    candidates, labels = fit_set
    names = [name for name in fitted["candidates"] if name not in images]
    refitted = stacking.fit(
        {name: candidates[name] for name in names}, labels, fitted["fitted_on"], names=names
    )
    return {"stacking": refitted, "names": names}


def calibrated_like_the_map(
    without: dict[str, Any], judges: dict[str, Any], validation_labels: np.ndarray
) -> np.ndarray:
    """The test cells' probability of the stacking without the image members, calibrated as the
    map's prob_mean is in the fold (Platt scaling on the validation cells, or none where the
    stacking was fitted on them), so that the two are compared on an equal footing."""
    from ..model import calibration, stacking

    def combined(part: str) -> np.ndarray:
        found = judges[f"candidates_{part}"]
        return stacking.combine(without["stacking"], {n: found[n] for n in without["names"]})

    if judges["calibration"]["method"] != "platt":
        return combined("test")
    platt = calibration.fit_platt(combined("validation"), validation_labels)
    return calibration.calibrate(combined("test"), platt)


def stacking_summary(
    run: FoldTraining,
    folds: DistrictFolds,
    fold_results: Mapping[int, tuple[dict[str, Any], dict[str, Any]]],
    out: OutOfFold,
) -> dict[str, Any]:
    """How prob_raw was made in the folds: the mode, each fold's weights and contributions, the
    time the inner folds cost, and what the image members add out of fold (``images``)."""
    import numpy as np

    from ..decision.verdict import bootstrap_auc
    from ..model import stacking, statistics_member
    from . import metrics

    records = [record for record, _ in fold_results.values()]
    inner = sum(record["seconds"]["inner"] for record in records)
    total = sum(record["seconds"]["fold"] for record in records)
    summary = {
        "mode": run.options.stacking,
        "inner_folds": INNER_FOLDS if run.options.stacking == "nested" else None,
        "folds": {str(record["fold"]): record["stacking"] for record in records},
        "seconds": {"inner_folds": round(inner, 1), "folds": round(total, 1)},
        "images": None,
    }
    images = [m for m in run.members if not statistics_member.is_statistics_member(m)]
    shares: list[Any] = [stacking.imagery_share(record["stacking"]) for record in records]
    if not images or any(share is None for share in shares) or np.isnan(out.without_images).any():
        return summary
    labels = run.labels
    interval = bootstrap_auc(
        labels, out.calibrated, out.without_images, groups=folds.districts, seed=run.options.seed
    )
    with_images = metrics.binary_metrics(labels, out.calibrated >= 0.5, out.calibrated)["auc"]
    without = metrics.binary_metrics(labels, out.without_images >= 0.5, out.without_images)["auc"]
    found = {
        "members": images,
        "share_median": float(np.median(shares)),
        "share_range": [float(min(shares)), float(max(shares))],
        "auc_with": with_images,
        "auc_without": without,
        "difference_interval": interval["difference"],
    }
    found["sentence"] = images_sentence(found)
    summary["images"] = found
    return summary


def images_sentence(found: dict[str, Any]) -> str:
    """One sentence: what the image members add to the stacking, out of fold."""
    low, high = found["difference_interval"] or (None, None)
    interval = (
        f", 95 % interval {low:+.3f} to {high:+.3f} with districts resampled"
        if low is not None
        else ""
    )
    return (
        f"The image members ({', '.join(found['members'])}) carry "
        f"{found['share_median']:.0%} of the stacking's signal (median over the folds, "
        f"{found['share_range'][0]:.0%}–{found['share_range'][1]:.0%}); out of fold the "
        f"map's AUC is {metric_text(found['auc_with'])} with them and "
        f"{metric_text(found['auc_without'])} with the stacking refitted without them (difference "
        f"{found['auc_with'] - found['auc_without']:+.3f}{interval})."
    )
