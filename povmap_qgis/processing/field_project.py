"""The QField project of a verification sample: a .qgz holding the sample layer with its form.

Built with PyQGIS in the QGIS process (the worker has no QGIS). The visit fields
get the widgets an enumerator needs — ``observed_poor`` a value map (Poor / Not
poor), the household counts spin boxes with a constraint (poor ≤ visited),
``visit_date`` a date picker defaulting to today, ``notes`` a multi-line text —
and every field of the design (id, stratum, weight, inclusion probability, the
map's values) is read-only, so weights cannot be edited in the field. The
layer's path is stored relative to the project, so the folder can be copied to
a phone (or packaged with QFieldSync) as it is.
"""

import os

from qgis.core import (
    QgsDefaultValue,
    QgsEditorWidgetSetup,
    QgsFieldConstraints,
    QgsProject,
    QgsVectorLayer,
)

from ..core.atomic import atomic_output

VISIT_WIDGETS = {
    "observed_poor": QgsEditorWidgetSetup(
        "ValueMap", {"map": [{"Poor (yes)": "1"}, {"Not poor (no)": "0"}]}
    ),
    "households_visited": QgsEditorWidgetSetup(
        "Range", {"Min": 0, "Max": 100000, "Step": 1, "Style": "SpinBox", "AllowNull": True}
    ),
    "households_poor": QgsEditorWidgetSetup(
        "Range", {"Min": 0, "Max": 100000, "Step": 1, "Style": "SpinBox", "AllowNull": True}
    ),
    "visit_date": QgsEditorWidgetSetup(
        "DateTime",
        {
            "field_format": "yyyy-MM-dd",
            "display_format": "yyyy-MM-dd",
            "calendar_popup": True,
            "allow_null": True,
        },
    ),
    "notes": QgsEditorWidgetSetup("TextEdit", {"IsMultiline": True, "UseHtml": False}),
}
POOR_AT_MOST_VISITED = (
    '"households_poor" IS NULL OR "households_visited" IS NULL '
    'OR "households_poor" <= "households_visited"'
)
TODAY = "format_date(now(), 'yyyy-MM-dd')"


def write_field_project(sample_path, layer_name, project_path, title):
    """Write the .qgz at ``project_path`` (temporary name, renamed when complete)."""
    layer = QgsVectorLayer(f"{sample_path}|layername={layer_name}", title, "ogr")
    if not layer.isValid():
        raise RuntimeError(f"the sample '{sample_path}' cannot be opened as a layer")
    configure_form(layer)
    project = QgsProject()
    project.setTitle(title)
    project.setCrs(layer.crs())
    project.addMapLayer(layer)
    project.writeEntryBool("Paths", "/Absolute", False)
    with atomic_output(project_path) as partial:
        # the project's own folder decides the relative paths: write beside the final name
        project.setFileName(partial)
        if not project.write(partial):
            raise RuntimeError(f"the project could not be written: {project.error()}")
    return os.path.abspath(project_path)


def configure_form(layer):
    """Widgets, defaults, constraints and read-only design fields of the sample layer."""
    fields = layer.fields()
    config = layer.editFormConfig()
    for index, field in enumerate(fields):
        name = field.name()
        if name in VISIT_WIDGETS:
            layer.setEditorWidgetSetup(index, VISIT_WIDGETS[name])
            config.setReadOnly(index, False)
        else:
            config.setReadOnly(index, True)
    layer.setEditFormConfig(config)
    visit_date = fields.indexOf("visit_date")
    if visit_date >= 0:
        layer.setDefaultValueDefinition(visit_date, QgsDefaultValue(TODAY, False))
    poor = fields.indexOf("households_poor")
    if poor >= 0:
        layer.setConstraintExpression(
            poor, POOR_AT_MOST_VISITED, "Not more poor households than households visited"
        )
        layer.setFieldConstraint(
            poor,
            QgsFieldConstraints.Constraint.ConstraintExpression,
            QgsFieldConstraints.ConstraintStrength.ConstraintStrengthHard,
        )
