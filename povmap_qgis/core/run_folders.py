"""Private temporary folders owned by a running process, removed once it is gone.

When a layer has to be copied for the worker (a memory layer, a filter, a
selection), the copy holds household points. It goes into a folder of its own
run, ``<temp>/povmap-exports-<user>/run-<pid>-<created>-<random>/`` (the parent
readable by the user only), which the run removes when it ends. A run that is
killed cannot; the next povmap algorithm and the next plugin load remove every
run folder whose process is no longer alive (``remove_stale_run_folders``).

A process id can be reused: a folder is also stale when the process now holding
its id started after the folder was made (checked where the system tells the
start time, i.e. Linux). Plain Python; no QGIS.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
import uuid

ROOT_PREFIX = "povmap-exports-"
_RUN_FOLDER = re.compile(r"^run-(\d+)-(\d+)-[0-9a-f]+$")


def exports_root() -> str:
    """The user's folder of run folders under the system temp folder."""
    owner = os.getuid() if hasattr(os, "getuid") else _user_name()
    return os.path.join(tempfile.gettempdir(), f"{ROOT_PREFIX}{owner}")


def make_run_folder(root: str | None = None) -> str:
    """A new, empty folder owned by this process's run; the caller removes it when done."""
    root = _private_root(root or exports_root())
    name = f"run-{os.getpid()}-{int(time.time())}-{uuid.uuid4().hex[:8]}"
    path = os.path.join(root, name)
    os.mkdir(path, 0o700)
    return path


def remove_stale_run_folders(root: str | None = None) -> list[str]:
    """Remove the run folders of processes that are gone; return their paths. Never raises."""
    root = root or exports_root()
    removed: list[str] = []
    try:
        names = os.listdir(root)
    except OSError:
        return removed
    for name in names:
        match = _RUN_FOLDER.match(name)
        if not match:
            continue
        pid, created = int(match.group(1)), int(match.group(2))
        if _owner_alive(pid, created):
            continue
        path = os.path.join(root, name)
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.exists(path):
            removed.append(path)
    return removed


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists (a zombie counts as gone)."""
    if pid <= 0:
        return False
    if os.name == "nt":
        return _windows_process_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return _linux_state(pid) != "Z"


def _owner_alive(pid: int, created: int) -> bool:
    if not process_alive(pid):
        return False
    started = _linux_start_time(pid)
    # a margin for clock steps: a live owner must never lose its folder
    return started is None or started <= created + 60


def _private_root(root: str) -> str:
    os.makedirs(root, 0o700, exist_ok=True)
    if hasattr(os, "getuid"):
        status = os.lstat(root)
        if os.path.islink(root) or status.st_uid != os.getuid():
            raise PermissionError(
                f"the temporary folder '{root}' is not owned by this user (or is a link); "
                "remove it or set TMPDIR to a private folder."
            )
        if status.st_mode & 0o077:
            os.chmod(root, 0o700)
    return root


def _linux_stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its last ')'
    return text[text.rfind(")") + 2 :].split()


def _linux_state(pid: int) -> str | None:
    fields = _linux_stat_fields(pid)
    return fields[0] if fields else None


def _linux_start_time(pid: int) -> float | None:
    """Seconds since the epoch when ``pid`` started, or None where unknown."""
    fields = _linux_stat_fields(pid)
    if not fields:
        return None
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            boot = next(int(line.split()[1]) for line in handle if line.startswith("btime "))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, ValueError, IndexError):
        return None


def _windows_process_alive(pid: int) -> bool:
    import ctypes

    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]  # Windows only
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return False
    try:
        code = ctypes.c_ulong()
        kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        return code.value == 259  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


def _user_name() -> str:
    import getpass

    try:
        return re.sub(r"[^A-Za-z0-9_.-]", "_", getpass.getuser())
    except Exception:  # no user name available: one shared name, still private by its mode
        return "user"
