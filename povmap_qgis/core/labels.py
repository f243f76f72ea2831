"""The labelling rule: which cells are poor. One home for the rule and its sentence.

The rule is strict on both sides: with ``poor_below`` a cell is poor when its median
score is below the cutoff; otherwise when it is above. A median equal to the cutoff
is never poor (the Simple Poverty Scorecard's 0–18 / 19+ split with cutoff 19).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def poor_labels(median_scores: Any, cutoff: float, poor_below: bool = True) -> np.ndarray:
    """1 where the median score makes the cell poor, else 0 (int32)."""
    medians = np.asarray(median_scores, dtype=float)
    poor = medians < cutoff if poor_below else medians > cutoff
    return poor.astype("int32")


def label_sentence(cutoff: Any, poor_below: bool = True) -> str:
    """The rule in words, for reports, manifests and layer metadata."""
    side = "below" if poor_below else "above"
    return f"1 = chronically poor: the cell's median score is {side} the cutoff {cutoff} (strictly)"


def poor_below_from_metadata(value: Any) -> bool:
    """``poor_below`` as stored in layer metadata (text) or a manifest (bool); default True."""
    if value is None or value == "":
        return True
    return str(value).strip().lower() in ("true", "1", "yes")
