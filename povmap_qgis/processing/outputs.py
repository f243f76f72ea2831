"""Outputs: checked before any work, locked for one run, never written over an input.

A mixin of ``PovmapAlgorithm`` (base.py). All or nothing: what a failed run's
worker published is removed, and a killed run's unfinished files are removed by the
next run aimed at the same output.
"""

import contextlib
import os
import threading

from qgis.core import QgsProcessingException

from ..core.atomic import (
    OutputLock,
    check_output_path,
    overwritten_input,
    remove_quietly,
    remove_stale_partials,
    run_partials,
)
from ..core.errors import PovmapInputError, write_failure_message
from ..core.geopackage import style_file_path
from ..core.run_folders import process_alive
from .inputs import layer_path
from .output_styles import name_on_load, style_on_load
from .parameter_values import labelled_error


class OutputFiles:
    """Output paths of an algorithm and the locks of this run (``self`` is a ``PovmapAlgorithm``)."""

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
            lock = acquire_output_lock(path, name)
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
        name = name or next(iter(self._claimed.values()), self.OUTPUT)
        return f"{name}: {write_failure_message(reason, path)}"

    def _unpublish(self):
        """Remove what this run's worker published: the run failed after it (all or nothing)."""
        for path in self._published:
            with contextlib.suppress(OSError):
                remove_quietly(path)
        self._published = []

    def _release_outputs(self):
        while self._output_locks:
            release_output_lock(self._output_locks.pop())

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
            found.extend((name, path) for path in map(layer_path, layers) if path)
        return found


# Output locks held by this process: lock file -> [OutputLock, thread, users]. A run's child
# algorithms run in its thread and share its locks; another thread (a second dialog or batch
# row in the same QGIS) is refused like another process.
_HELD_OUTPUTS: dict = {}
_HELD_OUTPUTS_GUARD = threading.Lock()


OUTPUT_KINDS = {".chips": "the chip store", ".povmodel": "the model package"}


def acquire_output_lock(path, name):
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


def release_output_lock(lock):
    with _HELD_OUTPUTS_GUARD:
        held = _HELD_OUTPUTS.get(lock.lock)
        if held is None or held[0] is not lock:
            lock.release()
            return
        held[2] -= 1
        if held[2] <= 0:
            del _HELD_OUTPUTS[lock.lock]
            lock.release()


def remove_run_partials(path, run_id):
    for candidate in run_partials(path, run_id):
        with contextlib.suppress(OSError):  # cleanup must not hide the run's own error
            remove_quietly(candidate)
