"""Does a prediction area look like what the model learned from? (run history, issue 15).

The reference of the training distribution is the one the ``out_of_range``
flag uses (one home, written at train time by ``core.model.baseline``): the per-chip
statistics of each input band (mean, max, std, centre, after the input's
transform) over the training cells, in the manifest's
``baseline.training_range``::

    "training_range": {"percentiles": [1, 99], "low": [...], "high": [...],
                       "quantiles": [0.0, 0.1, ..., 1.0],
                       "values": [[q0, ..., q10] per statistic],
                       "shares": [[training share of each bin] per statistic]}

The prediction cells' statistics are binned by those values and compared with
the training shares by the population stability index (PSI); an input's score
is its worst statistic (over its bands). ``predict`` logs the PSI per input and,
above ``PSI_WARNING`` (0.25, the usual "major shift"), warns; the run history
records them as ``drift/<input>``. Packages without the reference (format 1.0,
or 1.1 from before it) are checked for nothing and say so; the step is never
stopped by this check.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


PSI_WARNING = 0.25
SAMPLE_CELLS = 256
QUANTILES = [round(index / 10, 1) for index in range(11)]
NO_REFERENCE = "no training reference in the model package: drift not checked"
_FLOOR = 1e-4


def drift_scores(
    model_path: str, chips_path: str, sample_cells: int = SAMPLE_CELLS
) -> tuple[dict[str, float], str]:
    """({input: PSI}, sentence) for (a sample of) the chips at ``chips_path``; ({}, why) without a reference."""
    try:
        with open(os.path.join(model_path, "manifest.json"), encoding="utf-8") as handle:
            manifest = json.load(handle)
    except (OSError, ValueError):
        return {}, "no model manifest to compare with"
    if reference_of(manifest) is None:
        return {}, NO_REFERENCE
    import numpy as np

    from ..chips.chip_features import chip_features, feature_inputs
    from ..chips.chip_store import ChipStore

    store = ChipStore(chips_path)
    try:
        count = min(len(store), sample_cells)
        rows = np.unique(np.linspace(0, len(store) - 1, count).astype(int))
        features = chip_features(
            store, rows, manifest["normalisation"], feature_inputs(manifest["baseline"])
        )
    finally:
        store.close()
    scores = input_scores(manifest, features)
    return scores, sentence(scores)


def reference_of(manifest: Mapping[str, Any]) -> dict[str, Any] | None:
    """The training distribution's reference in ``baseline.training_range``; None without one."""
    reference = (manifest.get("baseline") or {}).get("training_range") or {}
    if not all(key in reference for key in ("quantiles", "values", "shares")):
        return None
    return reference


def input_scores(manifest: Mapping[str, Any], features: Any) -> dict[str, float]:
    """{input: PSI} of per-chip statistics ``features`` (``chip_features.chip_features``) against the reference.

    An input's score is its worst statistic; {} without a reference.
    """
    return scores_of_counts(manifest, bin_counts(manifest, features))


def bin_counts(manifest: Mapping[str, Any], features: Any) -> list[Any]:
    """Per statistic, the count of ``features``' finite values in each bin of the reference
    (None for a statistic without one): counts of windows of cells add up to the whole's."""
    import numpy as np

    reference = reference_of(manifest)
    if reference is None:
        return []
    features = np.asarray(features, dtype="float64")
    counts: list[Any] = []
    for column in range(len(manifest["baseline"]["features"])):
        edges = reference["values"][column]
        counts.append(None if edges is None else _counts(features[:, column], edges))
    return counts


def summed_counts(first: list[Any], second: list[Any]) -> list[Any]:
    """``bin_counts`` of two sets of cells added up ([] counts as nothing)."""
    if not first:
        return second
    return [a if b is None else a + b for a, b in zip(first, second, strict=True)]


