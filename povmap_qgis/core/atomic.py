"""Write outputs under a temporary name and rename them when complete.

A cancelled, killed or failed run must never leave a half-written file under
the name the user asked for, nor damage a file that was already there — and
never write over one of its own inputs (``overwritten_input``).

Unfinished files are named ``.NAME.partial-RUN-XXXXXX.EXT``: RUN identifies
the run that owns them (``POVMAP_RUN_ID``, set by the Processing adapter for
its worker; else one made for this process) and begins with the owning
process's id, so the adapter removes only its own leftovers after a failure,
never a concurrent run's (``run_partials``), and a later run removes those of
killed runs (``remove_stale_partials``).

One run writes an output at a time (``OutputLock``): the writer holds an
exclusive ``flock`` on ``.NAME.lock`` beside the output, which the kernel
releases when the last process holding it ends, however it ends; a second run
is refused with a message naming the output parameter, the holder and the
lock. The Processing adapter takes the lock before any work and hands it to
its worker (an inherited descriptor, listed in ``POVMAP_HELD_LOCKS``), so it
stays held while either process lives.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import socket
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import IO

from .errors import PovmapInputError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

RUN_ID_VARIABLE = "POVMAP_RUN_ID"
HELD_LOCKS_VARIABLE = "POVMAP_HELD_LOCKS"  # lock files the adapter holds for its worker
_PARTIAL_OWNER = re.compile(r"\.partial-(\d+)-[0-9a-f]{8}-[0-9a-f]{6}")


def check_output_path(
    path: str | None, parameter: str = "OUTPUT", extensions: Iterable[str] = (".gpkg",)
) -> None:
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


def file_part(path: str) -> str:
    """The file of a layer source: the part before '|' (``|layername=…``); /vsi… paths as given."""
    return path.split("|")[0] if path and not path.startswith("/vsi") else path


def check_outputs_are_not_inputs(
    input_paths: Iterable[str | None], outputs: Iterable[tuple[str | None, str]]
) -> None:
    """Refuse an output (``(path, parameter)`` pairs) that is one of the input files, before any work."""
    inputs = {os.path.abspath(file_part(path)) for path in input_paths if path}
    for path, parameter in outputs:
        if path and os.path.abspath(path) in inputs:
            raise PovmapInputError(parameter, f"'{path}' is an input; choose another output name.")


def new_run_id() -> str:
    """An id for one run, safe in file names: the owning process and a random part."""
    return f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def current_run_id() -> str:
    """The run id from the adapter, else one for this process (same form: ids never prefix others)."""
    global _process_run_id
    if os.environ.get(RUN_ID_VARIABLE):
        return os.environ[RUN_ID_VARIABLE]
    if _process_run_id is None or not _process_run_id.startswith(f"{os.getpid()}-"):
        _process_run_id = new_run_id()
    return _process_run_id


_process_run_id: str | None = None


def partial_path(path: str) -> str:
    """A sibling name that is clearly unfinished, owned by this run and unique within it."""
    folder, name = os.path.split(os.path.abspath(path.rstrip("/\\")))
    stem, ext = os.path.splitext(name)
    return os.path.join(folder, f".{stem}.partial-{current_run_id()}-{uuid.uuid4().hex[:6]}{ext}")


def run_partials(path: str, run_id: str) -> list[str]:
    """The unfinished siblings of ``path`` made by run ``run_id`` (SQLite side files included)."""
    folder, name = os.path.split(os.path.abspath(path.rstrip("/\\")))
    stem, ext = os.path.splitext(name)
    pattern = f".{glob.escape(stem)}.partial-{glob.escape(run_id)}-*{glob.escape(ext)}*"
    return sorted(glob.glob(os.path.join(folder, pattern)))


def remove_stale_partials(path: str, is_alive: Callable[[int], bool]) -> list[str]:
    """Remove the unfinished siblings of ``path`` whose owning process is gone; return them.

    Call it while holding ``path``'s ``OutputLock``: no live run of the adapter
    can then be writing ``path``. A partial whose recorded process is alive (a
    run outside the adapter, e.g. the command line, or a reused process id) is
    kept: a live run's file is never removed. ``is_alive(pid)``: e.g.
    ``run_folders.process_alive``.
    """
    folder, name = os.path.split(os.path.abspath(path.rstrip("/\\")))
    stem, ext = os.path.splitext(name)
    removed = []
    for candidate in sorted(
        glob.glob(os.path.join(folder, f".{glob.escape(stem)}.partial-*{glob.escape(ext)}"))
    ):
        owner = _PARTIAL_OWNER.match(os.path.basename(candidate)[len(stem) + 1 :])
        if owner is None or is_alive(int(owner.group(1))):
            continue
        with contextlib.suppress(OSError):
            remove_quietly(candidate)
            removed.append(candidate)
    return removed


def lock_path(path: str) -> str:
    """The lock file of an output's writer, beside it: ``.NAME.lock``."""
    folder, name = os.path.split(os.path.abspath(path.rstrip("/\\")))
    return os.path.join(folder, f".{name}.lock")


