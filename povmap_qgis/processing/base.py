"""What every povmap algorithm shares: help text, worker runs, file inputs.

Each algorithm module holds only its own parameters and the mapping from
them to a core step's options (docs/style.md: one base class for the provider).
"""

import contextlib
import functools
import os
import shutil
import textwrap
import threading

from qgis.core import (
    QgsFeatureRequest,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingFeatureSourceDefinition,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterField,
    QgsProcessingParameterNumber,
    QgsProviderRegistry,
    QgsVectorFileWriter,
)
from qgis.PyQt.QtCore import QCoreApplication, QUrl
from qgis.PyQt.QtGui import QIcon

from .. import runner
from ..core.atomic import (
    OutputLock,
    check_output_path,
    new_run_id,
    overwritten_input,
    remove_quietly,
    remove_stale_partials,
    run_partials,
)
from ..core.errors import PovmapInputError, write_failure, write_failure_message
from ..core.geopackage import style_file_path
from ..core.progress import TimeLeft
from ..core.run_folders import make_run_folder, process_alive, remove_stale_run_folders
from ..paths import resource_path
from . import settings
from .output_styles import name_on_load, style_on_load
from .parameter_values import (
    NAMES_KEY,
    completed_parameters,
    enum_help,
    labelled_error,
    number_decimals,
    odd_numbers,
    unknown_enum_values,
    with_labels,
)
from .unreadable_inputs import explain_unreadable_input

OGR_FILE_FORMATS = ["gpkg", "shp", "geojson", "json", "fgb", "gml", "kml", "sqlite", "tab", "gdb"]
REPOSITORY = "https://github.com/povmap/povmap-qgis"
# The page the Help button opens: docs/algorithms/<algorithm id>.md in the repository.
HELP_PAGE = "docs/algorithms/{algorithm_id}.md"


