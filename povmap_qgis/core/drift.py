"""Does a prediction area look like what the model learned from? (run history, issue 15).

A model package may carry a reference of its training distribution: per input
and band, values at fixed quantiles of the training chips::

    "training_reference": {"quantiles": [0.0, 0.1, ..., 1.0],
                           "inputs": {"nightlights": [[q0, q1, ..., q10]], ...}}

(one list per band). The prediction chips are binned by those values and
compared with the training shares by the population stability index (PSI);
an input's score is its worst band. Above ``PSI_WARNING`` (0.25, the usual
"major shift") a warning says so. Packages without a reference are checked
for nothing and say so; the step is never stopped by this check.
"""

import json
import math
import os

PSI_WARNING = 0.25
SAMPLE_CELLS = 256
_FLOOR = 1e-4


def drift_scores(model_path, chips_path):
    """({input: PSI}, sentence) for the chips at ``chips_path``; ({}, why) when there is no reference."""
    try:
        with open(os.path.join(model_path, "manifest.json"), encoding="utf-8") as handle:
            manifest = json.load(handle)
    except (OSError, ValueError):
        return {}, "no model manifest to compare with"
    reference = manifest.get("training_reference")
    if not reference:
        return {}, "no training reference in the model package: drift not checked"
    try:
        levels = [float(level) for level in reference["quantiles"]]
        inputs = reference["inputs"]
    except (KeyError, TypeError, ValueError):
        return {}, "the package's training reference is in a form this version does not read"
    import numpy as np

    from .chip_store import ChipStore

    store = ChipStore(chips_path)
    try:
        rows = np.linspace(0, len(store) - 1, min(len(store), SAMPLE_CELLS)).astype(int)
        scores = {}
        for name, bands in inputs.items():
            if name not in store.input_names or not bands:
                continue
            chips = np.asarray(store.batch_of(name, np.unique(rows)), dtype="float64")
            scores[name] = max(
                population_stability(chips[..., band].ravel(), edges, levels)
                for band, edges in enumerate(bands)
            )
    finally:
        store.close()
    worst = max(scores.values()) if scores else 0.0
    return (
        scores,
        f"PSI per input {_listed(scores)} (warning above {PSI_WARNING}; worst {worst:.3f})",
    )


def population_stability(values, edges, levels):
    """PSI of ``values`` against a reference given as values ``edges`` at quantile ``levels``."""
    import numpy as np

    values = values[np.isfinite(values)]
    expected = np.diff(np.asarray(levels, dtype="float64"))
    if values.size == 0 or expected.size == 0:
        return 0.0
    inner = np.asarray(edges, dtype="float64")[1:-1]
    counts = np.bincount(np.searchsorted(inner, values, side="right"), minlength=expected.size)
    actual = np.maximum(counts[: expected.size] / values.size, _FLOOR)
    expected = np.maximum(expected, _FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def warnings(scores):
    return [
        f"Input '{name}': the imagery of this area differs from what the model learned from "
        f"(PSI {score:.2f} > {PSI_WARNING}); treat its predictions with care."
        for name, score in sorted(scores.items())
        if math.isfinite(score) and score > PSI_WARNING
    ]


def _listed(scores):
    return ", ".join(f"{name} {score:.3f}" for name, score in sorted(scores.items())) or "none"
