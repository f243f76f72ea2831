"""Styles applied when Processing loads an output layer (dialog, batch, Graphical Modeler).

Processing loads a result through its own path, which skips the layer's default
style: a layer post-processor puts it back (QuickOSM's ``decorate_output.py``
idea). It loads every style the GeoPackage carries (core/geopackage.py: the
``povmap_styles`` item; the ``layer_styles`` table of files from povmap 0.2 and earlier)
into the layer's style manager (Layer ▸ Properties ▸ Style ▸ Styles, or the
legend's context menu ▸ Styles), the default one current; the QML files in
``resources/styles`` stand in when the file holds none.
"""

import os

from qgis.core import (
    QgsMapLayerStyle,
    QgsProcessingLayerPostProcessorInterface,
    QgsProject,
    QgsProviderRegistry,
    QgsVectorLayer,
)

from ..core.geopackage import stored_styles, style_file_path
from ..paths import style_path

# (algorithm id, output) -> resources/styles names, the default first: used when the
# written GeoPackage holds no style (e.g. a file written by an older version).
FALLBACK_STYLES = {
    ("buildtraininggrid", "OUTPUT"): [("training_grid", "povmap training grid")],
    ("buildpredictiongrid", "OUTPUT"): [("prediction_grid", "povmap prediction grid")],
    ("samplechips", "NODATA_GRID"): [("chip_nodata", "povmap nodata")],
    ("predict", "OUTPUT"): [
        ("prediction_class", "povmap predicted class"),
        ("prediction_probability", "povmap probability (mean of members)"),
        ("prediction_disagreement", "povmap member disagreement"),
        ("prediction_uncertainty", "povmap uncertainty (prob_high − prob_low)"),
        ("prediction_out_of_range", "povmap outside the training range"),
    ],
    ("evaluate", "HITMISS"): [("hitmiss", "povmap hit/miss")],
    ("target", "OUTPUT"): [("targeting_selection", "povmap selection")],
    ("verificationsample", "OUTPUT"): [("verification_sample", "povmap verification sample")],
    ("verificationresults", "OUTPUT"): [("verification_outcome", "povmap verification outcome")],
    ("districtestimates", "OUTPUT"): [
        ("district_estimates", "povmap district estimates"),
        ("district_cv", "povmap district CV"),
    ],
    ("crossvalidate", "OUTPUT_GRID"): [
        ("hitmiss", "povmap hit/miss"),
        ("prediction_class", "out-of-fold class"),
        ("prediction_probability", "out-of-fold probability"),
    ],
}
FALLBACK_STYLES[("mappoverty", "OUTPUT")] = FALLBACK_STYLES[("predict", "OUTPUT")]

# The details of a layer to load hold a plain pointer to the post-processor: the
# Python object must outlive the algorithm (which the dialog deletes when its task
# ends, before the layers are loaded). One per output path; replaced by the next run.
_ALIVE: dict = {}


class OutputStyler(QgsProcessingLayerPostProcessorInterface):
    """Names and styles a povmap output as Processing loads it (``title``: its povmap name)."""

    def __init__(self, fallback=()):
        super().__init__()
        self.fallback = list(fallback)
        self.title = None

    def postProcessLayer(self, layer, context, feedback):
        if self.title:
            layer.setName(self.title)
        try:
            styles = (
                carried_styles(layer) or database_styles(layer) or fallback_styles(self.fallback)
            )
            if not styles:
                return  # e.g. a table: nothing to draw, nothing to say
            message = apply_styles(layer, styles)
        except Exception as error:  # a style problem must never fail a finished run
            message = str(error)
        if message and feedback is not None:
            feedback.pushWarning(f"{layer.name()}: the povmap style was not applied ({message}).")


def style_on_load(algorithm_id, name, path, context):
    """Attach an ``OutputStyler`` to output ``name`` if Processing will load it at ``path``."""
    key = _load_key(path, context)
    if key is None:
        return None
    styler = OutputStyler(FALLBACK_STYLES.get((algorithm_id, name), ()))
    _ALIVE[key] = styler
    context.layerToLoadOnCompletionDetails(key).setPostProcessor(styler)
    return styler


def name_on_load(path, context, layer_name):
    """The name output ``path`` gets when Processing loads it.

    Processing's option "Prefer filename as layer name" (on unless the user turns it off)
    replaces the name a plugin gives with the file's name, except for a file in the system
    temp folder: two runs' ``predictions.gpkg`` in two folders would load as two layers
    called "predictions". The post-processor gives the layer its povmap name after that (what
    ``forceName`` of later QGIS versions does); the file stays in the layer's source.
    """
    key = _load_key(path, context)
    if key is None or not layer_name:
        return
    details = context.layerToLoadOnCompletionDetails(key)
    details.name = layer_name
    styler = _ALIVE.get(key)
    if styler is None or details.postProcessor() is not styler:
        styler = OutputStyler()
        _ALIVE[key] = styler
        details.setPostProcessor(styler)
    styler.title = layer_name


