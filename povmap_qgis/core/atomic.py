"""Write outputs under a temporary name and rename them when complete.

A cancelled, killed or failed run must never leave a half-written file under
the name the user asked for, nor damage a file that was already there.
"""

import contextlib
import os
import shutil
import uuid

from .errors import PovmapInputError


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


def partial_path(path):
    """A sibling name that is clearly unfinished and unique to this run."""
    folder, name = os.path.split(os.path.abspath(path))
    stem, ext = os.path.splitext(name)
    return os.path.join(folder, f".{stem}.partial-{uuid.uuid4().hex[:8]}{ext}")


def remove_quietly(path):
    for candidate in (path, path + "-journal", path + "-wal", path + "-shm"):
        with contextlib.suppress(FileNotFoundError):
            if os.path.isdir(candidate) and not os.path.islink(candidate):
                shutil.rmtree(candidate)
            else:
                os.remove(candidate)


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
