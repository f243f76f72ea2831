"""The verification sample's design: strata, allocation, the draw, and its record.

Strata. A prediction layer: predicted class (``pred``) × terciles of the width
of the cell's interval (``prob_high − prob_low``, within each class; cells
without a width count as the widest): ``poor_narrow`` … ``not_poor_wide``.
Without ``prob_low``/``prob_high`` (an older model): the predicted class only.
A targeting output (a ``selected`` field): ``selected`` × predicted class.

Allocation: proportional with a minimum per stratum. Each stratum first gets
``MIN_PER_STRATUM`` cells (all of them when it has fewer), then the rest of
the sample goes one cell at a time to the stratum furthest below its
proportional share ``n · N_h / N``. The minimum gives small strata (the
poor cells the map is least sure of) enough visits for an interval; the
estimators weight every visited cell by ``N_h / n_h`` so the minimum does not
bias the estimates.

Sample size: ``SAMPLE_SIZE``, or from ``TARGET_HALF_WIDTH`` h of the overall
accuracy's 95 % interval under simple random sampling,
``n0 = z² p (1 − p) / h²`` with ``p`` the accuracy the calibrated
probabilities expect (the mean of ``prob_mean`` over predicted-poor cells and
of ``1 − prob_mean`` over the others), corrected for the number of cells N:
``n = n0 / (1 + (n0 − 1) / N)``, rounded up. Stratification by class and
uncertainty usually narrows the interval further.

The draw: within each stratum (in name order) a random permutation of its
cells from ``numpy.random.default_rng(SEED)``; with ``MIN_DISTANCE`` a
candidate closer than that (between cell centres, in the layer's units)
to a cell already drawn is passed over. Inclusion probability
``π = n_h / N_h`` and weight ``1 / π`` are those of a stratified random sample;
passing over neighbours makes that an approximation, which holds while the
distance is small against the strata's extent (a stratum that cannot be
filled is reported).

The record: the design (strata with N_h and n_h, seed, sampled ids) is stored in
the sample layer's metadata, with a sha256 of the sampled cells, their strata
and weights; the results step recomputes it and refuses a layer whose weights,
strata or cells were edited.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import PovmapInputError
from .estimators import Z95

DESIGN_FORMAT = "povmap-verification-design"
DESIGN_VERSION = "1.0"
DESIGN_METADATA = "povmap_verification_design"  # layer metadata item (JSON)
DESIGN_RECORDED = "povmap:verification_design"  # as povmap_layer_metadata names it
MIN_PER_STRATUM = 5
TERCILES = ("narrow", "middle", "wide")


def strata_labels(
    predicted: np.ndarray, width: np.ndarray | None = None, selected: np.ndarray | None = None
) -> np.ndarray:
    """Each cell's stratum name (see the module doc); ``predicted`` 1 = poor."""
    predicted = np.asarray(predicted, dtype="int64")
    classes = np.where(predicted == 1, "poor", "not_poor").astype(object)
    if selected is not None:
        chosen = np.asarray(selected, dtype="int64") == 1
        return np.where(chosen, "selected_", "not_selected_").astype(object) + classes
    if width is None:
        return classes
    width = np.asarray(width, dtype="float64")
    labels = classes.copy()
    for name in ("poor", "not_poor"):
        inside = classes == name
        known = inside & np.isfinite(width)
        if not known.any():
            labels[inside] = f"{name}_{TERCILES[-1]}"
            continue
        first, second = np.quantile(width[known], [1 / 3, 2 / 3])
        tercile = np.where(width <= first, 0, np.where(width <= second, 1, 2))
        tercile = np.where(np.isfinite(width), tercile, 2)
        labels[inside] = [f"{name}_{TERCILES[t]}" for t in tercile[inside]]
    return labels


def allocate(
    sizes: Mapping[str, int], sample_size: int, minimum: int = MIN_PER_STRATUM
) -> dict[str, int]:
    """{stratum: n_h}: proportional with a minimum per stratum (module doc); sums to
    ``sample_size`` unless the minimums need more (then their sum) or the cells are fewer."""
    total = sum(sizes.values())
    allocation = {name: min(size, minimum) for name, size in sizes.items()}
    target = min(max(sample_size, sum(allocation.values())), total)
    ideal = {name: sample_size * size / total for name, size in sizes.items()}
    while sum(allocation.values()) < target:
        name = max(
            (name for name in sorted(sizes) if allocation[name] < sizes[name]),
            key=lambda name: ideal[name] - allocation[name],
        )
        allocation[name] += 1
    return allocation


def expected_accuracy(probability: np.ndarray, predicted: np.ndarray) -> float:
    """The overall accuracy the calibrated probabilities expect."""
    probability = np.asarray(probability, dtype="float64")
    right = np.where(np.asarray(predicted) == 1, probability, 1 - probability)
    return float(np.mean(right))


def sample_size_for_half_width(half_width: float, accuracy: float, cells: int) -> int:
    """Cells to visit for a 95 % interval of ± ``half_width`` on an accuracy near ``accuracy``."""
    accuracy = min(max(accuracy, 0.05), 0.95)
    first = Z95**2 * accuracy * (1 - accuracy) / half_width**2
    return int(min(cells, math.ceil(first / (1 + (first - 1) / cells))))


