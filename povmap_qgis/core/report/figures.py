"""Report figures drawn with matplotlib: ROC curves and confusion matrices.

Shared by ``evaluate`` and the cross-validation. Each function takes the
metric dictionaries of ``metrics.binary_metrics`` (n, tp, fp, fn, tn, auc) and
``metrics.roc_points`` curves keyed by model name; the ensemble is drawn
heavier and in black. PNGs are written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..atomic import atomic_output
from ..names import BASELINE, ENSEMBLE

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


# Okabe–Ito colours (colour-blind safe) for the members' curves.
MEMBER_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")
BASELINE_COLOUR = "#D55E00"


def save(figure: Figure, path: str) -> str:
    """Write ``figure`` as a PNG at ``path``; return the absolute path."""
    with atomic_output(path) as partial:
        figure.savefig(partial, format="png", dpi=110, bbox_inches="tight")
    return os.path.abspath(path)


def roc_figure(
    curves: Mapping[str, Any],
    metrics_by_model: Mapping[str, Any],
    members: Iterable[str],
    title: str,
) -> Figure:
    """ROC curves of ``members``, the ensemble and the baseline (when given), with a dot where each
    model's threshold falls."""
    figure, axes = _roc_axes()
    for index, name in enumerate(list(members) + [ENSEMBLE, BASELINE]):
        curve = curves.get(name)
        if not curve or name not in metrics_by_model:
            continue
        ensemble = name == ENSEMBLE
        colour = (
            "#000000"
            if ensemble
            else BASELINE_COLOUR
            if name == BASELINE
            else MEMBER_COLOURS[index % len(MEMBER_COLOURS)]
        )
        values = metrics_by_model[name]
        axes.plot(
            curve["fpr"],
            curve["tpr"],
            color=colour,
            linewidth=2.4 if ensemble else 1.3,
            linestyle="-" if ensemble else "-." if name == BASELINE else "--",
            label=f"{name} (AUC {values['auc']:.3f})",
        )
        if values["tp"] + values["fn"] and values["fp"] + values["tn"]:
            axes.plot(
                [values["fp"] / (values["fp"] + values["tn"])],
                [values["tp"] / (values["tp"] + values["fn"])],
                marker="o",
                color=colour,
                markersize=7 if ensemble else 5,
                linestyle="none",
            )
    return _finish_roc(figure, axes, title)


def reliability_figure(bins_by_model: Mapping[str, Any], title: str) -> Figure:
    """Reliability diagram: mean predicted probability against the observed share of poor cells
    per bin (``calibration.reliability_bins``), one line per model, dots sized by cell count."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.6, 5.0))
    axes = figure.subplots()
    axes.plot(
        [0, 1], [0, 1], color="#888888", linestyle=":", linewidth=1, label="perfect calibration"
    )
    colours = ("#000000", BASELINE_COLOUR, "#0072B2", "#009E73")
    for index, (label, bins) in enumerate(bins_by_model.items()):
        if not bins:
            continue
        total = max(1, sum(row["n"] for row in bins))
        colour = colours[index % len(colours)]
        axes.plot(
            [row["predicted"] for row in bins],
            [row["observed"] for row in bins],
            color=colour,
            linewidth=1.6,
            label=label,
        )
        axes.scatter(
            [row["predicted"] for row in bins],
            [row["observed"] for row in bins],
            s=[20 + 400 * row["n"] / total for row in bins],
            color=colour,
            alpha=0.6,
        )
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.01)
    axes.set_aspect("equal")
    axes.set_xlabel("predicted probability (mean in the bin)")
    axes.set_ylabel("observed share of poor cells")
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", fontsize=8)
    return figure


def fold_roc_figure(
    fold_curves: Mapping[str, Any], fold_metrics: Mapping[str, Any], title: str
) -> Figure:
    """The ensemble's ROC curve of each fold: ``fold_curves`` and ``fold_metrics`` keyed by fold label."""
    return overlaid_roc_figure(
        {
            fold: dict(curve, auc=fold_metrics[fold]["auc"])
            for fold, curve in fold_curves.items()
            if curve
        },
        title,
    )


def overlaid_roc_figure(curves: Mapping[str, Any], title: str) -> Figure:
    """One ROC curve per label (folds, or the runs povmap:runs compares): ``curves`` maps a label
    to ``{fpr, tpr, auc}``; colours repeat with another line style after the seventh."""
    figure, axes = _roc_axes()
    for index, (label, curve) in enumerate(curves.items()):
        axes.plot(
            curve["fpr"],
            curve["tpr"],
            color=MEMBER_COLOURS[index % len(MEMBER_COLOURS)],
            linestyle=("-", "--", "-.")[index // len(MEMBER_COLOURS) % 3],
            linewidth=1.5,
            label=f"{label} (AUC {curve['auc']:.3f})",
        )
    return _finish_roc(figure, axes, title)


def _roc_axes() -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.6, 5.0))
    axes = figure.subplots()
    axes.plot(
        [0, 1], [0, 1], color="#888888", linestyle=":", linewidth=1, label="random guess (AUC 0.5)"
    )
    return figure, axes


def _finish_roc(figure: Figure, axes: Axes, title: str) -> Figure:
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.01)
    axes.set_aspect("equal")
    axes.set_xlabel("false positive rate (not poor, predicted poor)")
    axes.set_ylabel("true positive rate = recall")
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    return figure


def confusion_figure(metrics_by_model: Mapping[str, Any], members: Iterable[str]) -> Figure:
    """One confusion matrix per member and the ensemble: observed rows, predicted columns, counts and shares."""
    from matplotlib.figure import Figure

    names = list(members) + [ENSEMBLE]
    figure = Figure(figsize=(2.7 * len(names) + 0.4, 3.0))
    for axes, name in zip(figure.subplots(1, len(names), squeeze=False)[0], names, strict=True):
        values = metrics_by_model[name]
        matrix = [[values["tp"], values["fn"]], [values["fp"], values["tn"]]]
        total = max(1, values["n"])
        largest = max(max(row) for row in matrix)
        axes.imshow(matrix, cmap="Blues", vmin=0, vmax=max(1, largest))
        for row in range(2):
            for column in range(2):
                count = matrix[row][column]
                axes.text(
                    column,
                    row,
                    f"{count}\n{count / total:.0%}",
                    ha="center",
                    va="center",
                    fontsize=10,
                    color="white" if count > 0.6 * largest else "black",
                )
        axes.set_xticks([0, 1], ["poor", "not poor"])
        axes.set_yticks([0, 1], ["poor", "not poor"])
        axes.set_xlabel("predicted")
        axes.set_ylabel("observed")
        axes.set_title(name, fontsize=10, fontweight="bold" if name == ENSEMBLE else "normal")
    figure.tight_layout()
    return figure
