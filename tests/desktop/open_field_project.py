"""Opens a verification sample's QField project in the real QGIS desktop and opens the attribute
form of its first cell, as an enumerator's supervisor would (run by tests/test_desktop_field_project.py).

Started as ``qgis --project FIELD.qgz --code open_field_project.py`` under Xvfb. It writes into
POVMAP_DESKTOP_OUT report.json — the project's layers, and per field of the form the class of the
editor widget QGIS built and whether it can be edited — and a screenshot of the form. Then it
quits QGIS. Nothing here asserts: the test reads the report.
"""

import json
import os
import traceback

from qgis.core import QgsProject
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import (
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QLineEdit,
    QPlainTextEdit,
    QTextEdit,
)
from qgis.utils import iface

OUT = os.environ["POVMAP_DESKTOP_OUT"]
report = {"layers": [], "widgets": {}, "error": None, "finished": False}


INPUTS = (QComboBox, QAbstractSpinBox, QTextEdit, QPlainTextEdit, QLineEdit)


def editor_widgets(form, layer):
    """{field: {"class", "editable"}} of the input widget of each field's editor in the form: the
    outermost input widget (not a spin box's own line edit) below the widget named by the field."""
    found = {}
    names = {field.name() for field in layer.fields()}
    for widget in form.findChildren(INPUTS):
        if not widget.isVisibleTo(form):
            continue  # the form's hidden search widgets
        field, parent, inner = None, widget.parentWidget(), False
        if widget.objectName() in names:
            field = widget.objectName()
        while parent is not None and field is None:
            inner = inner or isinstance(parent, INPUTS)
            if parent.objectName() in names:
                field = parent.objectName()
            parent = parent.parentWidget()
        if field is None or inner or field in found:
            continue
        read_only = getattr(widget, "isReadOnly", lambda: False)()
        found[field] = {
            "class": type(widget).__name__,
            "editable": widget.isEnabled() and not read_only,
        }
    return found


def look():
    try:
        layers = list(QgsProject.instance().mapLayers().values())
        report["layers"] = [
            {"name": layer.name(), "valid": layer.isValid(), "features": layer.featureCount()}
            for layer in layers
        ]
        layer = layers[0]
        feature = next(layer.getFeatures())
        layer.startEditing()
        dialog = iface.getFeatureForm(layer, feature)
        dialog.show()
        QApplication.processEvents()
        report["widgets"] = editor_widgets(dialog, layer)
        dialog.grab().save(os.path.join(OUT, "field_form.png"))
        dialog.reject()
        layer.rollBack()
        report["finished"] = True
    except Exception:
        report["error"] = traceback.format_exc()
    with open(os.path.join(OUT, "report.json"), "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=1)
    iface.setActiveLayer(None)
    QgsProject.instance().clear()
    QTimer.singleShot(500, QApplication.instance().quit)


QTimer.singleShot(3000, look)
