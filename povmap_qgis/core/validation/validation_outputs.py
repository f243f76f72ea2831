"""What ``evaluate`` and the cross-validation write alike: outcomes, metrics JSON + tidy CSV, the hit/miss style.

Plain Python (numpy imported where needed), also imported inside QGIS.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .. import strict_json
from ..atomic import atomic_output
from ..names import BASELINE, ENSEMBLE, RANDOM

if TYPE_CHECKING:
    import numpy as np


# outcome -> (legend label, observed label, ensemble prediction); labels as in resources/styles/hitmiss.qml
OUTCOMES = {
    "hit": ("Hit: poor, predicted poor", 1, 1),
    "miss": ("Miss: poor, predicted not poor", 1, 0),
    "false_alarm": ("False alarm: not poor, predicted poor", 0, 1),
    "correct_rejection": ("Correct rejection: not poor, predicted not poor", 0, 0),
}


def model_names(members: Iterable[str], metrics_by_model: Mapping[str, Any]) -> list[str]:
    """Table order: members, ensemble, baseline (where judged), random."""
    return (
        list(members) + [ENSEMBLE] + ([BASELINE] if BASELINE in metrics_by_model else []) + [RANDOM]
    )


def metrics_csv_path(metrics_path: str) -> str:
    """The tidy CSV written beside the metrics JSON: same name, ``.csv``."""
    return os.path.splitext(metrics_path)[0] + ".csv"


def outcomes(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """hit, miss, false_alarm or correct_rejection of each cell (numpy arrays of 0/1)."""
    import numpy as np

    return np.select(
        [
            (labels == 1) & (predicted == 1),
            (labels == 1) & (predicted == 0),
            (labels == 0) & (predicted == 1),
        ],
        ["hit", "miss", "false_alarm"],
        "correct_rejection",
    )


@contextlib.contextmanager
def metrics_files(
    metrics_path: str,
    document: dict[str, Any],
    csv_columns: Sequence[str],
    csv_rows: Iterable[Sequence[Any]],
) -> Iterator[None]:
    """Write the metrics JSON (strict: no NaN) and the tidy CSV beside it under temporary names.

    Both are published when the ``with`` block ends without an error, so
    whatever the block writes (a layer) appears together with them or not at all.
    """
    with (
        atomic_output(metrics_path) as json_partial,
        atomic_output(metrics_csv_path(metrics_path)) as csv_partial,
    ):
        with open(json_partial, "w", encoding="utf-8") as handle:
            strict_json.dump(document, handle, None, "the metrics JSON", indent=1)
        with open(csv_partial, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(csv_columns)
            writer.writerows(csv_rows)
        yield


@contextlib.contextmanager
def hitmiss_style_with_counts(
    qml_path: str | None, counts: Mapping[str, int]
) -> Iterator[str | None]:
    """A temporary copy of the hit/miss style whose legend labels end with each outcome's count; None without a style."""
    if not qml_path:
        yield None
        return
    with open(qml_path, encoding="utf-8") as handle:
        qml = handle.read()

    def with_count(match: re.Match[str]) -> str:
        return f"{match.group(1)}{match.group(2)} ({counts.get(match.group(4), 0)}){match.group(3)}"

    qml = re.sub(
        r'(<category\b[^>]*?\blabel=")([^"]*)("[^>]*?\bvalue="(hit|miss|false_alarm|correct_rejection)")',
        with_count,
        qml,
    )
    handle, path = tempfile.mkstemp(prefix="povmap-hitmiss-", suffix=".qml")  # type: ignore[assignment]  # a descriptor now
    with os.fdopen(handle, "w", encoding="utf-8") as stream:  # type: ignore[call-overload]
        stream.write(qml)
    try:
        yield path
    finally:
        os.remove(path)
