"""The chip store: aligned image chips per cell, on disk, memory-mappable.

Layout (docs/contracts.md, format 1.0)::

    NAME.chips/
      manifest.json          format, grid, CRS, resolution, chip size, inputs
                             (source, bands, dtype, resampling, statistics), state,
                             integrity (each array's shape, dtype, sha256; checked on open)
      cell_ids.npy           int64 [n_cells], row order of every array below
      <input>.npy            [n_cells, H, W, bands] per input, NaN = nodata
      nodata_fraction.npy    float32 [n_cells, n_inputs]

A store is written under ``.NAME.chips.partial/`` (with ``done.npy``, one flag
per cell, and ``moments.npy``, each cell's per-band pixel moments) and renamed
to ``NAME.chips/`` only when every cell is written, so a finished store is
never half-overwritten. A run that stops keeps the partial folder; the next
run with the same settings and resume key (the grid's content, the input
files) resumes where it stopped. The manifest's statistics are combined from
the per-cell moments in row order, so a resumed store is byte for byte an
uninterrupted one, whichever run (or Spark task) sampled which cell. One run
at a time: the writer holds an exclusive lock on ``.NAME.chips.lock`` beside
it (``fcntl.flock``; the kernel releases it when the process ends, however it
ends, so a killed run never blocks the next and a reused process id cannot
fool it). Readers use ``numpy.load(..., mmap_mode="r")``: reading a
batch never loads the whole store.

This module holds the layout, the names an input may take, the integrity record and
the reader (``ChipStore``, the only one: train, crossvalidate, predict, the drift check and
Spark's executors open a store through it, and read the cells' id field and flag share from
it; tests/test_chip_store_contract.py); the writer is ``chip_store_writer.ChipStoreWriter``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NoReturn

import numpy as np

from ..errors import PovmapInputError
from ..names import CELL_ID

FORMAT_VERSION = "1.0"
MANIFEST = "manifest.json"
CELL_IDS = "cell_ids.npy"
NODATA_FRACTION = "nodata_fraction.npy"
DONE = "done.npy"
MOMENTS = "moments.npy"  # per cell and band: count, mean, M2, min, max (partial stores only)
MOMENT_FIELDS = 5
WIDENED_DTYPES = {
    "float16": "float32"
}  # what sampling widens an input to (see chip_store_writer._same_inputs)
LEGACY_LOCK = "lock"  # the lock file inside partial stores of earlier versions
# The store's own files: no input may be named like one of them (its array would overwrite it).
RESERVED_NAMES = frozenset(
    os.path.splitext(name)[0] for name in (MANIFEST, CELL_IDS, NODATA_FRACTION, DONE, MOMENTS)
) | {LEGACY_LOCK}
INPUT_NAME = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
)  # a file name in the store, nothing more
# a store's cells with more nodata than this in an input are flagged (its manifest records the
# MAX_NODATA it was sampled with; stores that do not were sampled with this default)
DEFAULT_MAX_NODATA = 0.1
INTEGRITY = "integrity"  # manifest key: each array's shape, dtype and digest (checked on open)
SAMPLED_ROWS = 32  # rows of each input array whose bytes are hashed (a cheap check on open)


def partial_store_path(path: str) -> str:
    folder, name = os.path.split(os.path.abspath(path.rstrip("/")))
    return os.path.join(folder, f".{name}.partial")


def check_input_name(name: str, parameter: str = "OUTPUT") -> None:
    """An input's name is a plain file name in the store, none of the store's own files."""
    if not isinstance(name, str) or not INPUT_NAME.match(name):
        raise PovmapInputError(
            parameter,
            f"the input name {name!r} cannot name a chip store array: use letters, digits, '-' "
            "and '_' only (at most 64), no path; rename that raster or layer.",
        )
    if name.lower() in RESERVED_NAMES:
        raise PovmapInputError(
            parameter,
            f"the input name '{name}' is the name of one of the chip store's own files "
            f"({', '.join(sorted(RESERVED_NAMES))}); rename that raster or layer.",
        )


def check_input_names(names: Sequence[str], parameter: str = "OUTPUT") -> None:
    """Every name checked, and distinct (also where file names ignore case)."""
    seen = set()
    for name in names:
        check_input_name(name, parameter)
        if name.lower() in seen:
            raise PovmapInputError(
                parameter, f"two inputs are named '{name}' (ignoring case); rename one."
            )
        seen.add(name.lower())


def sampled_rows(n: int) -> np.ndarray:
    """The rows whose bytes ``integrity_of`` hashes: the first, the last and evenly between."""
    return np.unique(np.linspace(0, max(n - 1, 0), min(n, SAMPLED_ROWS)).round().astype("int64"))


def _array_record(path: str, file_name: str, rows: np.ndarray | None = None) -> dict[str, Any]:
    array = np.load(os.path.join(path, file_name), mmap_mode="r")
    if rows is None:
        data = np.ascontiguousarray(array)
    else:
        data = RowFile(os.path.join(path, file_name)).read_and_close(rows)
    return {
        "shape": [int(size) for size in array.shape],
        "dtype": array.dtype.str,
        "sha256": hashlib.sha256(data.tobytes()).hexdigest(),
        **({"rows": "sampled"} if rows is not None else {}),
    }


def integrity_of(path: str, input_names: Iterable[str]) -> dict[str, Any]:
    """Shape, dtype and sha256 of each array of a store (inputs: of ``sampled_rows``).

    ``cell_ids.npy`` and ``nodata_fraction.npy`` are hashed whole (8 and 4 bytes a cell): a
    shifted id moves every label and prediction to the neighbouring cell without a word.
    """
    cell_ids = np.load(os.path.join(path, CELL_IDS), mmap_mode="r")
    rows = sampled_rows(len(cell_ids))
    record = {
        CELL_IDS: _array_record(path, CELL_IDS),
        NODATA_FRACTION: _array_record(path, NODATA_FRACTION),
    }
    for name in input_names:
        record[f"{name}.npy"] = _array_record(path, f"{name}.npy", rows)
    return record


def _check_integrity(
    path: str, recorded: Mapping[str, Any] | None, input_names: Iterable[str]
) -> None:
    """The arrays are the ones the manifest recorded (stores without the record are not checked)."""
    if not isinstance(recorded, dict):
        _damaged(path, MANIFEST, f"has an '{INTEGRITY}' entry that is not an object")
    wanted = [CELL_IDS, NODATA_FRACTION] + [f"{name}.npy" for name in input_names]
    if sorted(recorded) != sorted(wanted):
        _damaged(path, MANIFEST, f"records the arrays {sorted(recorded)}, not {sorted(wanted)}")
    try:
        found = integrity_of(path, input_names)
    except (OSError, ValueError, EOFError) as error:
        _damaged(path, CELL_IDS, f"cannot be read ({error})")
    for file_name in wanted:
        for key, what in (("shape", "shape"), ("dtype", "data type"), ("sha256", "content")):
            if recorded[file_name].get(key) != found[file_name][key]:
                _damaged(
                    path,
                    file_name,
                    f"does not have the {what} recorded in {MANIFEST} when the store was "
                    "written (edited, shifted, replaced or damaged since): its rows would be "
                    "matched to the wrong cells",
                )


class ChipStore:
    """A finished chip store, opened read-only and memory-mapped."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path.rstrip("/"))
        try:
            with open(os.path.join(self.path, MANIFEST), encoding="utf-8") as handle:
                self.manifest = json.load(handle)
        except (OSError, ValueError) as error:
            raise PovmapInputError("CHIPS", f"'{path}' is not a chip store ({error}).") from None
        except RecursionError:
            raise PovmapInputError(
                "CHIPS", f"'{path}' is not a chip store (its {MANIFEST} is nested too deeply)."
            ) from None
        if not isinstance(self.manifest, dict):
            raise PovmapInputError(
                "CHIPS", f"'{path}' is not a chip store ({MANIFEST} is not an object)."
            )
        if self.manifest.get("format_version") != FORMAT_VERSION:
            raise PovmapInputError(
                "CHIPS",
                f"'{path}' has chip store format {self.manifest.get('format_version')}; this version reads {FORMAT_VERSION}.",
            )
        if self.manifest.get("state") != "complete":
            raise PovmapInputError(
                "CHIPS", f"'{path}' is not complete; run the chip sampling again to finish it."
            )
        self.input_names, chip_size = _checked_manifest(path, self.manifest)
        self.cell_ids = _load_array(self.path, CELL_IDS, ndim=1)
        self.nodata_fraction = _load_array(
            self.path, NODATA_FRACTION, shape=(len(self.cell_ids), len(self.input_names))
        )
        if self.cell_ids.dtype.kind not in "iu":
            _damaged(
                self.path, CELL_IDS, f"holds {self.cell_ids.dtype} values, not integer cell ids"
            )
        self._chips = {
            name: _load_array(
                self.path, f"{name}.npy", shape=(len(self.cell_ids), chip_size, chip_size), ndim=4
            )
            for name in self.input_names
        }
        if INTEGRITY in self.manifest:  # stores of earlier versions have no record
            _check_integrity(self.path, self.manifest[INTEGRITY], self.input_names)
        self._row_files = {
            name: RowFile(os.path.join(self.path, f"{name}.npy"), "r") for name in self.input_names
        }

    def __len__(self) -> int:
        return len(self.cell_ids)

    def id_field(self, chosen: str | None = None) -> str:
        """The grid's cell id field: ``chosen`` (ID_FIELD), else the one the store was sampled
        by, else ``cell_id``."""
        return chosen or self.manifest["settings"].get("id_field") or CELL_ID

    @property
    def max_nodata(self) -> float:
        """The nodata share above which a cell is flagged (the MAX_NODATA it was sampled with)."""
        return float(self.manifest.get("max_nodata", DEFAULT_MAX_NODATA))

    def chips(self, name: str) -> np.ndarray:
        """The memory-mapped array of one input, [n_cells, H, W, bands]."""
        return self._chips[name]

    def batch(self, rows: Any, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Chips of some rows for every input, read from disk (only those rows).

        Read with pread rather than through the memory maps, so that reading a
        whole store batch by batch keeps the process's memory flat.
        """
        rows = np.asarray(rows, dtype="int64")
        return {name: self.batch_of(name, rows) for name in (names or self.input_names)}

    def batch_of(self, name: str, rows: Any) -> np.ndarray:
        """Chips of one input for some rows (pread, thread-safe)."""
        return self._row_files[name].read(np.asarray(rows, dtype="int64"))

    def close(self) -> None:
        for row_file in self._row_files.values():
            row_file.close()
        self._row_files = {}

    def __del__(self) -> None:
        self.close() if hasattr(self, "_row_files") else None


def _checked_manifest(path: str, manifest: Any) -> tuple[list[str], int]:
    """The input names and chip size a finished store's manifest must give, or a CHIPS message."""
    inputs, chip_size = manifest.get("inputs"), manifest.get("chip_size")
    problem = None
    if not isinstance(inputs, list) or not inputs:
        problem = "no list of inputs"
    elif not all(isinstance(spec, dict) and isinstance(spec.get("name"), str) for spec in inputs):
        problem = "an input without a name"
    elif not all(
        INPUT_NAME.match(spec["name"]) and spec["name"].lower() not in RESERVED_NAMES
        for spec in inputs
    ) or len({spec["name"].lower() for spec in inputs}) != len(inputs):
        names = ", ".join(repr(spec["name"]) for spec in inputs)
        problem = f"input names that are not distinct plain file names of its own ({names})"
    elif not isinstance(manifest.get("settings"), dict):
        problem = "no settings"
    elif isinstance(chip_size, bool) or not isinstance(chip_size, int) or chip_size < 1:
        problem = f"no valid chip_size ({chip_size!r})"
    if problem:
        raise PovmapInputError(
            "CHIPS",
            f"the chip store '{path}' is damaged: its {MANIFEST} has {problem}; "
            "sample the chips again (Sample chips) into a new store.",
        )
    return [spec["name"] for spec in inputs], chip_size


def _load_array(
    path: str, file_name: str, shape: tuple[int, ...] = (), ndim: int | None = None
) -> np.ndarray:
    """A store array memory-mapped, checked against the shape the manifest implies."""
    file_path = os.path.join(path, file_name)
    if not os.path.isfile(file_path):
        _damaged(path, file_name, "is missing")
    try:
        array = np.load(file_path, mmap_mode="r")
    except (OSError, ValueError, EOFError) as error:
        _damaged(path, file_name, f"cannot be read, it may be truncated ({error})")
    if not isinstance(array, np.ndarray):
        _damaged(path, file_name, "is not a single array")
    if (ndim is not None and array.ndim != ndim) or tuple(array.shape[: len(shape)]) != shape:
        expected = " × ".join([str(size) for size in shape] + ["…"] * ((ndim or 0) - len(shape)))
        _damaged(
            path,
            file_name,
            f"has shape {' × '.join(str(size) for size in array.shape)} where the manifest and "
            f"{CELL_IDS} give {expected}",
        )
    return array


def _damaged(path: str, file_name: str, problem: str) -> NoReturn:
    raise PovmapInputError(
        "CHIPS",
        f"the chip store '{path}' is damaged: {file_name} {problem}; "
        "sample the chips again (Sample chips) into a new store.",
    )


class RowFile:
    """Rows of an ``.npy`` file written and read with pwrite/pread.

    A memory map would do the same, but pages touched through a map count as
    the process's resident memory until unmapped, so sampling or training over
    a large store would look like (and on small machines, be) growing memory.
    """

    def __init__(self, path: str, mode: str = "r") -> None:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            reader = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            self.shape, fortran_order, self.dtype = reader(handle)
            self.offset = handle.tell()
        if fortran_order:
            raise ValueError(f"{path}: Fortran-ordered arrays are not chip store arrays")
        self.row_bytes = int(np.prod(self.shape[1:], dtype="int64")) * self.dtype.itemsize
        self._descriptor: int = os.open(path, os.O_RDWR if mode == "r+" else os.O_RDONLY)

    def _runs(self, rows: np.ndarray) -> list[tuple[np.ndarray, int]]:
        """(positions into ``rows``, first row) for each run of consecutive rows, in row order."""
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        breaks = np.flatnonzero(np.diff(ordered) != 1) + 1
        return [
            (order[run], int(ordered[run[0]]))
            for run in np.split(np.arange(len(rows)), breaks)
            if len(run)
        ]

    def write(self, rows: np.ndarray, values: np.ndarray) -> None:
        rows = np.asarray(rows, dtype="int64")
        values = np.asarray(values, dtype=self.dtype).reshape((len(rows),) + tuple(self.shape[1:]))
        for positions, first in self._runs(rows):
            os.pwrite(
                self._descriptor,
                np.ascontiguousarray(values[positions]).tobytes(),
                self.offset + first * self.row_bytes,
            )

    def read(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype="int64")
        out = np.empty((len(rows),) + tuple(self.shape[1:]), dtype=self.dtype)
        for positions, first in self._runs(rows):
            size = len(positions) * self.row_bytes
            data = os.pread(self._descriptor, size, self.offset + first * self.row_bytes)
            if len(data) != size:
                raise OSError(f"short read in a chip store array ({len(data)} of {size} bytes)")
            out[positions] = np.frombuffer(data, dtype=self.dtype).reshape(
                (len(positions),) + tuple(self.shape[1:])
            )
        return out

    def flush(self) -> None:
        os.fsync(self._descriptor)

    def read_and_close(self, rows: np.ndarray) -> np.ndarray:
        try:
            return self.read(rows)
        finally:
            self.close()

    def close(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None  # type: ignore[assignment]  # closed: no read or write after
