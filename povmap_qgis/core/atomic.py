"""Write outputs under a temporary name and rename them when complete.

A cancelled, killed or failed run must never leave a half-written file under
the name the user asked for, nor damage a file that was already there — and
never write over one of its own inputs (``overwritten_input``).

Unfinished files are named ``.NAME.partial-RUN-XXXXXX.EXT``: RUN identifies
the run that owns them (``POVMAP_RUN_ID``, set by the Processing adapter for
its worker; else one made for this process), so the adapter removes only its own
leftovers after a failure, never a concurrent run's (``run_partials``).
"""

import contextlib
import glob
import os
import shutil
import uuid

from .errors import PovmapInputError

RUN_ID_VARIABLE = "POVMAP_RUN_ID"


def check_output_path(path, parameter="OUTPUT", extensions=(".gpkg",)):
    """Fail early, before any work, when ``path`` cannot be written."""
    if not path:
        raise PovmapInputError(parameter, "no output file was given.")
    if extensions and not path.lower().endswith(tuple(extensions)):
        wanted = " or ".join(extensions)
        raise PovmapInputError(
            parameter, f"'{path}' must be a {wanted} file; choose a name ending in {wanted}."
        )
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise PovmapInputError(
            parameter,
            f"the folder '{folder}' does not exist; create it or choose another output path.",
        )
    if not os.access(folder, os.W_OK):
        raise PovmapInputError(
            parameter, f"the folder '{folder}' is not writable; choose another output path."
        )
    if os.path.isdir(path):
        raise PovmapInputError(parameter, f"'{path}' is a folder; give a file name.")


def new_run_id():
    """An id for one run, safe in file names: the owning process and a random part."""
    return f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def current_run_id():
    """The run id from the adapter, else one for this process (same form: ids never prefix others)."""
    global _process_run_id
    if os.environ.get(RUN_ID_VARIABLE):
        return os.environ[RUN_ID_VARIABLE]
    if _process_run_id is None or not _process_run_id.startswith(f"{os.getpid()}-"):
        _process_run_id = new_run_id()
    return _process_run_id


_process_run_id = None


def partial_path(path):
    """A sibling name that is clearly unfinished, owned by this run and unique within it."""
    folder, name = os.path.split(os.path.abspath(path.rstrip("/\\")))
    stem, ext = os.path.splitext(name)
    return os.path.join(folder, f".{stem}.partial-{current_run_id()}-{uuid.uuid4().hex[:6]}{ext}")


def run_partials(path, run_id):
    """The unfinished siblings of ``path`` made by run ``run_id`` (SQLite side files included)."""
    folder, name = os.path.split(os.path.abspath(path.rstrip("/\\")))
    stem, ext = os.path.splitext(name)
    pattern = f".{glob.escape(stem)}.partial-{glob.escape(run_id)}-*{glob.escape(ext)}*"
    return sorted(glob.glob(os.path.join(folder, pattern)))


def overwritten_input(written, inputs):
    """The first ``(written path, input path)`` pair where writing would destroy an input, or None.

    ``written``: every path a run writes or replaces, the files it writes beside
    an output included; ``inputs``: every path it reads. They clash when they are
    the same file after resolving symlinks and relative parts (or are hard links
    of one file), or when the input lies inside a written path (a folder the run
    replaces as a whole).
    """
    for output in filter(None, written):
        resolved_output = os.path.normcase(os.path.realpath(output))
        for source in filter(None, inputs):
            resolved_input = os.path.normcase(os.path.realpath(source))
            if (
                resolved_input == resolved_output
                or _same_existing_file(output, source)
                or resolved_input.startswith(resolved_output.rstrip(os.sep) + os.sep)
            ):
                return output, source
    return None


def _same_existing_file(path, other):
    try:
        return os.path.samefile(path, other)
    except OSError:
        return False


def remove_quietly(path):
    for candidate in (path, path + "-journal", path + "-wal", path + "-shm"):
        with contextlib.suppress(FileNotFoundError):
            if os.path.isdir(candidate) and not os.path.islink(candidate):
                shutil.rmtree(candidate)
            else:
                os.remove(candidate)


def publish_folder(partial, path):
    """Rename a finished ``partial`` folder to ``path``, replacing a folder or file already there.

    What was there is first moved aside to a hidden name owned by this run, then
    removed: never left behind as a visible ``NAME.old-…``.
    """
    path = os.path.abspath(path.rstrip("/\\"))
    previous = None
    if os.path.lexists(path):
        folder, name = os.path.split(path)
        previous = os.path.join(folder, f".{name}.replaced-{current_run_id()}")
        os.replace(path, previous)
    os.replace(partial, path)
    if previous:
        with contextlib.suppress(OSError):
            remove_quietly(previous)
    return path


@contextlib.contextmanager
def atomic_output(path):
    """Yield a temporary path; on success rename it to ``path``, else delete it."""
    temporary = partial_path(path)
    try:
        yield temporary
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        os.replace(temporary, path)
    except BaseException:
        remove_quietly(temporary)
        raise
