"""What every povmap algorithm shares: help text, worker runs, file inputs.

Each algorithm module holds only its own parameters and the mapping from
them to a core step's options (STYLE.md: one base class for the provider).
"""

import glob
import os
import shutil

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProviderRegistry,
)
from qgis.PyQt.QtCore import QCoreApplication, QUrl
from qgis.PyQt.QtGui import QIcon

from .. import runner
from ..core.atomic import check_output_path, new_run_id, overwritten_input, run_partials
from ..core.errors import PovmapInputError
from ..paths import resource_path
from . import settings
from .output_styles import style_on_load
from .parameter_values import (
    NAMES_KEY,
    completed_parameters,
    enum_help,
    unknown_enum_values,
)

OGR_FILE_FORMATS = ["gpkg", "shp", "geojson", "json", "fgb", "gml", "kml", "sqlite", "tab", "gdb"]
REPOSITORY = "https://github.com/povmap/povmap-qgis"


class PovmapAlgorithm(QgsProcessingAlgorithm):
    """Base class: subclasses set the names below and implement the rest."""

    algorithm_id = ""
    display_name = ""
    group_id = ""
    group_name = ""
    summary = ""

    def __init__(self):
        super().__init__()
        self._exported_files = []

    def tr(self, text):
        return QCoreApplication.translate("povmap", text)

    def createInstance(self):
        return type(self)()

    def name(self):
        return self.algorithm_id

    def displayName(self):
        return self.tr(self.display_name)

    def group(self):
        return self.tr(self.group_name)

    def groupId(self):
        return self.group_id

    def icon(self):
        return QIcon(resource_path("icon.svg"))

    def helpUrl(self):
        return f"{REPOSITORY}#{self.algorithm_id}"

    def shortHelpString(self):
        items = "".join(
            f"<dt><b>{definition.description()}</b> <code>{definition.name()}</code></dt><dd>{definition.help()}</dd>"
            for definition in self.parameterDefinitions()
        )
        return f"<p>{self.tr(self.summary)}</p><h3>{self.tr('Parameters')}</h3><dl>{items}</dl>"

    def add_parameter(self, definition, help_text, advanced=False, names=None):
        """Add a parameter with its help text (shown in the dialog and in qgis_process help).

        ``names``: for an enumeration whose options are sentences, the name of each
        option accepted on the command line (default: the options themselves).
        """
        if names:
            definition.setMetadata({**(definition.metadata() or {}), NAMES_KEY: list(names)})
        if isinstance(definition, QgsProcessingParameterEnum):
            help_text += f" On the command line: {enum_help(definition)}."
        definition.setHelp(self.tr(help_text))
        if advanced:
            definition.setFlags(
                definition.flags() | QgsProcessingParameterDefinition.Flag.FlagAdvanced
            )
        self.addParameter(definition)

    def checkParameterValues(self, parameters, context):
        """QGIS's checks on the values the run uses (3.22 forgets a field parameter's default
        and knows enumerations by number only)."""
        for definition, value in unknown_enum_values(self, parameters):
            return False, self.tr(
                f"{definition.description()} ({definition.name()}): '{value}' is not one of "
                f"{enum_help(definition)}."
            )
        return super().checkParameterValues(completed_parameters(self, parameters), context)

    def parameterAsEnum(self, parameters, name, context):  # noqa: N802 (QGIS API)
        """The option number, also when the value is the option's name (PRESET=compact)."""
        return super().parameterAsEnum(completed_parameters(self, parameters), name, context)

    def add_grid_outputs(self, count_keys):
        """Declare the counts a grid step reports (upper-case names) and the grid CRS."""
        for key in count_keys:
            self.addOutput(
                QgsProcessingOutputNumber(key.upper(), self.tr(key.replace("_", " ").capitalize()))
            )
        self.addOutput(QgsProcessingOutputString("GRID_CRS", self.tr("Grid CRS")))

    @staticmethod
    def grid_results(output, counts, count_keys):
        results = {"OUTPUT": output, "GRID_CRS": counts.get("crs")}
        results.update({key.upper(): counts.get(key, 0) for key in count_keys})
        return results

    # --- inputs -----------------------------------------------------------

    def vector_file(self, parameters, name, context, feedback):
        """(path, layer name) of a vector input as an OGR-readable file, or (None, None).

        File-based layers are read in place; memory layers, filtered layers or
        "selected features only" are exported to a temporary GeoPackage first,
        which is deleted when the algorithm ends (household points included).
        """
        if parameters.get(name) in (None, ""):
            return None, None
        path, layer = self.parameterAsCompatibleSourceLayerPathAndLayerName(
            parameters, name, context, OGR_FILE_FORMATS, "gpkg", feedback
        )
        if not path:
            raise QgsProcessingException(self.tr(f"{name}: the layer could not be read."))
        if not _same_file(path, self._layer_file(parameters, name, context)):
            self._exported_files.append(path)  # our copy, not the user's file: removed at the end
        return os.path.abspath(path), layer or None

    def _layer_file(self, parameters, name, context):
        layer = self.parameterAsVectorLayer(parameters, name, context)
        if layer is None:
            return None
        return (
            QgsProviderRegistry.instance()
            .decodeUri(layer.providerType(), layer.source())
            .get("path")
        )

    def raster_file(self, parameters, name, context):
        """Path of a raster input that GDAL can open directly, or None."""
        layer = self.parameterAsRasterLayer(parameters, name, context)
        if layer is None:
            if parameters.get(name) not in (None, ""):
                raise QgsProcessingException(
                    self.tr(f"{name}: '{parameters[name]}' is not a raster layer or file.")
                )
            return None
        return self.raster_layer_file(layer, name)

    def raster_layer_file(self, layer, name):
        """Path of a raster layer's file, or a message saying to save the layer as a GeoTIFF."""
        parts = QgsProviderRegistry.instance().decodeUri(layer.providerType(), layer.source())
        path, prefix = parts.get("path", ""), parts.get("vsiPrefix", "")
        if layer.providerType() != "gdal" or not os.path.isfile(path):
            raise QgsProcessingException(
                self.tr(
                    f"{name}: the layer '{layer.name()}' is not a raster file (provider '{layer.providerType()}'); "
                    "save it as a GeoTIFF first (right-click ▸ Export ▸ Save As…) and use that file."
                )
            )
        # A raster inside an archive (/vsizip/...) is read in place by GDAL in the worker.
        return (
            f"{prefix}{os.path.abspath(path)}{parts.get('vsiSuffix', '')}"
            if prefix
            else os.path.abspath(path)
        )

    def output_gpkg(self, parameters, name, context):
        """Absolute path of a GeoPackage destination, checked before any work starts."""
        path = self.parameterAsOutputLayer(parameters, name, context)
        style_on_load(self.name(), name, path, context)  # styled when Processing loads it
        path = os.path.abspath(path) if path else path
        try:
            check_output_path(path, name)
        except PovmapInputError as error:
            raise QgsProcessingException(str(error)) from None
        self.refuse_overwriting_inputs(parameters, name, context, path)
        return path

    def output_folder(self, parameters, name, context, suffix):
        """Absolute path of a folder destination (chip store, model package), ending in ``suffix``."""
        path = os.path.abspath(
            (self.parameterAsString(parameters, name, context) or "").rstrip("/\\")
        )
        if not path.endswith(suffix):
            path += suffix
        self.refuse_overwriting_inputs(parameters, name, context, path)
        return path

    def input_file(self, parameters, name, context):
        """Absolute path of a file or folder parameter: the worker runs in another working directory."""
        path = self.parameterAsFile(parameters, name, context)
        if path and path.startswith("models:/"):
            return path  # a registered model version: the worker resolves it (core/tracking.py)
        return os.path.abspath(path) if path else path

    def name_list(self, parameters, name, context):
        """A comma-separated string parameter (members, districts) as a list of trimmed names; [] when empty."""
        return [
            part.strip()
            for part in (self.parameterAsString(parameters, name, context) or "").split(",")
            if part.strip()
        ]

    def output_file(self, parameters, name, context, extensions, beside=()):
        """Absolute path of a file destination (report, metrics), checked before any work starts.

        ``beside``: functions giving the other files the algorithm writes next to
        this one (e.g. the metrics CSV beside the metrics JSON); they are checked too.
        """
        path = self.parameterAsFileOutput(parameters, name, context)
        path = os.path.abspath(path) if path else path
        try:
            check_output_path(path, name, extensions)
        except PovmapInputError as error:
            raise QgsProcessingException(str(error)) from None
        self.refuse_overwriting_inputs(
            parameters, name, context, path, [sibling(path) for sibling in beside]
        )
        return path

    # --- never write over an input -------------------------------------------

    def refuse_overwriting_inputs(self, parameters, name, context, path, beside=()):
        """Refuse, before any work, an output ``path`` (or a file written ``beside`` it) that is an input.

        The one rule for every povmap algorithm: a survey is the file that
        cannot be regenerated, so an output that resolves to any input file
        (through a symlink, a relative path or a hard link), or a folder output
        that contains one, stops the run with a message naming both parameters.
        """
        inputs = self._input_files(parameters, context)
        clash = overwritten_input([path, *beside], [file for _, file in inputs])
        if clash is None:
            return
        written, file = clash
        input_name = next(parameter for parameter, candidate in inputs if candidate == file)
        where = f"'{written}'" if written == path else f"'{written}' (written beside '{path}')"
        how = "lies inside" if os.path.realpath(file) != os.path.realpath(written) else "is"
        raise QgsProcessingException(
            self.tr(
                f"{self._label(name)}: {where} {how} the input "
                f"{self._label(input_name)} '{file}'; writing it would destroy that input. "
                f"Choose another name or folder for {self._label(name)}. Nothing was written."
            )
        )

    def _label(self, name):
        """What the user sees for a parameter, with its id: "Training grid (OUTPUT)"."""
        definition = self.parameterDefinition(name)
        return f"{definition.description()} ({name})" if definition else name

    def _input_files(self, parameters, context):
        """[(parameter, absolute path)] of every file this run reads (layer sources included)."""
        found = []
        for definition in self.parameterDefinitions():
            name = definition.name()
            if definition.isDestination() or parameters.get(name) in (None, ""):
                continue
            kind = definition.type()
            if kind in ("source", "vector"):
                layers = [self.parameterAsVectorLayer(parameters, name, context)]
            elif kind == "raster":
                layers = [self.parameterAsRasterLayer(parameters, name, context)]
            elif kind in ("multilayer", "layer"):
                layers = self.parameterAsLayerList(parameters, name, context)
            elif kind == "file":
                layers = []
                path = self.parameterAsFile(parameters, name, context)
                if path:
                    found.append((name, os.path.abspath(path)))
            else:
                continue
            found.extend((name, path) for path in map(_layer_path, layers) if path)
        return found

    @staticmethod
    def crs_text(crs):
        if not crs.isValid():
            return None
        return crs.authid() or crs.toWkt()

    # --- running core steps ----------------------------------------------

    def run_core_step(self, step, options, feedback, outputs=()):
        """Run a core step in the worker; return its result or raise a clear error.

        ``outputs``: files the step writes; if the worker fails or had to be
        killed, the unfinished siblings *this run* made are removed — never
        those of another run writing the same output at the same time.
        """
        run_id = new_run_id()

        def forward(event):
            kind = event.get("event")
            if kind == "progress":
                feedback.setProgress(event.get("percent", 0))
            elif kind == "warning":
                feedback.pushWarning(event.get("message", ""))
            elif kind == "info":
                feedback.pushInfo(event.get("message", ""))

        try:
            python = runner.resolve_worker_python(settings.worker_python())
            feedback.pushDebugInfo(f"Worker Python: {python}")
            return runner.run_worker(
                step,
                options,
                python=python,
                on_event=forward,
                is_canceled=feedback.isCanceled,
                run_id=run_id,
                environment=settings.run_history_environment(self.algorithm_id),
            )
        except runner.WorkerError as error:
            for output in outputs:
                _remove_partials(output, run_id)
            if error.details and error.kind == "crash":
                feedback.reportError(error.details, fatalError=False)
            raise QgsProcessingException(str(error)) from None
        finally:
            self._remove_exported_files()

    def _remove_exported_files(self):
        for path in self._exported_files:
            for candidate in glob.glob(path + "*"):
                try:
                    os.remove(candidate)
                except OSError:
                    pass
        self._exported_files = []


def _same_file(path, other):
    return bool(other) and os.path.abspath(path) == os.path.abspath(other)


def _layer_path(layer):
    """Absolute path of the file behind a layer, or None (memory, database or web layers)."""
    if layer is None:
        return None
    source = layer.source()
    path = QgsProviderRegistry.instance().decodeUri(layer.providerType(), source).get("path")
    if not path and source.startswith("file:"):
        path = QUrl(source).toLocalFile()  # delimited text: file:///…/truth.csv?type=csv…
    return os.path.abspath(path) if path else None


def _remove_partials(path, run_id):
    for candidate in run_partials(path, run_id):
        try:
            shutil.rmtree(candidate) if os.path.isdir(candidate) else os.remove(candidate)
        except OSError:
            pass


POINT_SOURCES = [QgsProcessing.SourceType.TypeVectorPoint]
POLYGON_SOURCES = [QgsProcessing.SourceType.TypeVectorPolygon]