def draw(
    strata: np.ndarray,
    allocation: Mapping[str, int],
    seed: int,
    centres: np.ndarray | None = None,
    min_distance: float | None = None,
) -> tuple[np.ndarray, dict[str, int]]:
    """(indexes of the drawn cells, {stratum: cells drawn}); see the module doc."""
    strata = np.asarray(strata)
    rng = np.random.default_rng(seed)
    chosen: list = []
    drawn = {}
    for name in sorted(allocation):
        candidates = rng.permutation(np.flatnonzero(strata == name))
        wanted = allocation[name]
        taken: list[int] = []
        for index in candidates:
            if len(taken) == wanted:
                break
            if min_distance and chosen + taken:
                others = centres[np.asarray(chosen + taken)]  # type: ignore[index]  # given with min_distance
                if np.min(np.hypot(*(others - centres[index]).T)) < min_distance:  # type: ignore[index]
                    continue
            taken.append(int(index))
        chosen += taken
        drawn[name] = len(taken)
    return np.asarray(chosen, dtype="int64"), drawn


def sample_digest(ids: Sequence[Any], strata: Sequence[Any], weights: Sequence[Any]) -> str:
    """sha256 of the sampled cells, their strata and weights (order-free)."""
    rows = sorted(
        f"{int(cell)}|{stratum}|{float(weight):.9g}"
        for cell, stratum, weight in zip(ids, strata, weights, strict=True)
    )
    return hashlib.sha256("\n".join(rows).encode("utf-8")).hexdigest()


def design_record(
    table: list[dict[str, Any]], seed: int, id_field: str, extra: Mapping[str, Any]
) -> dict[str, Any]:
    """The design as stored in the sample layer's metadata.

    ``table``: [{"stratum", "cells", "sampled", ...}]; ``extra``: what the results need
    besides (kind, map shares, ids digest, settings).
    """
    return {
        "format": DESIGN_FORMAT,
        "version": DESIGN_VERSION,
        "seed": seed,
        "id_field": id_field,
        "strata": table,
        **extra,
    }


def read_design(
    metadata: Mapping[str, str], name: str, parameter: str = "SAMPLE"
) -> dict[str, Any]:
    """The design recorded in a sample layer's metadata, or a message saying what the layer is not."""
    text = metadata.get(DESIGN_RECORDED)
    if not text:
        raise PovmapInputError(
            parameter,
            f"the layer '{name}' holds no verification design (its metadata has no "
            f"{DESIGN_METADATA}); use the sample written by Draw a verification sample "
            "(povmap:verificationsample), or the copy QField edited.",
        )
    try:
        design = json.loads(text)
    except ValueError:
        design = None
    if not isinstance(design, dict) or design.get("format") != DESIGN_FORMAT:
        raise PovmapInputError(parameter, f"the verification design of '{name}' is damaged.")
    if design.get("version") != DESIGN_VERSION:
        raise PovmapInputError(
            parameter,
            f"the verification design of '{name}' has version {design.get('version')}; this "
            f"plugin reads {DESIGN_VERSION}. Update the plugin.",
        )
    return design


def check_design(
    design: Mapping[str, Any],
    ids: Sequence[Any],
    strata: Sequence[Any],
    weights: Sequence[Any],
    name: str | None,
    parameter: str = "SAMPLE",
    probabilities: Sequence[Any] | None = None,
) -> None:
    """Refuse a sample whose cells, strata, weights (or inclusion probabilities) differ from its
    recorded design."""
    sizes = {row["stratum"]: row for row in design["strata"]}
    problems = []
    if probabilities is not None:
        for cell, weight, probability in zip(ids, weights, probabilities, strict=True):
            if not np.isfinite(probability) or abs(probability * weight - 1) > 1e-6:
                problems.append(
                    f"cell {cell}: inclusion_probability {probability:g} is not 1 / weight"
                )
    for stratum in sorted(set(strata)):
        if stratum not in sizes:
            problems.append(f"stratum '{stratum}' is not in the design")
    for cell, stratum, weight in zip(ids, strata, weights, strict=True):
        row = sizes.get(stratum)
        if row is None:
            continue
        expected = row["cells"] / row["sampled"]
        if not np.isfinite(weight) or abs(weight - expected) > 1e-6 * expected:
            problems.append(f"cell {cell}: weight {weight:g} instead of {expected:g}")
    if not problems and sample_digest(ids, strata, weights) != design.get("sample_sha256"):
        problems.append("the sampled cells or their strata differ from those drawn")
    if problems:
        shown = "; ".join(problems[:5]) + (
            f"; … ({len(problems)} in all)" if len(problems) > 5 else ""
        )
        raise PovmapInputError(
            parameter,
            f"the sample '{name}' no longer matches the design it was drawn with ({shown}). "
            "Weights, strata and cells must stay as drawn (only the visit fields may be filled in): "
            "use the layer as Draw a verification sample wrote it, or draw a new sample.",
        )
