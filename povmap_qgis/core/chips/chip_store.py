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
"""

import contextlib
import hashlib
import json
import os
import re
import shutil

import numpy as np

from .. import strict_json
from ..atomic import OutputLock, atomic_output, lock_path, publish_folder
from ..errors import PovmapInputError

FORMAT_VERSION = "1.0"
MANIFEST = "manifest.json"
CELL_IDS = "cell_ids.npy"
NODATA_FRACTION = "nodata_fraction.npy"
DONE = "done.npy"
MOMENTS = "moments.npy"  # per cell and band: count, mean, M2, min, max (partial stores only)
MOMENT_FIELDS = 5
RECORD_ONLY_SETTINGS = (
    "grid",
    "grid_layer",
)  # recorded in the manifest, not part of the resume key
WIDENED_DTYPES = {"float16": "float32"}  # what sampling widens an input to (see _same_inputs)
LEGACY_LOCK = "lock"  # the lock file inside partial stores of earlier versions
# The store's own files: no input may be named like one of them (its array would overwrite it).
RESERVED_NAMES = frozenset(
    os.path.splitext(name)[0] for name in (MANIFEST, CELL_IDS, NODATA_FRACTION, DONE, MOMENTS)
) | {LEGACY_LOCK}
INPUT_NAME = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
)  # a file name in the store, nothing more
INTEGRITY = "integrity"  # manifest key: each array's shape, dtype and digest (checked on open)
SAMPLED_ROWS = 32  # rows of each input array whose bytes are hashed (a cheap check on open)


def check_store_path(path, parameter="OUTPUT"):
    if not path or not path.rstrip("/").endswith(".chips"):
        raise PovmapInputError(parameter, f"'{path}' must be a folder name ending in .chips.")
    folder = os.path.dirname(os.path.abspath(path.rstrip("/")))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise PovmapInputError(
            parameter,
            f"the folder '{folder}' does not exist or is not writable; choose another output path.",
        )


def partial_store_path(path):
    folder, name = os.path.split(os.path.abspath(path.rstrip("/")))
    return os.path.join(folder, f".{name}.partial")


class ChipStoreWriter:
    """Creates or resumes the partial store; ``finish()`` publishes it.

    ``settings`` identifies the run (grid, inputs, resolution, chip size…)
    and ``resume_key`` what the chips are made from (the grid's cells, the
    input files): a partial store made with other settings or another key is
    started afresh, never mixed. The grid's path and layer
    (``RECORD_ONLY_SETTINGS``) are recorded, not compared: a grid exported to
    a temporary file for each run (a filtered layer) still resumes.
    """

    def __init__(
        self, path, cell_ids, inputs, chip_size, settings, parameter="OUTPUT", resume_key=None
    ):
        check_store_path(path, parameter)
        check_input_names([spec["name"] for spec in inputs], parameter)
        self.path = os.path.abspath(path.rstrip("/"))
        self.partial = partial_store_path(self.path)
        self.lock = lock_path(self.path)
        self.parameter = parameter
        self.cell_ids = np.asarray(cell_ids, dtype="int64")
        self.inputs = [dict(spec) for spec in inputs]
        self.chip_size = int(chip_size)
        self.settings = json.loads(json.dumps(settings, sort_keys=True, default=str))
        self.resume_key = json.loads(json.dumps(resume_key or {}, sort_keys=True, default=str))
        self.resumed = False
        self._arrays = {}
        self._lock_handle = None

    # --- life cycle -------------------------------------------------------

    def open(self):
        """Create the partial store, or resume a matching one; returns self.

        The lock is taken first: nothing of the partial store is read, removed
        or made while another run writes it.
        """
        self._take_lock()
        try:
            if os.path.isdir(self.partial) and self._partial_matches():
                self.resumed = True
                self._adopt_widened_dtypes()
                self._open_arrays("r+")
                return self
            if os.path.isdir(self.partial):
                shutil.rmtree(self.partial)
            os.makedirs(self.partial)
        except BaseException:
            self._drop_lock()
            raise
        try:
            self._create_arrays()
        except BaseException:
            self.discard()  # e.g. disk full: nothing half-made is left behind
            raise
        return self

    def nodata_fractions(self):
        """Nodata fraction per cell and input, as written so far."""
        return np.array(self._arrays[NODATA_FRACTION])

    def read_rows(self, name, rows):
        """Chips of an input already written for ``rows``."""
        return self._arrays[name].read(rows)

    def pending(self):
        """Row indices (into cell_ids) still to be written."""
        return np.flatnonzero(~self._arrays[DONE])

    def write(self, rows, chips, nodata_fractions, moments=None):
        """Store chips for ``rows``: ``chips[name]`` is [len(rows), H, W, bands].

        ``moments[name]``: each row's per-band pixel moments [len(rows), bands, 5]
        (``chips.cell_moments``), from which ``cell_moments`` gives the statistics.
        """
        rows = np.asarray(rows, dtype="int64")
        for spec in self.inputs:
            self._arrays[spec["name"]].write(rows, chips[spec["name"]])
        self._arrays[NODATA_FRACTION][rows] = nodata_fractions
        if moments is not None:
            self._arrays[MOMENTS][rows] = np.concatenate(
                [moments[spec["name"]] for spec in self.inputs], axis=1
            )
        self._arrays[DONE][rows] = True

    def cell_moments(self, name):
        """The per-cell, per-band moments of one input [n_cells, bands, 5] as written so far."""
        first = 0
        for spec in self.inputs:
            if spec["name"] == name:
                return np.array(self._arrays[MOMENTS][:, first : first + len(spec["bands"])])
            first += len(spec["bands"])
        raise KeyError(name)

    def mark_written(self, rows, nodata_fractions):
        """Record ``rows`` whose chips (and moments) another process wrote into the partial store (Spark tasks)."""
        rows = np.asarray(rows, dtype="int64")
        self._arrays[NODATA_FRACTION][rows] = nodata_fractions
        self._arrays[DONE][rows] = True

    def flush(self):
        """Make what was written durable, so a killed run resumes after it (chips before flags)."""
        for _name, array in sorted(
            self._arrays.items(), key=lambda item: (item[0] == DONE, isinstance(item[1], np.memmap))
        ):
            array.flush()

    def _release(self):
        for array in self._arrays.values():
            if isinstance(array, RowFile):
                array.close()
        self._arrays.clear()

    def finish(self, statistics=None, summary=None):
        """Publish: manifest marked complete (with ``summary`` keys), folder renamed to its final name."""
        if not self._arrays[DONE].all():
            raise RuntimeError(f"{int((~self._arrays[DONE]).sum())} cells are not written yet")
        self.flush()
        self._release()
        manifest = self._read_manifest()
        manifest["state"] = "complete"
        manifest.pop("resume_key", None)
        # Where this run's grid came from (a resumed store may have been started from another copy).
        for key in RECORD_ONLY_SETTINGS:
            if key in self.settings:
                manifest["settings"][key] = self.settings[key]
        manifest.update(summary or {})
        for spec in manifest["inputs"]:
            spec["statistics"] = (statistics or {}).get(spec["name"])
        manifest[INTEGRITY] = integrity_of(self.partial, [spec["name"] for spec in self.inputs])
        _write_json(os.path.join(self.partial, MANIFEST), manifest, self.parameter)
        os.remove(os.path.join(self.partial, DONE))
        os.remove(os.path.join(self.partial, MOMENTS))
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(self.partial, LEGACY_LOCK))
        publish_folder(self.partial, self.path)
        self._drop_lock()
        return self.path

    def close(self):
        """Stop without publishing: the partial store stays for a later resume."""
        if self._arrays:
            self.flush()
            self._release()
        self._drop_lock()

    def discard(self):
        """Stop and delete the partial store (a run whose result is unusable)."""
        self._release()
        shutil.rmtree(self.partial, ignore_errors=True)
        self._drop_lock()

    # --- internals --------------------------------------------------------

    def _manifest(self):
        return {
            "format": "povmap-chip-store",
            "format_version": FORMAT_VERSION,
            "state": "incomplete",
            "n_cells": int(len(self.cell_ids)),
            "chip_size": self.chip_size,
            "inputs": [
                {key: value for key, value in spec.items() if key != "statistics"}
                for spec in self.inputs
            ],
            "settings": self.settings,
            "resume_key": self.resume_key,
        }

    def _create_arrays(self):
        n, size = len(self.cell_ids), self.chip_size
        np.save(os.path.join(self.partial, CELL_IDS), self.cell_ids)
        shapes = {
            spec["name"]: ((n, size, size, len(spec["bands"])), spec["dtype"])
            for spec in self.inputs
        }
        shapes[NODATA_FRACTION] = ((n, len(self.inputs)), "float32")
        bands = sum(len(spec["bands"]) for spec in self.inputs)
        shapes[MOMENTS] = ((n, bands, MOMENT_FIELDS), "float64")
        shapes[DONE] = ((n,), "bool")
        for name, (shape, dtype) in shapes.items():
            file_name = name if name.endswith(".npy") else f"{name}.npy"
            try:
                array = np.lib.format.open_memmap(
                    os.path.join(self.partial, file_name), mode="w+", dtype=dtype, shape=shape
                )
            except OSError as error:
                raise _no_space(error, self.parameter) from None
            _reserve_disk(array.filename, self.parameter)
            self._arrays[name] = (
                array if name in (NODATA_FRACTION, MOMENTS, DONE) else RowFile(array.filename, "r+")
            )
        self._arrays[NODATA_FRACTION][:] = np.nan
        self._arrays[MOMENTS][:] = 0.0  # a cell not written counts no pixel
        _write_json(os.path.join(self.partial, MANIFEST), self._manifest(), self.parameter)

    def _open_arrays(self, mode):
        for spec in self.inputs:
            self._arrays[spec["name"]] = RowFile(
                os.path.join(self.partial, f"{spec['name']}.npy"), mode
            )
        for name in (NODATA_FRACTION, MOMENTS, DONE):
            self._arrays[name] = np.load(os.path.join(self.partial, name), mmap_mode=mode)

    def _partial_matches(self):
        try:
            manifest = self._read_manifest()
            cell_ids = np.load(os.path.join(self.partial, CELL_IDS))
        except (OSError, ValueError):
            return False
        return (
            _resume_settings(manifest.get("settings")) == _resume_settings(self.settings)
            and manifest.get("resume_key") == self.resume_key
            and manifest.get("chip_size") == self.chip_size
            and _same_inputs(manifest.get("inputs"), self._manifest()["inputs"])
            and np.array_equal(cell_ids, self.cell_ids)
            and os.path.exists(os.path.join(self.partial, DONE))
            and os.path.exists(os.path.join(self.partial, MOMENTS))
        )

    def _adopt_widened_dtypes(self):
        """Keep the dtypes the partial store was made with (an input may have been widened)."""
        for spec, recorded in zip(self.inputs, self._read_manifest()["inputs"], strict=True):
            spec["dtype"] = recorded["dtype"]

    def _read_manifest(self):
        with open(os.path.join(self.partial, MANIFEST), encoding="utf-8") as handle:
            return json.load(handle)

    def _take_lock(self):
        """Hold ``.NAME.chips.lock`` exclusively, or refuse naming the run that holds it."""
        self._lock_handle = OutputLock(
            self.path, self.parameter, "the chip store", self.partial
        ).acquire()

    def _drop_lock(self):
        if self._lock_handle is not None:
            self._lock_handle.release()
            self._lock_handle = None


def check_input_name(name, parameter="OUTPUT"):
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


def check_input_names(names, parameter="OUTPUT"):
    """Every name checked, and distinct (also where file names ignore case)."""
    seen = set()
    for name in names:
        check_input_name(name, parameter)
        if name.lower() in seen:
            raise PovmapInputError(
                parameter, f"two inputs are named '{name}' (ignoring case); rename one."
            )
        seen.add(name.lower())


def sampled_rows(n):
    """The rows whose bytes ``integrity_of`` hashes: the first, the last and evenly between."""
    return np.unique(np.linspace(0, max(n - 1, 0), min(n, SAMPLED_ROWS)).round().astype("int64"))


def _array_record(path, file_name, rows=None):
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


def integrity_of(path, input_names):
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


def _check_integrity(path, recorded, input_names):
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


def _resume_settings(settings):
    if not isinstance(settings, dict):
        return settings
    return {key: value for key, value in settings.items() if key not in RECORD_ONLY_SETTINGS}


def _same_inputs(recorded, wanted):
    """A partial store's inputs match the run's, dtypes aside where one was widened.

    Sampling widens an input from float16 to float32 when its values do not fit float16
    (core/chips/sampling.py); the resumed run keeps the wider dtype.
    """
    if not isinstance(recorded, list) or len(recorded) != len(wanted):
        return False
    for old, new in zip(recorded, wanted, strict=True):
        if not isinstance(old, dict) or {**old, "dtype": new["dtype"]} != new:
            return False
        if old.get("dtype") not in (new["dtype"], WIDENED_DTYPES.get(new["dtype"])):
            return False
    return True


def _reserve_disk(path, parameter):
    """Allocate the file's blocks now: a full disk fails here, not as a crash mid-run."""
    if not hasattr(os, "posix_fallocate"):
        return
    descriptor = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(descriptor, 0, os.fstat(descriptor).st_size)
    except OSError as error:
        raise _no_space(error, parameter) from None
    finally:
        os.close(descriptor)


