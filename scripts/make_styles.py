#!/usr/bin/env python3
"""Write the .qml styles of resources/styles/ with QGIS's own renderer classes.

Run with the project's venv (it sees PyQGIS): ``.venv/bin/python scripts/make_styles.py``.
The styles are committed; this script is how they were made and how to remake
them after a change. Colours: the training grid's orange/purple for poor/not
poor (ColorBrewer PuOr, colour-blind safe), the Okabe–Ito palette for hit/miss.
"""

import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from qgis.core import (
    QgsApplication,
    QgsCategorizedSymbolRenderer,
    QgsClassificationEqualInterval,
    QgsFillSymbol,
    QgsGradientColorRamp,
    QgsGraduatedSymbolRenderer,
    QgsPalLayerSettings,
    QgsRendererCategory,
    QgsRendererRange,
    QgsRuleBasedRenderer,
    QgsTextBufferSettings,
    QgsTextFormat,
    QgsVectorLayer,
    QgsVectorLayerSimpleLabeling,
)
from qgis.PyQt.QtGui import QColor

STYLES = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "resources", "styles"
)
OUTLINE = "60,60,60,110"
POOR, NOT_POOR = "#e66101", "#5e3c99"
# the uncertainty style: width of the interval of the calibrated probability (no extra field)
UNCERTAINTY_WIDTH = '"prob_high" - "prob_low"'
OUTCOMES = [  # value, legend label, colour (Okabe–Ito)
    ("hit", "Hit: poor, predicted poor", "#009e73"),
    ("miss", "Miss: poor, predicted not poor", "#d55e00"),
    ("false_alarm", "False alarm: not poor, predicted poor", "#e69f00"),
    ("correct_rejection", "Correct rejection: not poor, predicted not poor", "#56b4e9"),
]


def fill(color, outline=OUTLINE, style="solid"):
    return QgsFillSymbol.createSimple(
        {"color": color, "outline_color": outline, "outline_width": "0.1", "style": style}
    )


def layer(fields):
    spec = "&".join(f"field={name}:{kind}" for name, kind in fields)
    return QgsVectorLayer(f"Polygon?crs=EPSG:32642&{spec}", "style", "memory")


def categorized(field, categories, opacity=0.85):
    renderer = QgsCategorizedSymbolRenderer(
        field,
        [QgsRendererCategory(value, fill(color), label) for value, label, color in categories],
    )
    return renderer, opacity


def graduated(field, bounds, colours, labels, opacity=0.85):
    ranges = [
        QgsRendererRange(low, high, fill(color), label)
        for (low, high), color, label in zip(bounds, colours, labels, strict=True)
    ]
    renderer = QgsGraduatedSymbolRenderer(field, ranges)
    renderer.setClassificationMethod(QgsClassificationEqualInterval())
    renderer.setSourceColorRamp(QgsGradientColorRamp(QColor(colours[0]), QColor(colours[-1])))
    return renderer, opacity


def district_estimates():
    """Rule-based: publishable districts graduated by estimate, the others grey and hatched."""
    root = QgsRuleBasedRenderer.Rule(None)
    bounds = [(0.0, 0.1), (0.1, 0.2), (0.2, 0.3), (0.3, 0.45), (0.45, 0.6), (0.6, 1.0001)]
    colours = ["#fef0d9", "#fdd49e", "#fdbb84", "#fc8d59", "#e34a33", "#b30000"]
    for (low, high), colour in zip(bounds, colours, strict=True):
        label = f"{low:.0%}–{min(high, 1):.0%} poor (publishable)"
        root.appendChild(
            QgsRuleBasedRenderer.Rule(
                fill(colour, "60,60,60,255"),
                0,
                0,
                f'"publishable" = 1 AND "estimate" >= {low} AND "estimate" < {high}',
                label,
            )
        )
    root.appendChild(
        QgsRuleBasedRenderer.Rule(
            fill("#bdbdbd", "60,60,60,255", "b_diagonal"),
            0,
            0,
            '"publishable" = 0 OR "publishable" IS NULL',
            "Not publishable (CV above the threshold, or no estimate)",
        )
    )
    return QgsRuleBasedRenderer(root), 0.9


def estimate_labels():
    """Each district's name and estimate (in %), greyed when not publishable."""
    text = QgsTextFormat()
    text.setSize(8)
    text.setColor(QColor("#202020"))
    buffer = QgsTextBufferSettings()
    buffer.setEnabled(True)
    buffer.setSize(0.8)
    buffer.setColor(QColor("#ffffff"))
    text.setBuffer(buffer)
    settings = QgsPalLayerSettings()
    settings.fieldName = (
        "\"district\" || '\\n' || coalesce(format_number(100 * \"estimate\", 0) || ' %', '–')"
        " || if(\"publishable\" = 1, '', ' *')"
    )
    settings.isExpression = True
    settings.placement = QgsPalLayerSettings.Placement.OverPoint
    settings.setFormat(text)
    return QgsVectorLayerSimpleLabeling(settings)


