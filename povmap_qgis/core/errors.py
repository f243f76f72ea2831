"""Errors that name what the user has to fix."""

from __future__ import annotations


class PovmapInputError(ValueError):
    """Bad input: names the parameter at fault and says what to do.

    ``parameter`` is the Processing parameter name (``INPUT``, ``SCORE_FIELD``...)
    so that a message reads the same in the toolbox, in qgis_process and on the
    command line.
    """

    def __init__(self, parameter: str | None, message: str) -> None:
        self.parameter = parameter
        super().__init__(f"{parameter}: {message}" if parameter else message)


class PovmapCanceledError(Exception):
    """The user cancelled the run; outputs have been cleaned up."""


# An output that could not be written: the disk (or the user's quota, or the largest file
# the system allows) is full, or the file system is read-only. The errno where the error
# has one; the text where a library (GDAL/SQLite, HDF5) only kept the operating system's words.
WRITE_FAILURE_ERRNOS = {"ENOSPC", "EFBIG", "EDQUOT", "EROFS"}
WRITE_FAILURE_TEXTS = (
    "No space left on device",
    "File too large",
    "Disk quota exceeded",
    "database or disk is full",
    "Read-only file system",
)


def write_failure(error: BaseException | None) -> str | None:
    """The operating system's reason an output could not be written (``No space left on
    device``…), found anywhere in ``error``'s chain; None for any other error."""
    import errno as errnos
    import os

    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        code = getattr(error, "errno", None)
        if isinstance(code, int) and errnos.errorcode.get(code) in WRITE_FAILURE_ERRNOS:
            return os.strerror(code)
        text = str(error)
        for words in WRITE_FAILURE_TEXTS:
            if words.lower() in text.lower():
                return words
        error = error.__cause__ or error.__context__
    return None


def write_failure_message(reason: str, path: str | None = None) -> str:
    """What to tell the user about an output that could not be written (without the parameter)."""
    where = f" writing '{path}'" if path else ""
    return (
        f"the output could not be written ({reason}){where}; nothing was published and the "
        "unfinished files were removed. Free space on that disk (or choose a folder on "
        "another one) and run again."
    )