def _no_space(error, parameter):
    return PovmapInputError(
        parameter,
        f"not enough disk space for the chip store ({error.strerror}); free space or choose another output folder.",
    )


def _write_json(path, data, parameter="OUTPUT"):
    text = strict_json.dumps(data, parameter, "the chip store manifest", indent=2, sort_keys=True)
    with atomic_output(path) as temporary, open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)


class ChipStore:
    """A finished chip store, opened read-only and memory-mapped."""

    def __init__(self, path):
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

    def __len__(self):
        return len(self.cell_ids)

    def chips(self, name):
        """The memory-mapped array of one input, [n_cells, H, W, bands]."""
        return self._chips[name]

    def batch(self, rows, names=None):
        """Chips of some rows for every input, read from disk (only those rows).

        Read with pread rather than through the memory maps, so that reading a
        whole store batch by batch keeps the process's memory flat.
        """
        rows = np.asarray(rows, dtype="int64")
        return {name: self.batch_of(name, rows) for name in (names or self.input_names)}

    def batch_of(self, name, rows):
        """Chips of one input for some rows (pread, thread-safe)."""
        return self._row_files[name].read(np.asarray(rows, dtype="int64"))

    def close(self):
        for row_file in self._row_files.values():
            row_file.close()
        self._row_files = {}

    def __del__(self):
        self.close() if hasattr(self, "_row_files") else None


def _checked_manifest(path, manifest):
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


def _load_array(path, file_name, shape=(), ndim=None):
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


def _damaged(path, file_name, problem):
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

    def __init__(self, path, mode="r"):
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
        self._descriptor = os.open(path, os.O_RDWR if mode == "r+" else os.O_RDONLY)

    def _runs(self, rows):
        """(positions into ``rows``, first row) for each run of consecutive rows, in row order."""
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        breaks = np.flatnonzero(np.diff(ordered) != 1) + 1
        return [
            (order[run], int(ordered[run[0]]))
            for run in np.split(np.arange(len(rows)), breaks)
            if len(run)
        ]

    def write(self, rows, values):
        rows = np.asarray(rows, dtype="int64")
        values = np.asarray(values, dtype=self.dtype).reshape((len(rows),) + tuple(self.shape[1:]))
        for positions, first in self._runs(rows):
            os.pwrite(
                self._descriptor,
                np.ascontiguousarray(values[positions]).tobytes(),
                self.offset + first * self.row_bytes,
            )

    def read(self, rows):
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

    def flush(self):
        os.fsync(self._descriptor)

    def read_and_close(self, rows):
        try:
            return self.read(rows)
        finally:
            self.close()

    def close(self):
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None