class PovmapAlgorithm(QgsProcessingAlgorithm):
    """Base class: subclasses set the names below and implement the rest."""

    algorithm_id = ""
    display_name = ""
    group_id = ""
    group_name = ""
    summary = ""

    def __init__(self):
        super().__init__()
        self._export_folder = None
        self._output_locks = []
        self._claimed = {}  # output path (and files written beside it) -> its parameter
        self._published = []  # outputs the worker of this run published

    def __init_subclass__(cls, **kwargs):
        """Every algorithm's ``processAlgorithm`` runs inside ``_with_private_exports``
        (which also releases the run's output locks)."""
        super().__init_subclass__(**kwargs)
        if "processAlgorithm" in cls.__dict__:
            cls.processAlgorithm = _with_labelled_errors(
                _with_private_exports(cls.__dict__["processAlgorithm"])
            )

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
        return f"{REPOSITORY}/blob/main/" + HELP_PAGE.format(algorithm_id=self.algorithm_id)

    def shortDescription(self):
        """The toolbox tooltip: the summary's first sentence, shortened to 160 characters."""
        sentence = self.summary.split(". ")[0].rstrip(".") + "."
        return self.tr(textwrap.shorten(sentence, 160, placeholder=" …"))

    def shortHelpString(self):
        definitions = self.parameterDefinitions()

        def labelled(text):  # ids in the text also by the label the dialog shows
            return with_labels(text, definitions, "<i>{label}</i> ({name})")

        items = "".join(
            f"<dt><b>{definition.description()}</b> <code>{definition.name()}</code></dt>"
            f"<dd>{labelled(definition.help())}</dd>"
            for definition in definitions
        )
        return (
            f"<p>{labelled(self.tr(self.summary))}</p>"
            f"<h3>{self.tr('Parameters')}</h3><dl>{items}</dl>"
        )

    def add_parameter(self, definition, help_text, advanced=False, names=None):
        """Add a parameter with its help text (shown in the dialog and in qgis_process help).

        ``names``: for an enumeration whose options are sentences, the name of each
        option accepted on the command line (default: the options themselves).
        """
        if names:
            definition.setMetadata({**(definition.metadata() or {}), NAMES_KEY: list(names)})
        if isinstance(definition, QgsProcessingParameterEnum):
            help_text += f" On the command line: {enum_help(definition)}."
        if (
            isinstance(definition, QgsProcessingParameterNumber)
            and definition.dataType() == QgsProcessingParameterNumber.Type.Double
        ):
            widget = dict((definition.metadata() or {}).get("widget_wrapper") or {})
            widget.setdefault("decimals", number_decimals(definition))
            definition.setMetadata({**(definition.metadata() or {}), "widget_wrapper": widget})
        definition.setHelp(self.tr(help_text))
        if advanced:
            definition.setFlags(
                definition.flags() | QgsProcessingParameterDefinition.Flag.FlagAdvanced
            )
        self.addParameter(definition)

    def add_store_id_field(self):
        """ID_FIELD of GRID for steps that read a chip store: empty is the store's own id field."""
        self.add_parameter(
            QgsProcessingParameterField(
                "ID_FIELD",
                self.tr("Cell id field"),
                None,
                "GRID",
                QgsProcessingParameterField.DataType.Numeric,
                optional=True,
            ),
            "The grid's unique whole-number cell id that matches each cell to its chips; empty: the "
            "id field the chip store was sampled by (cell_id for povmap's grids).",
        )

    def checkParameterValues(self, parameters, context):
        """QGIS's checks on the values the run uses (3.22 forgets a field parameter's default
        and knows enumerations by number only)."""
        for definition, value in unknown_enum_values(self, parameters):
            return False, self.tr(
                f"{definition.description()} ({definition.name()}): '{value}' is not one of "
                f"{enum_help(definition)}."
            )
        for definition, value, problem in odd_numbers(self, parameters):
            whole = definition.dataType() == QgsProcessingParameterNumber.Type.Integer
            bounds = _range_text(definition)
            return False, labelled_error(
                self.tr(
                    f"{definition.name()}: '{value}' {problem}; give "
                    f"{'a whole number' if whole else 'a number'}"
                    f"{' between ' + bounds if bounds else ''}."
                ),
                self.parameterDefinitions(),
            )
        with no_gdal_sidecars():  # QGIS opens the input rasters here
            ok, message = super().checkParameterValues(
                completed_parameters(self, parameters), context
            )
        if not ok:  # QGIS says "not found" also for a file that is there but unreadable
            message = explain_unreadable_input(self.parameterDefinitions(), message)
        return ok, message

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

        File-based layers are read in place. Memory layers, filtered layers and
        "selected features only" are copied to a GeoPackage in this run's private
        folder (``core/run_folders.py``), removed when the run ends, or by the
        next run or plugin load if this one is killed (household points included).
        """
        if parameters.get(name) in (None, ""):
            return None, None
        layer = self.vector_layer(parameters, name, context)
        if layer is None:
            raise QgsProcessingException(self.tr(f"{name}: the layer could not be read."))
        value = parameters.get(name)
        selected_only, limit = False, -1
        if isinstance(value, QgsProcessingFeatureSourceDefinition):
            selected_only, limit = value.selectedFeaturesOnly, value.featureLimit
        if not selected_only and limit == -1:
            in_place = _file_read_in_place(layer)
            if in_place:
                return in_place
        return self._export(layer, name, selected_only, limit, context, feedback), name.lower()

    def vector_layer(self, parameters, name, context):
        """The layer of a vector parameter, also when given as "selected features only"."""
        value = parameters.get(name)
        if isinstance(value, QgsProcessingFeatureSourceDefinition):
            reference = value.source.valueAsString(context.expressionContext())
            if isinstance(reference, tuple):  # PyQGIS returns (value, ok)
                reference = reference[0]
            parameters = {**parameters, name: reference}
        return self.parameterAsVectorLayer(parameters, name, context)

    def _export(self, layer, name, selected_only, limit, context, feedback):
        """Copy a layer's features (the selection, up to ``limit``) into this run's private folder."""
        if self._export_folder is None:
            try:
                self._export_folder = make_run_folder()
            except OSError as error:
                raise QgsProcessingException(
                    self.tr(f"{name}: no private temporary folder for a copy of the layer: {error}")
                ) from None
        path = os.path.join(self._export_folder, f"{name.lower()}.gpkg")
        options = QgsVectorFileWriter.SaveVectorOptions()
        options.driverName, options.layerName, options.fileEncoding = "GPKG", name.lower(), "UTF-8"
        writer = QgsVectorFileWriter.create(
            path, layer.fields(), layer.wkbType(), layer.crs(), context.transformContext(), options
        )
        if writer.hasError() != QgsVectorFileWriter.WriterError.NoError:
            raise QgsProcessingException(
                self.tr(
                    f"{name}: the layer could not be copied for the worker: {writer.errorMessage()}"
                )
            )
        request = QgsFeatureRequest()
        if limit != -1:
            request.setLimit(limit)
        features = (
            layer.getSelectedFeatures(request) if selected_only else layer.getFeatures(request)
        )
        written = writer.addFeatures(features)
        message = writer.errorMessage()
        del writer  # closes the file
        if not written:
            raise QgsProcessingException(
                self.tr(f"{name}: the layer could not be copied for the worker: {message}")
            )
        feedback.pushDebugInfo(f"{name}: copied to {path} (removed when the run ends)")
        return path

    def _remove_private_exports(self):
        if self._export_folder is not None:
            shutil.rmtree(self._export_folder, ignore_errors=True)
            self._export_folder = None

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

    def output_gpkg(self, parameters, name, context, load_name=None):
        """Absolute path of a GeoPackage destination, checked before any work starts.

        ``load_name``: the layer's name when Processing loads it (default: the output's label).
        """
        path = self.parameterAsOutputLayer(parameters, name, context)
        style_on_load(self.name(), name, path, context)  # styled when Processing loads it
        name_on_load(path, context, load_name)
        path = os.path.abspath(path) if path else path
        try:
            check_output_path(path, name)
        except PovmapInputError as error:
            raise QgsProcessingException(str(error)) from None
        # NAME.qml beside it is the layer's default style (core/geopackage.py), written with it.
        beside = [style_file_path(path)] if path else []
        self.refuse_overwriting_inputs(parameters, name, context, path, beside)
        self.claim_output(path, name, beside)
        return path

    def output_folder(self, parameters, name, context, suffix):
        """Absolute path of a folder destination (chip store, model package), ending in ``suffix``."""
        path = os.path.abspath(
            (self.parameterAsString(parameters, name, context) or "").rstrip("/\\")
        )
        if not path.endswith(suffix):
            path += suffix
        self.refuse_overwriting_inputs(parameters, name, context, path)
        self.claim_output(path, name)
        return path

    def input_file(self, parameters, name, context):
        """Absolute path of a file or folder parameter: the worker runs in another working directory."""
        path = self.parameterAsFile(parameters, name, context)
        if path and path.startswith("models:/"):
            return path  # a registered model version: the worker resolves it (core/history/tracking.py)
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
        self.claim_output(path, name, [sibling(path) for sibling in beside])
        return path

    # --- one run per output ----------------------------------------------------

    def claim_output(self, path, name, beside=()):
        """Lock ``path`` for this run before any work, then remove what killed runs left of it.

        A second run aimed at the same output (another dialog, batch row or
        qgis_process) is refused with a message naming the parameter, instead of
        both writing and the last rename winning. The lock is
        ``core.atomic.OutputLock`` (the chip store's): held by this process and
        handed to the worker, released by the kernel when both are gone. Holding
        it, the unfinished ``.NAME.partial-…`` siblings of ``path`` (and of the
        files written ``beside`` it) whose owning process is dead are removed:
        what a killed run (SIGKILL) left behind. A child algorithm of this run
        (Map poverty's steps) shares the lock of its parent.
        """
        for written in (path, *beside):
            self._claimed[os.path.abspath(written)] = name
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            return  # nothing can be written there: the step's own check says so, naming `name`
        try:
            lock = _acquire_shared(path, name)
        except PovmapInputError as error:
            raise QgsProcessingException(str(error)) from None
        self._output_locks.append(lock)
        for written in (path, *beside):
            remove_stale_partials(written, process_alive)

    def _write_failure_text(self, reason, path=None):
        """``NAME: the output could not be written (No space left on device)…``, naming the
        output parameter the failed file belongs to (the first output when it is not known)."""
        name = None
        if path:
            target = os.path.abspath(str(path))
            for claimed, parameter in self._claimed.items():
                folder, base = os.path.split(claimed)
                stem = os.path.splitext(base)[0]
                partial = os.path.join(folder, f".{stem}.partial")
                if target == claimed or target.startswith((claimed + os.sep, partial)):
                    name = parameter
                    break
        name = name or next(iter(self._claimed.values()), "OUTPUT")
        return f"{name}: {write_failure_message(reason, path)}"

    def _unpublish(self):
        """Remove what this run's worker published: the run failed after it (all or nothing)."""
        for path in self._published:
            with contextlib.suppress(OSError):
                remove_quietly(path)
        self._published = []

    def _release_outputs(self):
        while self._output_locks:
            _release_shared(self._output_locks.pop())

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
        resolved_file, resolved_written = os.path.realpath(file), os.path.realpath(written)
        if resolved_file == resolved_written:
            how, harm = "is", "writing it would destroy that input"
        elif resolved_written.startswith(resolved_file.rstrip(os.sep) + os.sep):
            how, harm = "lies inside", "writing it would add a file to that input"
        else:
            how, harm = "holds", "writing it would destroy that input"
        raise QgsProcessingException(
            labelled_error(
                self.tr(
                    f"{name}: {where} {how} the input {self._label(input_name)} '{file}'; "
                    f"{harm}. Choose another name or folder for {self._label(name)}. Nothing "
                    "was written."
                ),
                self.parameterDefinitions(),
            )
        )

    def _label(self, name):
        """What the user sees for a parameter, with its id: "Labelled grid (OUTPUT)"."""
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
                layers = [self.vector_layer(parameters, name, context)]
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

    def crs_parameter(self, parameters, name, context):
        """The CRS given (authid or WKT), None when empty; one QGIS does not know is refused."""
        crs = self.crs_text(self.parameterAsCrs(parameters, name, context))
        value = parameters.get(name)
        if crs is None and value not in (None, "") and str(value).strip():
            raise QgsProcessingException(
                labelled_error(
                    f"{name}: '{value}' is not a coordinate reference system QGIS knows; give "
                    "a projected CRS in metres (e.g. EPSG:32642) or leave it empty for the UTM "
                    "zone of the data.",
                    self.parameterDefinitions(),
                )
            )
        return crs

    # --- running core steps ----------------------------------------------

    def run_core_step(self, step, options, feedback, outputs=(), run_history=None):
        """Run a core step in the worker; return its result or raise a clear error.

        ``run_history``: extra variables for the run history (train: the model name).

        ``outputs``: files the step writes; if the worker fails or had to be
        killed, the unfinished siblings *this run* made are removed — never
        those of another run writing the same output at the same time.
        """
        run_id = new_run_id()
        self._run_history_id = None
        time_left = TimeLeft()

        def forward(event):
            kind = event.get("event")
            if kind == "progress":
                percent = event.get("percent", 0)
                feedback.setProgress(percent)
                left = time_left.text(percent)  # long steps: "about 3 min left"
                if left:
                    feedback.setProgressText(left)
            elif kind == "warning":
                feedback.pushWarning(event.get("message", ""))
            elif kind == "info":
                feedback.pushInfo(event.get("message", ""))
            elif kind == "run_history":  # the MLflow run recording this step
                self._run_history_id = event.get("run_id")

        try:
            runner.check_step_options(step, options)  # an adapter's typo fails here, in QGIS
            python = runner.resolve_worker_python(settings.worker_python())
            feedback.pushDebugInfo(f"Worker Python: {python}")
            result = runner.run_worker(
                step,
                options,
                python=python,
                on_event=forward,
                is_canceled=feedback.isCanceled,
                run_id=run_id,
                held_locks=list(self._output_locks),
                environment=dict(
                    settings.run_history_environment(self.algorithm_id),
                    **settings.spark_environment(),
                    **(run_history or {}),
                ),
            )
            self._published.extend(
                path for output in outputs if output for path in (output, style_file_path(output))
            )
            return result
        except runner.WorkerError as error:
            for output in outputs:
                _remove_partials(output, run_id)
            if error.kind == "write_failed":
                raise QgsProcessingException(
                    labelled_error(
                        self._write_failure_text(error.reason, error.path),
                        self.parameterDefinitions(),
                    )
                ) from None
            if error.details and error.kind == "crash":
                feedback.reportError(error.details, fatalError=False)
            message = labelled_error(str(error), self.parameterDefinitions())
            raise QgsProcessingException(message) from None
        finally:
            self._remove_private_exports()  # the worker is done with them

    def attach_to_run_history(self, paths, feedback):
        """Store files written here after the worker ended (the HTML report) with the step's run.

        A failure is a warning: the outputs are written all the same.
        """
        run_id = getattr(self, "_run_history_id", None)
        if not run_id:
            return

        def forward(event):
            if event.get("event") == "warning":
                feedback.pushWarning(event.get("message", ""))

        try:
            runner.run_worker(
                "attach_to_run",
                {"run_id": run_id, "paths": [os.path.abspath(path) for path in paths if path]},
                python=runner.resolve_worker_python(settings.worker_python()),
                on_event=forward,
                environment=settings.run_history_environment(self.algorithm_id),
            )
        except runner.WorkerError as error:
            feedback.pushWarning(
                f"Run history: the report was not stored with run {run_id}: {error}"
            )


@contextlib.contextmanager
def no_gdal_sidecars():
    """GDAL's NAME.aux.xml off (``GDAL_PAM_ENABLED=NO``) for the rasters this thread opens
    meanwhile: QGIS computes statistics when it opens an input raster as a layer, and GDAL
    would keep them in a file beside the user's raster. Thread-local: the rest of QGIS keeps
    its setting. (The worker runs with it off: runner.worker_environment.)"""
    try:
        from osgeo import gdal
    except ImportError:  # no GDAL bindings: nothing to switch
        yield
        return
    previous = gdal.GetThreadLocalConfigOption("GDAL_PAM_ENABLED", None)
    gdal.SetThreadLocalConfigOption("GDAL_PAM_ENABLED", "NO")
    try:
        yield
    finally:
        gdal.SetThreadLocalConfigOption("GDAL_PAM_ENABLED", previous)


def _range_text(definition):
    """'0 and 1' for a number parameter with both bounds, '' otherwise."""
    low, high = definition.minimum(), definition.maximum()
    if low <= -1e300 or high >= 1e300 or low < -(2**31) or high > 2**31:
        return ""
    return f"{low:g} and {high:g}"


def _with_private_exports(process):
    """Remove dead runs' exports before the algorithm, and this run's own after it, whatever happens."""

    @functools.wraps(process)
    def processAlgorithm(self, parameters, context, feedback):
        remove_stale_run_folders()
        self._claimed, self._published = {}, []
        try:
            with no_gdal_sidecars():
                return process(self, parameters, context, feedback)
        except Exception as error:  # a report written here (in QGIS) on a full disk
            reason = write_failure(error)
            if reason is None:
                raise
            self._unpublish()
            path = getattr(error, "filename", None)
            raise QgsProcessingException(
                labelled_error(self._write_failure_text(reason, path), self.parameterDefinitions())
            ) from None
        finally:
            self._remove_private_exports()
            self._release_outputs()

    return processAlgorithm


# Output locks held by this process: lock file -> [OutputLock, thread, users]. A run's child
# algorithms run in its thread and share its locks; another thread (a second dialog or batch
# row in the same QGIS) is refused like another process.
_HELD_OUTPUTS: dict = {}
_HELD_OUTPUTS_GUARD = threading.Lock()


OUTPUT_KINDS = {".chips": "the chip store", ".povmodel": "the model package"}


def _acquire_shared(path, name):
    kind = OUTPUT_KINDS.get(os.path.splitext(path.rstrip("/\\"))[1], "the output")
    lock = OutputLock(path, name, what=kind)
    with _HELD_OUTPUTS_GUARD:
        held = _HELD_OUTPUTS.get(lock.lock)
        if held is not None and held[1] == threading.get_ident():
            held[2] += 1
            return held[0]
        lock.acquire()  # refused (PovmapInputError) while another run holds it
        _HELD_OUTPUTS[lock.lock] = [lock, threading.get_ident(), 1]
        return lock


def _release_shared(lock):
    with _HELD_OUTPUTS_GUARD:
        held = _HELD_OUTPUTS.get(lock.lock)
        if held is None or held[0] is not lock:
            lock.release()
            return
        held[2] -= 1
        if held[2] <= 0:
            del _HELD_OUTPUTS[lock.lock]
            lock.release()


def _file_read_in_place(layer):
    """(path, layer name) when the worker can read the layer's own file as QGIS shows it, else None.

    The same test as QGIS's own export decision: an OGR file of a known format,
    no subset filter, not inside an archive.
    """
    if layer.providerType() != "ogr" or layer.subsetString() or layer.source().startswith("/vsi"):
        return None
    parts = QgsProviderRegistry.instance().decodeUri(layer.providerType(), layer.source())
    path = parts.get("path") or ""
    extension = os.path.splitext(path)[1].lower().lstrip(".")
    if extension not in OGR_FILE_FORMATS or not os.path.exists(path):
        return None
    return os.path.abspath(path), parts.get("layerName") or None


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
        with contextlib.suppress(OSError):  # cleanup must not hide the run's own error
            remove_quietly(candidate)


def _with_labelled_errors(process):
    """An error naming a parameter by its id (TEST_DISTRICTS: …) also names it by its label."""

    @functools.wraps(process)
    def processAlgorithm(self, parameters, context, feedback):
        try:
            return process(self, parameters, context, feedback)
        except QgsProcessingException as error:
            message = labelled_error(str(error), self.parameterDefinitions())
            if message == str(error):
                raise
            raise QgsProcessingException(message) from None

    return processAlgorithm


POINT_SOURCES = [QgsProcessing.SourceType.TypeVectorPoint]
POLYGON_SOURCES = [QgsProcessing.SourceType.TypeVectorPolygon]
