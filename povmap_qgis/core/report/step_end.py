"""How a step with an HTML report ends (target, districtestimates, verificationresults): the paths of its outputs
and its time in the summary, the report written when one is asked for, progress 100 and the
headline."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..progress import Reporter


def end_step(
    summary: dict[str, Any],
    outputs: Mapping[str, str],
    started: float,
    report_path: str | None,
    report_document: Callable[[dict[str, Any]], dict[str, Any]],
    headline: Callable[[dict[str, Any]], str],
    reporter: Reporter,
) -> dict[str, Any]:
    """Add ``outputs`` ({summary key: path}, made absolute) and the ``seconds`` since
    ``started`` to ``summary``; write ``report_document(summary)`` as the HTML report at
    ``report_path`` (None: the caller writes it, e.g. inside QGIS with the maps it drew);
    report progress 100 and ``headline(summary)``. Returns ``summary``."""
    summary.update(
        {key: os.path.abspath(path) for key, path in outputs.items()},
        seconds=round(time.monotonic() - started, 2),
    )
    if report_path:
        from .page import write_report

        write_report(report_path, **report_document(summary))
        summary["report"] = os.path.abspath(report_path)
    reporter.progress(100)
    reporter.info(headline(summary))
    return summary