def _load_key(path, context):
    """The key under which ``path`` is to be loaded on completion (Processing may keep it relative)."""
    if not path:
        return None
    if context.willLoadLayerOnCompletion(path):
        return path
    wanted = os.path.abspath(path)
    for key in context.layersToLoadOnCompletion():
        if os.path.abspath(key.split("|")[0]) == wanted:
            return key
    return None


def geopackage_of(layer):
    """(path, layer name or None) of the GeoPackage behind ``layer``; ("", None) for other sources."""
    if layer.providerType() != "ogr":
        return "", None
    parts = QgsProviderRegistry.instance().decodeUri("ogr", layer.source())
    path = parts.get("path") or ""
    if not path.lower().endswith(".gpkg") or not os.path.isfile(path):
        return "", None
    return path, parts.get("layerName") or None


def carried_styles(layer):
    """[(name, QML)] the povmap GeoPackage behind ``layer`` carries, its default style first."""
    path, layer_name = geopackage_of(layer)
    return stored_styles(path, layer_name) if path else []


def database_styles(layer):
    """[(name, QML)] of the styles saved in the data source (``layer_styles``), the default first."""
    if not hasattr(layer, "listStylesInDatabase"):
        return []
    count, ids, names, _, _ = layer.listStylesInDatabase()
    styles = []
    for style_id, name in zip(ids[:count], names[:count], strict=False):
        qml, _ = layer.getStyleFromDatabase(style_id)
        if qml:
            styles.append((name, qml))
    default = QgsProviderRegistry.instance().loadStyle(layer.providerType(), layer.source(), "")
    styles.sort(key=lambda style: style[1] != default)  # stable: the default first
    return styles


def fallback_styles(fallback):
    styles = []
    for qml_name, name in fallback:
        with open(style_path(qml_name), encoding="utf-8") as handle:
            styles.append((name, handle.read()))
    return styles


def apply_styles(layer, styles):
    """Make ``styles`` [(name, QML)] the layer's styles, the first one current; '' or a message."""
    if not styles:
        return "no style found"
    parsed = [(name, QgsMapLayerStyle(qml)) for name, qml in styles]
    for name, style in parsed:
        if not style.isValid():
            return f"the style '{name}' is not a QGIS style"
    manager = layer.styleManager()
    default_name, default_style = parsed[0]
    default_style.writeToLayer(layer)
    if manager.currentStyle() != default_name:
        if default_name in manager.styles():
            manager.removeStyle(default_name)
        manager.renameStyle(manager.currentStyle(), default_name)  # QGIS's "default" entry
    for name, style in parsed[1:]:
        if name in manager.styles():
            manager.removeStyle(name)
        manager.addStyle(name, style)
    layer.triggerRepaint()
    return ""


class AddedByHandStyler:
    """Gives a povmap GeoPackage added by hand (Browser, Data Source Manager, drag and drop)
    the styles it carries, while the plugin is loaded.

    QGIS itself loads ``NAME.qml`` as the layer's default style; this adds the extra styles
    (probability, disagreement, folds, …) to the layer's style list, and the carried default
    style when the ``.qml`` did not travel with the file. A style the layer already has is
    never replaced, and layers read from a project are left as the project saved them.
    """

    def __init__(self, project=None):
        self.project = project or QgsProject.instance()
        self.reading_project = False
        self._connections = [
            (self.project.layersAdded, self.layers_added),
            (self.project.loadingLayer, self._project_read_started),
            (self.project.readProject, self._project_read_ended),
            (self.project.cleared, self._project_read_ended),
        ]
        for signal, slot in self._connections:
            signal.connect(slot)

    def disconnect(self):
        for signal, slot in self._connections:
            try:
                signal.disconnect(slot)
            except (TypeError, RuntimeError):  # already gone with the project
                pass
        self._connections = []

    def _project_read_started(self, *_):
        self.reading_project = True

    def _project_read_ended(self, *_):
        self.reading_project = False

    def layers_added(self, layers):
        if self.reading_project:
            return
        for layer in layers:
            try:
                add_carried_styles(layer)
            except Exception:  # a style must never get in the way of adding a layer
                continue


def add_carried_styles(layer):
    """The carried extra styles in ``layer``'s style list (the default too without NAME.qml);
    True when the layer is a povmap GeoPackage layer carrying styles."""
    if not isinstance(layer, QgsVectorLayer):
        return False
    path, layer_name = geopackage_of(layer)
    styles = stored_styles(path, layer_name) if path else []
    if not styles:
        return False
    manager = layer.styleManager()
    found_none = (
        not os.path.isfile(style_file_path(path))
        and manager.styles() == [manager.currentStyle()]
        and not layer.listStylesInDatabase()[0]  # a style the user saved in the file wins
    )
    if found_none:
        apply_styles(layer, styles)  # the .qml did not travel with the file
        return True
    for name, qml in styles[1:]:
        style = QgsMapLayerStyle(qml)
        if name not in manager.styles() and style.isValid():
            manager.addStyle(name, style)
    return True
