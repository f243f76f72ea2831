"""The names output layers get in the Layers panel: what, where and from which model.

Processing names a loaded output after the output's label ("Predictions"), so three
runs give three layers called "Predictions" in the Layers panel and in every input
picker. A povmap output is named ``What — where (detail)``, e.g. "Predictions —
Kotlani (demo_compact)": where is the districts the layer covers (one to three named,
else how many), or the input layer's name; detail the model, the budget or the folds.
Reports name their inputs by these names too (the layer's name in the project), not by
the file's layer name ("OUTPUT" for a temporary output).
"""

import os

from qgis.core import NULL, QgsVectorLayer

from .output_styles import name_on_load

DASH = "—"
MAX_NAMED_DISTRICTS = 3
MODEL_SUFFIX = ".povmodel"


def layer_title(what, where=None, detail=None):
    """'What — where (detail)', leaving out the parts that are empty."""
    text = what
    if where:
        text += f" {DASH} {where}"
    if detail:
        text += f" ({detail})"
    return text


def districts_label(path, field="district"):
    """'Kotlani', 'Dadu, Kotlani' or '12 districts': the districts of a written layer; None
    when it has no such field or no district in it."""
    layer = QgsVectorLayer(path, "districts", "ogr")
    if not layer.isValid():
        return None
    index = layer.fields().lookupField(field)
    if index < 0:
        return None
    names = sorted(
        str(value) for value in layer.uniqueValues(index) if value is not None and value != NULL
    )
    names = [name for name in names if name.strip()]
    if not names:
        return None
    if len(names) <= MAX_NAMED_DISTRICTS:
        return ", ".join(names)
    return f"{len(names)} districts"


def model_label(model):
    """The name a model is known by: its package folder without .povmodel, or the registered
    model reference without ``models:/``."""
    if not model:
        return None
    text = str(model).rstrip("/\\")
    if text.startswith("models:/"):
        return text[len("models:/") :]
    stem = os.path.basename(text)
    return stem[: -len(MODEL_SUFFIX)] if stem.endswith(MODEL_SUFFIX) else stem


def input_layer_name(algorithm, parameters, name, context):
    """The name of the layer given as input ``name`` as the user sees it (the Layers panel's
    name, or the file's name for a path); None when none is given."""
    if parameters.get(name) in (None, ""):
        return None
    layer = algorithm.parameterAsVectorLayer(parameters, name, context)
    if layer is None:
        return None
    return layer.name() or None


def name_output(path, context, what, where=None, detail=None):
    """Name output ``path`` 'What — where (detail)' when Processing loads it; the title."""
    title = layer_title(what, where, detail)
    name_on_load(path, context, title)
    return title