def save(name, fields, renderer_and_opacity, labeling=None):
    renderer, opacity = renderer_and_opacity
    target = layer(fields)
    target.setRenderer(renderer)
    if labeling is not None:
        target.setLabeling(labeling)
        target.setLabelsEnabled(True)
    target.setOpacity(opacity)
    path = os.path.join(STYLES, f"{name}.qml")
    message, ok = target.saveNamedStyle(path)
    if not ok:
        raise SystemExit(f"{path}: {message}")
    print(path)


def main():
    application = QgsApplication([], False)
    application.initQgis()
    tenths = [(i / 5, (i + 1) / 5) for i in range(5)]
    save(
        "chip_nodata",
        [("cell_id", "integer"), ("chip_flagged", "integer")],
        categorized(
            "chip_flagged",
            [
                (0, "Chips complete enough (used)", "#a6dba0"),
                (1, "Flagged: too much nodata (not used for training)", "#d7191c"),
            ],
        ),
    )
    save(
        "prediction_class",
        [("cell_id", "integer"), ("pred", "integer")],
        categorized("pred", [(1, "Predicted poor", POOR), (0, "Predicted not poor", NOT_POOR)]),
    )
    save(
        "prediction_probability",
        [("cell_id", "integer"), ("prob_mean", "double")],
        graduated(
            "prob_mean",
            tenths,
            ["#fef0d9", "#fdcc8a", "#fc8d59", "#e34a33", "#b30000"],
            ["0.0–0.2", "0.2–0.4", "0.4–0.6", "0.6–0.8", "0.8–1.0 (likely poor)"],
        ),
    )
    save(
        "prediction_disagreement",
        [("cell_id", "integer"), ("disagreement", "double")],
        graduated(
            "disagreement",
            [(0, 0.1), (0.1, 0.2), (0.2, 0.3), (0.3, 0.5)],
            ["#f2f0f7", "#cbc9e2", "#9e9ac8", "#6a51a3"],
            ["members agree (< 0.1)", "0.1–0.2", "0.2–0.3", "members disagree (≥ 0.3)"],
        ),
    )
    save(
        "prediction_uncertainty",
        [("cell_id", "integer"), ("prob_low", "double"), ("prob_high", "double")],
        graduated(
            UNCERTAINTY_WIDTH,
            [(0, 0.1), (0.1, 0.2), (0.2, 0.4), (0.4, 1.0)],
            ["#f7f7f7", "#cccccc", "#969696", "#525252"],
            [
                "narrow interval (< 0.1)",
                "0.1–0.2",
                "0.2–0.4",
                "wide interval (≥ 0.4): uncertain",
            ],
        ),
    )
    save(
        "prediction_out_of_range",
        [("cell_id", "integer"), ("out_of_range", "integer")],
        categorized(
            "out_of_range",
            [
                (0, "Inside the training range", "255,255,255,0"),
                (1, "Outside the training range: treat with care", "#7b3294"),
            ],
        ),
    )
    save(
        "hitmiss", [("cell_id", "integer"), ("outcome", "string")], categorized("outcome", OUTCOMES)
    )
    save(
        "targeting_selection",
        [("cell_id", "integer"), ("selected", "integer")],
        categorized(
            "selected",
            [
                (1, "Selected (enrolled)", "#d55e00"),
                (0, "Not selected", "220,220,220,140"),
            ],
        ),
    )
    save(
        "verification_sample",
        [("cell_id", "integer"), ("pred", "integer")],
        categorized(
            "pred",
            [
                (1, "To visit: predicted poor", POOR),
                (0, "To visit: predicted not poor", NOT_POOR),
            ],
            opacity=1.0,
        ),
    )
    save(
        "verification_outcome",
        [("cell_id", "integer"), ("outcome", "string")],
        categorized(
            "outcome", OUTCOMES + [("not_visited", "Not visited", "150,150,150,120")], opacity=1.0
        ),
    )
    save(
        "district_estimates",
        [
            ("district", "string"),
            ("estimate", "double"),
            ("cv", "double"),
            ("publishable", "integer"),
        ],
        district_estimates(),
        estimate_labels(),
    )
    save(
        "district_cv",
        [("district", "string"), ("cv", "double")],
        graduated(
            "cv",
            [(0, 0.1), (0.1, 0.2), (0.2, 0.3), (0.3, 100)],
            ["#edf8e9", "#74c476", "#fd8d3c", "#d7301f"],
            ["CV < 10 %", "CV 10–20 %", "CV 20–30 %", "CV ≥ 30 %: too uncertain to publish"],
        ),
    )
    application.exitQgis()
    return 0


if __name__ == "__main__":
    sys.exit(main())