def inherited_locks() -> list[str]:
    """Lock files the adapter holds for this (worker) process."""
    return [part for part in os.environ.get(HELD_LOCKS_VARIABLE, "").split(os.pathsep) if part]


class OutputLock:
    """Exclusive right to write ``path`` (``flock`` on ``.NAME.lock``), or a refusal naming the holder.

    ``what`` names the output in the message ("the chip store"); ``partial``,
    when given, is the hidden folder the holder writes into (named too, so a
    user can find both). A lock the adapter already holds for this worker
    (``POVMAP_HELD_LOCKS``) is taken as held.
    """

    def __init__(
        self,
        path: str,
        parameter: str = "OUTPUT",
        what: str = "the output",
        partial: str | None = None,
    ) -> None:
        self.path = os.path.abspath(path.rstrip("/\\"))
        self.lock = lock_path(self.path)
        self.parameter, self.what, self.partial = parameter, what, partial
        self.handle: IO[str] | None = None
        self.inherited = False

    @property
    def held(self) -> bool:
        return self.handle is not None or self.inherited

    def acquire(self) -> OutputLock:
        if self.lock in inherited_locks():
            self.inherited = True
            return self
        for _ in range(10):
            handle = open(self.lock, "a+", encoding="utf-8")  # held until release()
            try:
                _lock_exclusively(handle)
            except OSError:
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                handle.close()
                where = (
                    f" and writes into the hidden folder '{self.partial}'" if self.partial else ""
                )
                raise PovmapInputError(
                    self.parameter,
                    f"another run ({holder}) is writing {self.what} '{self.path}': it holds "
                    f"the lock '{self.lock}'{where}. Wait for it to finish, or choose another output.",
                ) from None
            if _still_named(handle, self.lock):
                handle.seek(0)
                handle.truncate()
                handle.write(f"{socket.gethostname()} {os.getpid()}")
                handle.flush()
                self.handle = handle
                return self
            handle.close()  # the holder removed this lock file as it finished: take the new one
        raise PovmapInputError(
            self.parameter, f"the lock '{self.lock}' keeps changing; is another run starting?"
        )

    def fileno(self) -> int | None:
        return self.handle.fileno() if self.handle is not None else None

    def release(self) -> None:
        """Remove the lock file, then release it (a waiting run sees the file gone and retries)."""
        self.inherited = False
        if self.handle is None:
            return
        with contextlib.suppress(OSError):
            if _still_named(self.handle, self.lock):
                os.remove(self.lock)
        self.handle.close()
        self.handle = None


def _lock_exclusively(handle: IO[str]) -> None:
    """An exclusive lock the operating system releases when the process ends; OSError when held."""
    if fcntl is not None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    import msvcrt

    handle.seek(0)
    msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)


def _still_named(handle: IO[str], path: str) -> bool:
    """Whether ``path`` still names the file ``handle`` holds (it may have been replaced)."""
    try:
        return os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
    except OSError:
        return False


