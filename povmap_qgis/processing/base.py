"""What every povmap algorithm shares: names, help text, parameter checks, worker runs.

Each algorithm module holds only its own parameters and the mapping from
them to a core step's options (docs/style.md: one base class for the provider).
Inputs (``inputs.py``) and outputs (``outputs.py``) are mixins of the base class.
"""

import functools
import importlib
import os
import textwrap

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterField,
    QgsProcessingParameterNumber,
)
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon

from .. import runner
from ..core.atomic import new_run_id
from ..core.errors import write_failure
from ..core.geopackage import style_file_path
from ..core.progress import TimeLeft
from ..core.run_folders import remove_stale_run_folders
from ..paths import resource_path
from . import settings
from .inputs import InputFiles, no_gdal_sidecars
from .outputs import OutputFiles, remove_run_partials
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

REPOSITORY = "https://github.com/povmap/povmap-qgis"
# The page the Help button opens: docs/algorithms/<algorithm id>.md in the repository.
HELP_PAGE = "docs/algorithms/{algorithm_id}.md"


class PovmapAlgorithm(InputFiles, OutputFiles, QgsProcessingAlgorithm):
    """Base class: subclasses set the names below and implement the rest."""

    # Parameter and output ids several algorithms share (each algorithm declares its own as
    # class attributes too: qgis_process users and the pipeline model depend on them).
    OUTPUT = "OUTPUT"
    GRID = "GRID"
    ID_FIELD = "ID_FIELD"
    GRID_CRS = "GRID_CRS"

    algorithm_id = ""
    display_name = ""
    group_id = ""
    group_name = ""

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

    @property
    def help_texts(self):
        """The algorithm's help module, ``processing/help/<algorithm id>.py``: its ``SUMMARY`` and
        each parameter's help under the parameter's id (the prose apart from the code, in one
        place per algorithm, beside its page docs/algorithms/<algorithm id>.md)."""
        return importlib.import_module(f"{__package__}.help.{self.algorithm_id}")

    @property
    def summary(self):
        return self.help_texts.SUMMARY

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

    def add_parameter(self, definition, advanced=False, names=None):
        """Add a parameter with its help text (shown in the dialog and in qgis_process help),
        the one its id names in the algorithm's help module (``help_texts``).

        ``names``: for an enumeration whose options are sentences, the name of each
        option accepted on the command line (default: the options themselves).
        """
        help_text = getattr(self.help_texts, definition.name())
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
        """ID_FIELD of GRID for steps that read a chip store: empty is the store's own id field
        (its help: help/common.py's STORE_ID_FIELD)."""
        self.add_parameter(
            QgsProcessingParameterField(
                self.ID_FIELD,
                self.tr("Cell id field"),
                None,
                self.GRID,
                QgsProcessingParameterField.DataType.Numeric,
                optional=True,
            )
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
        self.addOutput(QgsProcessingOutputString(self.GRID_CRS, self.tr("Grid CRS")))

    def grid_results(self, output, counts, count_keys):
        results = {self.OUTPUT: output, self.GRID_CRS: counts.get("crs")}
        results.update({key.upper(): counts.get(key, 0) for key in count_keys})
        return results

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
                remove_run_partials(output, run_id)
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