def scores_of_counts(manifest: Mapping[str, Any], counts: list[Any]) -> dict[str, float]:
    """{input: PSI} from ``bin_counts`` (summed over windows); {} without a reference."""
    import numpy as np

    reference = reference_of(manifest)
    if reference is None or not counts:
        return {}
    scores: dict[str, float] = {}
    for column, feature in enumerate(manifest["baseline"]["features"]):
        shares = reference["shares"][column]
        if counts[column] is None or shares is None:
            continue
        expected = np.asarray(shares, dtype="float64")
        score = _stability(counts[column], expected)
        scores[feature["input"]] = max(score, scores.get(feature["input"], 0.0))
    return scores


def sentence(scores: Mapping[str, float]) -> str:
    if not scores:
        return NO_REFERENCE
    worst = max(scores.values())
    return f"PSI per input {_listed(scores)} (warning above {PSI_WARNING}; worst {worst:.3f})"


def bin_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of the finite ``values`` in each bin between consecutive ``edges`` (searchsorted, right)."""
    counts = _counts(values, edges)
    total = counts.sum()
    return counts / total if total else counts.astype("float64")


def _counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """How many of the finite ``values`` fall in each bin between consecutive ``edges``."""
    import numpy as np

    values = np.asarray(values, dtype="float64")
    values = values[np.isfinite(values)]
    bins = len(edges) - 1
    if bins < 1:
        return np.zeros(0, dtype="int64")
    inner = np.asarray(edges, dtype="float64")[1:-1]
    return np.bincount(np.searchsorted(inner, values, side="right"), minlength=bins)[:bins]


def population_stability(
    values: np.ndarray, edges: np.ndarray, levels: np.ndarray, expected: np.ndarray | None = None
) -> float:
    """PSI of ``values`` against a reference given as values ``edges`` at quantile ``levels``.

    ``expected``: the reference's own share in each bin (ties between edges make
    some bins empty); default: the differences of ``levels``.
    """
    import numpy as np

    if expected is None:
        expected = np.diff(np.asarray(levels, dtype="float64"))
    return _stability(_counts(values, edges), np.asarray(expected, dtype="float64"))


def _stability(counts: np.ndarray, expected: np.ndarray) -> float:
    """PSI of binned ``counts`` against the reference's ``expected`` shares."""
    import numpy as np

    total = int(np.sum(counts))
    if total == 0 or expected.size == 0:
        return 0.0
    actual = np.maximum(np.asarray(counts) / total, _FLOOR)
    expected = np.maximum(expected, _FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


NOISY_BELOW_CELLS = 100  # with 10 bins, fewer cells leave a few per bin: PSI is noisy


def warnings(scores: Mapping[str, float], cells: int | None = None) -> list[str]:
    """One warning naming every input above ``PSI_WARNING`` (none when all are below).

    ``cells``: how many cells the scores come from (a small sample is said to be noisy).
    """
    shifted = sorted(
        (name, score)
        for name, score in scores.items()
        if math.isfinite(score) and score > PSI_WARNING
    )
    if not shifted:
        return []
    if len(shifted) == 1:
        name, score = shifted[0]
        which = f"Input '{name}': the chips of this area differ from the training cells' (PSI {score:.2f} > {PSI_WARNING})"
    else:
        listed = ", ".join(f"'{name}' (PSI {score:.2f})" for name, score in shifted[:-1])
        name, score = shifted[-1]
        which = (
            f"Inputs {listed} and '{name}' (PSI {score:.2f}): the chips of this area differ from "
            f"the training cells' (PSI > {PSI_WARNING})"
        )
    noisy = (
        f" These scores come from only {cells} cells, where the PSI is noisy (below about "
        f"{NOISY_BELOW_CELLS} cells)."
        if cells is not None and cells < NOISY_BELOW_CELLS
        else ""
    )
    return [
        f"{which}, so the model extrapolates here: check the cells with out_of_range = 1 "
        "(style 'outside the training range') before trusting them, and, if you can, survey and "
        f"train on cells like these.{noisy}"
    ]


def _listed(scores: Mapping[str, float]) -> str:
    return ", ".join(f"{name} {score:.3f}" for name, score in sorted(scores.items())) or "none"
