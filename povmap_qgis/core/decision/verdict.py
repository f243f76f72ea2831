"""A plain verdict at the top of every report: can a programme target with this map?

``verdict`` is a pure function of the numbers (plain Python, also called inside
QGIS). Its rules, checked in this order:

1. ``undefined`` — recall or AUC cannot be computed on these cells (one class
   only): no judgement.
2. ``worse_than_random`` — at its decision threshold the map calls no cell
   poor, or the cells it calls poor are poor no more often than cells picked at
   random (precision at or below the share of poor cells, ``prevalence``; the
   same as finding no more poor cells than a random pick of as many cells):
   "do not target with it". A map that finds fewer poor cells than a coin flip
   (which calls half the cells poor) only because it calls few cells poor is
   not judged worse than random; its sentence says so and what to change.
   Without ``prevalence`` (older callers) the rule is recall below the coin flip's.
3. ``no_better_than_random`` — the 95 % bootstrap interval of its AUC reaches
   0.5: its ranking cannot be told apart from a coin flip: "do not target with it".
4. With a transparent baseline, on the 95 % bootstrap interval of AUC(map) −
   AUC(baseline) (the same resampled cells or districts for both):
   ``better_than_baseline`` when the interval lies above 0;
   ``worse_than_baseline`` when it lies below 0 ("prefer the baseline");
   ``tied_with_baseline`` otherwise ("no better than the baseline: do not prefer
   this map over it").
5. ``better_than_random`` — no baseline to compare with (an older model package).

The bootstrap (``bootstrap_auc``) resamples cells with replacement — or whole
districts, in the cross-validation, whose folds are districts — ``DRAWS`` times.
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

DRAWS = 1000
LEVEL = 0.95

JUDGEMENTS = {
    "undefined": "No judgement: recall or AUC is undefined on these cells (one class only).",
    "worse_than_random": (
        "No better than picking cells at random at this threshold: do not target with it."
    ),
    "no_better_than_random": (
        "Its ranking cannot be told apart from a coin flip (the AUC interval reaches 0.5): "
        "do not target with it."
    ),
    "better_than_baseline": (
        "Better than the transparent baseline: it ranks poor cells above not-poor ones more "
        "reliably than the baseline's per-chip statistics (AUC difference interval above 0)."
    ),
    "tied_with_baseline": (
        "No better than the transparent baseline: do not prefer this map over the baseline's "
        "per-chip statistics (e.g. night lights), which a programme can compute itself."
    ),
    "worse_than_baseline": (
        "Worse than the transparent baseline: prefer the baseline's per-chip statistics over "
        "this map (AUC difference interval below 0)."
    ),
    "better_than_random": (
        "Better than a coin flip; there is no baseline to compare with (a model package from "
        "before baselines): retrain it to see whether it beats simple statistics."
    ),
}


def verdict(
    recall: float,
    precision: float | None,
    auc: float | None,
    auc_interval: tuple[float, float] | None,
    random_recall: float | None,
    baseline_recall: float | None = None,
    baseline_auc: float | None = None,
    difference_interval: tuple[float, float] | None = None,
    prevalence: float | None = None,
) -> dict[str, str]:
    """{"judgement": code, "headline": the judgement's sentence, "sentence": the numbers in words}.

    ``auc_interval`` and ``difference_interval`` (AUC map − AUC baseline):
    (low, high) of the bootstrap, or None. ``prevalence``: the share of poor
    cells among the judged cells (what a random pick's precision is).
    """
    if recall is None or auc is None:
        code = "undefined"
    elif _no_better_than_a_random_pick(recall, precision, random_recall, prevalence):
        code = "worse_than_random"
    elif auc_interval is None or auc_interval[0] is None or auc_interval[0] <= 0.5:
        code = "no_better_than_random"
    elif baseline_auc is not None and difference_interval and difference_interval[0] is not None:
        low, high = difference_interval
        code = (
            "better_than_baseline"
            if low > 0
            else "worse_than_baseline"
            if high < 0
            else "tied_with_baseline"
        )
    else:
        code = "better_than_random"
    sentence = _numbers_in_words(
        recall, precision, auc, auc_interval, random_recall, baseline_recall, baseline_auc
    )
    if code != "worse_than_random" and _finds_fewer_than_a_coin_flip(
        recall, precision, random_recall, prevalence
    ):
        flagged = recall * prevalence / precision  # type: ignore[operator]  # both known here
        sentence += (
            f" At this threshold it calls only {_per_100(flagged)} of every 100 cells poor, so it "
            f"finds fewer poor cells than a coin flip that calls half of them poor; its poor calls "
            f"are right more often than a random pick's ({_per_100(precision)} vs "  # type: ignore[arg-type]
            f"{_per_100(prevalence)} per 100). To enrol more of the poor, train with a target "  # type: ignore[arg-type]
            "recall (TARGET_RECALL) or rank cells with povmap:target."
        )
    return {"judgement": code, "headline": JUDGEMENTS[code], "sentence": sentence}


def _no_better_than_a_random_pick(
    recall: float, precision: float | None, random_recall: float | None, prevalence: float | None
) -> bool:
    if prevalence is None:
        return random_recall is not None and recall < random_recall
    return precision is None or precision <= prevalence


def _finds_fewer_than_a_coin_flip(
    recall: float, precision: float | None, random_recall: float | None, prevalence: float | None
) -> bool:
    return (
        prevalence is not None
        and precision is not None
        and random_recall is not None
        and recall < random_recall
    )


def _numbers_in_words(
    recall: float,
    precision: float | None,
    auc: float | None,
    auc_interval: tuple[float, float] | None,
    random_recall: float | None,
    baseline_recall: float | None,
    baseline_auc: float | None,
) -> str:
    parts = []
    if recall is not None:
        compared = [f"a coin flip {_per_100(random_recall)}"] if random_recall is not None else []
        if baseline_recall is not None:
            compared.append(f"the baseline {_per_100(baseline_recall)}")
        parts.append(
            f"Of every 100 poor cells the map finds {_per_100(recall)}"
            + (f" ({', '.join(compared)})" if compared else "")
            + "."
        )
    if precision is not None:
        parts.append(f"Of every 100 cells it calls poor, {_per_100(precision)} are poor.")
    elif recall is not None:
        parts.append("It calls no cell poor at this threshold.")
    if auc is not None:
        interval = (
            f" (95 % interval {auc_interval[0]:.2f}–{auc_interval[1]:.2f})"
            if auc_interval and auc_interval[0] is not None
            else ""
        )
        versus = f"; the baseline's {baseline_auc:.2f}" if baseline_auc is not None else ""
        parts.append(
            f"Its AUC (0.5 = coin flip, 1 = perfect ranking) is {auc:.2f}{interval}{versus}."
        )
    return " ".join(parts)


def _per_100(share: float) -> str:
    return f"{round(100 * share)}"


def bootstrap_auc(
    labels: np.ndarray,
    scores: np.ndarray,
    baseline_scores: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    draws: int = DRAWS,
    seed: int = 0,
) -> dict[str, Any]:
    """95 % intervals of the AUC and of AUC(scores) − AUC(baseline_scores), by resampling.

    Cells are resampled with replacement; with ``groups`` (e.g. districts)
    whole groups are. Draws holding one class only are skipped. Returns
    {"auc": (low, high), "difference": (low, high) or None, "draws": used}.
    """
    import numpy as np
    from scipy.stats import rankdata

    labels = np.asarray(labels, dtype="int64")
    scores = np.asarray(scores, dtype="float64")
    other = None if baseline_scores is None else np.asarray(baseline_scores, dtype="float64")
    rng = np.random.default_rng(seed)
    if groups is None:
        members = [np.array([index]) for index in range(len(labels))]
    else:
        groups = np.asarray(groups).astype(str)
        members = [np.flatnonzero(groups == name) for name in np.unique(groups)]
    aucs, differences = [], []
    for _ in range(int(draws)):
        picked = rng.integers(0, len(members), len(members))
        rows = picked if groups is None else np.concatenate([members[index] for index in picked])
        sample = labels[rows]
        positives = int(sample.sum())
        if positives in (0, len(sample)):
            continue
        auc = _auc(sample, scores[rows], positives, rankdata)
        aucs.append(auc)
        if other is not None:
            differences.append(auc - _auc(sample, other[rows], positives, rankdata))
    tail = 100 * (1 - LEVEL) / 2
    if not aucs:
        return {"auc": None, "difference": None, "draws": 0}
    return {
        "auc": tuple(float(value) for value in np.percentile(aucs, [tail, 100 - tail])),
        "difference": (
            tuple(float(value) for value in np.percentile(differences, [tail, 100 - tail]))
            if differences
            else None
        ),
        "draws": len(aucs),
    }


def _auc(labels: np.ndarray, scores: np.ndarray, positives: int, rankdata: Any) -> float:
    """Mann–Whitney AUC (ties count one half), as scikit-learn's roc_auc_score."""
    ranks = rankdata(scores)
    negatives = len(labels) - positives
    return float(
        (ranks[labels == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives)
    )


# --- report blocks (plain Python: also called inside QGIS) -----------------------------------------

WARNING_JUDGEMENTS = (
    "worse_than_random",
    "no_better_than_random",
    "tied_with_baseline",
    "worse_than_baseline",
)


def verdict_section(found: dict[str, Any] | None, report: types.ModuleType) -> Any:
    """The report's first section: the judgement, the numbers in words and the rules."""
    if not found:
        return report.Section(
            "Verdict", [report.Paragraph("No verdict was computed for this run.", kind="notice")]
        )
    interval = found.get("difference_interval")
    resampled = found.get("resampled", "cells")
    details = (
        f"AUC intervals: {found.get('bootstrap_draws', 0)} bootstrap draws of the {resampled}"
        + (
            f"; AUC(map) − AUC(baseline) 95 % interval {interval[0]:+.3f} to {interval[1]:+.3f}."
            if interval
            else "."
        )
    )
    return report.Section(
        "Verdict",
        [
            report.Paragraph(
                found["headline"],
                kind="warning" if found["judgement"] in WARNING_JUDGEMENTS else "notice",
            ),
            report.Paragraph(found["sentence"]),
            report.Paragraph(details),
            report.Paragraph("How the verdict is reached (first rule that applies):"),
            report.BulletList(
                [
                    "at the map's threshold it calls no cell poor, or the cells it calls poor are "
                    "poor no more often than cells picked at random: no better than random;",
                    "95 % interval of the AUC reaching 0.5: no better than a coin flip;",
                    "95 % interval of AUC(map) − AUC(baseline) above 0: better than the baseline; "
                    "below 0: worse than the baseline; containing 0: no better than the baseline;",
                    "no baseline in the model package: better than a coin flip, not compared "
                    "with simple statistics.",
                ]
            ),
        ],
    )


CALIBRATION_TOLERANCE = 0.005  # ECE changes smaller than this are "about the same"


def calibration_change(ensemble: dict[str, Any]) -> str | None:
    """A sentence on what calibration did to these cells' expected calibration error, or None
    without the raw numbers: a calibration fitted on validation cells can make it worse here."""
    before, after = ensemble.get("ece_raw"), ensemble.get("ece")
    if before is None or after is None:
        return None
    change = f"(ECE {before:.3f} before, {after:.3f} after)"
    if after > before + CALIBRATION_TOLERANCE:
        return (
            f"On these cells the calibration made the probabilities worse calibrated {change}: "
            "fitted on the validation cells, it does not carry over to them (other districts, "
            "another survey or year). Read prob_mean here as a ranking rather than a share of poor "
            "cells, and recalibrate on cells like these."
        )
    if after < before - CALIBRATION_TOLERANCE:
        return f"On these cells the calibration brought the probabilities closer to the observed shares {change}."
    return f"On these cells the calibration changed the calibration error little {change}."


def calibration_section(
    metrics_by_model: dict[str, Any],
    figure_path: str | None,
    report: types.ModuleType,
    calibrated: bool = True,
) -> Any:
    """Brier score and expected calibration error of the ensemble (before/after) and the baseline,
    the reliability diagram and the ensemble's bins."""
    ensemble = metrics_by_model["ensemble"]
    rows = []
    if ensemble.get("ece_raw") is not None:
        rows.append(
            ["ensemble before calibration (prob_raw)", ensemble["brier_raw"], ensemble["ece_raw"]]
        )
    rows.append(["ensemble (prob_mean)", ensemble.get("brier"), ensemble.get("ece")])
    if "baseline" in metrics_by_model:
        simple = metrics_by_model["baseline"]
        rows.append(["baseline (prob_baseline)", simple.get("brier"), simple.get("ece")])
    blocks = [
        report.Paragraph(
            "A calibrated probability reads as the share of such cells that are poor: of the cells "
            "given 0.6, about 60 in 100 should be poor. Brier score: mean squared difference "
            "between probability and label (lower is better). Expected calibration error (ECE): "
            "cells put in 10 equal-width bins of probability; the cell-weighted mean gap between "
            "the bin's observed share of poor cells and its mean probability (0 = calibrated)."
        )
    ]
    if not calibrated:
        blocks.append(
            report.Paragraph(
                "The prediction layer has no prob_raw: its model package has no calibration "
                "(made before calibration was added), so prob_mean is the members' uncalibrated "
                "mean. Retrain the model to calibrate it.",
                kind="warning",
            )
        )
    sentence = calibration_change(ensemble)
    if sentence:
        blocks.append(report.Paragraph(sentence, kind="warning" if "worse" in sentence else "text"))
    blocks.append(report.Table(["probabilities", "Brier score", "ECE"], rows))
    if figure_path:
        blocks.append(
            report.Figure(
                figure_path,
                "Reliability diagram: mean predicted probability against the observed share of "
                "poor cells per bin (dot size: cells in the bin); the diagonal is perfect calibration",
                "reliability diagram",
            )
        )
    bins = ensemble.get("reliability") or []
    if bins:
        blocks.append(
            report.Table(
                ["bin", "cells", "mean prob_mean", "observed share poor"],
                [
                    [
                        f"{row['low']:.1f}–{row['high']:.1f}",
                        row["n"],
                        row["predicted"],
                        row["observed"],
                    ]
                    for row in bins
                ],
                caption="The ensemble's reliability bins (calibrated probability).",
            )
        )
    return report.Section("Calibration", blocks)