def overwritten_input(
    written: Iterable[str | None], inputs: Iterable[str | None]
) -> tuple[str, str] | None:
    """The first ``(written path, input path)`` pair where writing would destroy an input, or None.

    ``written``: every path a run writes or replaces, the files it writes beside
    an output included; ``inputs``: every path it reads. They clash when they are
    the same file after resolving symlinks and relative parts (or are hard links
    of one file), when the input lies inside a written path (a folder the run
    replaces as a whole), or when the output lies inside an input folder (it would
    add files to a model package or chip store).
    """
    for output in filter(None, written):
        resolved_output = os.path.normcase(os.path.realpath(output))
        for source in filter(None, inputs):
            resolved_input = os.path.normcase(os.path.realpath(source))
            if (
                resolved_input == resolved_output
                or _same_existing_file(output, source)
                or resolved_input.startswith(resolved_output.rstrip(os.sep) + os.sep)
                or (  # an output inside a folder input (a model package, a chip store)
                    os.path.isdir(source)
                    and resolved_output.startswith(resolved_input.rstrip(os.sep) + os.sep)
                )
            ):
                return output, source
    return None


def _same_existing_file(path: str, other: str) -> bool:
    try:
        return os.path.samefile(path, other)
    except OSError:
        return False


def remove_quietly(path: str) -> None:
    for candidate in (path, path + "-journal", path + "-wal", path + "-shm"):
        with contextlib.suppress(FileNotFoundError):
            if os.path.isdir(candidate) and not os.path.islink(candidate):
                shutil.rmtree(candidate)
            else:
                os.remove(candidate)


def publish_folder(partial: str, path: str) -> str:
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
def atomic_output(path: str) -> Iterator[str]:
    """Yield a temporary path; on success rename it to ``path``, else delete it."""
    temporary = partial_path(path)
    try:
        yield temporary
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        os.replace(temporary, path)
    except BaseException as error:
        diagnosis = out_of_room(error, temporary, path)
        remove_quietly(temporary)
        if diagnosis is not None:
            raise diagnosis from error
        raise


ROOM_LEFT_BYTES = 8 << 20  # less free space than this after a failed write: the disk is full


def out_of_room(error: BaseException, partial: str, path: str) -> OSError | None:
    """An ``OSError`` (ENOSPC, EFBIG) naming ``path`` when a write into ``partial`` (a file or
    a folder) failed for lack of room, else None.

    Libraries do not always pass the operating system's error on: GDAL/SQLite turn a full
    disk into "no such table: gpkg_contents". So, before the partial is removed, look: is
    its largest file at the process's file-size limit (RLIMIT_FSIZE, ``ulimit -f``), or is
    its disk (nearly) full? Call it from the failing write's ``except`` block.
    """
    import errno

    from .errors import write_failure

    if not isinstance(error, Exception):
        return None
    reason = write_failure(error)
    if reason is not None:  # said already; give it the output's name if it has none
        if getattr(error, "filename", None):
            return None
        code = error.errno if isinstance(getattr(error, "errno", None), int) else errno.ENOSPC  # type: ignore[attr-defined]  # checked by getattr
        return OSError(code, reason, path)
    largest = 0
    if os.path.isdir(partial):
        for folder, _, files in os.walk(partial):
            for name in files:
                with contextlib.suppress(OSError):
                    largest = max(largest, os.path.getsize(os.path.join(folder, name)))
    elif os.path.isfile(partial):
        largest = os.path.getsize(partial)
    code = None
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if limit != resource.RLIM_INFINITY and largest >= limit - 65536:
            code = errno.EFBIG
    except (ImportError, OSError, ValueError):  # Windows: no resource module
        pass
    if code is None:
        with contextlib.suppress(OSError, AttributeError):
            usage = os.statvfs(os.path.dirname(os.path.abspath(partial)))
            if usage.f_bavail * usage.f_frsize < ROOM_LEFT_BYTES:
                code = errno.ENOSPC
    if code is None:
        return None
    return OSError(code, f"{os.strerror(code)} ({type(error).__name__}: {error})", path)
