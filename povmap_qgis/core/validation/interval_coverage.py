"""How often intervals hold what they claim: per reliability bin and per district.

Per bin, as ``calibration.interval_coverage`` (a cell's interval holds its reliability
bin's observed share poor) — in cross-validation within each fold: each fold's model against
the bins of its own held-out districts' cells, as an evaluation judges one model. Pooling
every fold's cells into one set of bins cannot see how a new district differs: each fold's
calibration was fitted on the other folds' districts, so in a bin fed by all folds their
districts' shifts against their calibrations cancel (an interval without any district shift
holds 99 % of such pooled bins on a simulation where it holds 65 % of each fold's; see
docs/trust.md); that pooled figure is kept beside it (``pooled_coverage``). Per district,
the district interval (``intervals.district_intervals``: its cells' bounds averaged, the
sampling error of a share added) holds its observed share poor; both against the nominal
level, beside the members'-spread interval's when given, with a warning for a check more
than ``SHORT_BY`` short. Cross-validation (per fold, out of fold) and evaluation
(``TRUTH``) call ``coverage``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ..model import calibration
from ..model.intervals import district_intervals
from ..model.training_settings import DEFAULT_NOMINAL

SHORT_BY = 0.05  # coverage this far below nominal earns a warning


def district_coverage(
    labels: ArrayLike,
    probability: ArrayLike,
    low: ArrayLike,
    high: ArrayLike,
    districts: ArrayLike,
    nominal: float = DEFAULT_NOMINAL,
) -> dict[str, Any]:
    """How often a district's interval holds its observed share poor.

    {"nominal", "coverage", "districts", "mean_width", "table": [{"district", "cells",
    "observed", "share", "low", "high", "covered"}]}.
    """
    labels = np.asarray(labels, dtype="float64")
    districts = np.asarray(districts).astype(str)
    found = district_intervals(probability, low, high, districts, nominal=nominal)
    table = []
    for name, row in found.items():
        observed = float(labels[districts == name].mean())
        table.append(
            dict(
                row,
                district=name,
                observed=observed,
                covered=bool(row["low"] <= observed <= row["high"]),
            )
        )
    return {
        "nominal": nominal,
        "coverage": float(np.mean([row["covered"] for row in table])) if table else None,
        "districts": len(table),
        "mean_width": float(np.mean([row["high"] - row["low"] for row in table]))
        if table
        else None,
        "table": table,
    }


def coverage(
    labels: ArrayLike,
    probability: ArrayLike,
    low: ArrayLike,
    high: ArrayLike,
    districts: ArrayLike | None,
    nominal: float,
    spread: tuple[ArrayLike, ArrayLike] | None = None,
    folds: ArrayLike | None = None,
) -> dict[str, Any]:
    """Both coverage checks of intervals, beside the members'-spread interval's.

    ``calibration.interval_coverage``'s dict (per bin: a cell's interval holds its
    reliability bin's observed share poor; with ``folds``, its fold's bin's) with its
    ``nominal`` set, ``binned_within`` ("fold" or "all cells") and, with ``folds``,
    ``pooled_coverage`` (every fold's cells in one set of bins), plus
    ``districts`` (``district_coverage``: a district's interval holds its observed
    share poor; None without districts), ``spread`` ({"coverage", "mean_width",
    "district_coverage", "district_width"} of the members'-spread interval, when
    ``spread`` = (low, high) is given) and ``warnings`` (sentences, a check more
    than ``SHORT_BY`` below nominal).
    """
    found = calibration.interval_coverage(labels, probability, low, high, groups=folds)
    found["nominal"] = float(nominal)
    found["binned_within"] = "all cells" if folds is None else "fold"
    if folds is not None:
        found["pooled_coverage"] = calibration.interval_coverage(labels, probability, low, high)[
            "coverage"
        ]
    found["districts"] = (
        None
        if districts is None
        else district_coverage(labels, probability, low, high, districts, nominal)
    )
    if spread is not None:
        old = calibration.interval_coverage(labels, probability, *spread, groups=folds)
        old_districts = (
            None
            if districts is None
            else district_coverage(labels, probability, *spread, districts, nominal)
        )
        found["spread"] = {
            "coverage": old["coverage"],
            "mean_width": old["mean_width"],
            "district_coverage": None if old_districts is None else old_districts["coverage"],
            "district_width": None if old_districts is None else old_districts["mean_width"],
        }
    found["warnings"] = coverage_warnings(found)
    return found


def coverage_warnings(found: Mapping[str, Any]) -> list[str]:
    """Sentences for each check whose coverage lies more than ``SHORT_BY`` below nominal."""
    nominal = found["nominal"]
    checks = [("cells (per reliability bin)", found.get("coverage"))]
    if found.get("districts"):
        checks.append(("districts", found["districts"]["coverage"]))
    return [
        f"prob_low–prob_high hold their share poor for {value:.0%} of the {what}, more than "
        f"{SHORT_BY * 100:.0f} points short of the nominal {nominal:.0%}: read the intervals as "
        "too narrow here"
        for what, value in checks
        if value is not None and value < nominal - SHORT_BY
    ]
