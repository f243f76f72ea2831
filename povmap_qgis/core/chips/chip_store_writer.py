"""Writing a chip store: the partial store, resumed or made afresh, published when complete.

The store's layout and the reader are in ``chip_store.py``. A store is written under
``.NAME.chips.partial/`` with one done flag and the pixel moments per cell, under an
exclusive lock on ``.NAME.chips.lock``, and renamed to ``NAME.chips/`` only when every
cell is written; a stopped run's partial store is resumed by the next run with the same
settings and resume key.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import numpy as np

from .. import strict_json
from ..atomic import OutputLock, atomic_output, lock_path, publish_folder
from ..errors import PovmapInputError
from .chip_store import (
    CELL_IDS,
    DONE,
    FORMAT_VERSION,
    INTEGRITY,
    LEGACY_LOCK,
    MANIFEST,
    MOMENT_FIELDS,
    MOMENTS,
    NODATA_FRACTION,
    WIDENED_DTYPES,
    RowFile,
    check_input_names,
    integrity_of,
    partial_store_path,
)

RECORD_ONLY_SETTINGS = (
    "grid",
    "grid_layer",
)  # recorded in the manifest, not part of the resume key


def check_store_path(path: str | None, parameter: str = "OUTPUT") -> None:
    if not path or not path.rstrip("/").endswith(".chips"):
        raise PovmapInputError(parameter, f"'{path}' must be a folder name ending in .chips.")
    folder = os.path.dirname(os.path.abspath(path.rstrip("/")))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise PovmapInputError(
            parameter,
            f"the folder '{folder}' does not exist or is not writable; choose another output path.",
        )


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
        self,
        path: str,
        cell_ids: Any,
        inputs: Iterable[Mapping[str, Any]],
        chip_size: int,
        settings: Mapping[str, Any],
        parameter: str = "OUTPUT",
        resume_key: Mapping[str, Any] | None = None,
    ) -> None:
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
        self._arrays: dict[str, Any] = {}  # RowFile per input, memory maps of the rest
        self._lock_handle: OutputLock | None = None

    # --- life cycle -------------------------------------------------------

    def open(self) -> ChipStoreWriter:
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

    def nodata_fractions(self) -> np.ndarray:
        """Nodata fraction per cell and input, as written so far."""
        return np.array(self._arrays[NODATA_FRACTION])

    def read_rows(self, name: str, rows: np.ndarray) -> np.ndarray:
        """Chips of an input already written for ``rows``."""
        return self._arrays[name].read(rows)

    def pending(self) -> np.ndarray:
        """Row indices (into cell_ids) still to be written."""
        return np.flatnonzero(~self._arrays[DONE])

    def write(
        self,
        rows: np.ndarray,
        chips: Mapping[str, np.ndarray],
        nodata_fractions: np.ndarray,
        moments: Mapping[str, np.ndarray] | None = None,
    ) -> None:
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

    def cell_moments(self, name: str) -> np.ndarray:
        """The per-cell, per-band moments of one input [n_cells, bands, 5] as written so far."""
        first = 0
        for spec in self.inputs:
            if spec["name"] == name:
                return np.array(self._arrays[MOMENTS][:, first : first + len(spec["bands"])])
            first += len(spec["bands"])
        raise KeyError(name)

    def mark_written(self, rows: np.ndarray, nodata_fractions: np.ndarray) -> None:
        """Record ``rows`` whose chips (and moments) another process wrote into the partial store (Spark tasks)."""
        rows = np.asarray(rows, dtype="int64")
        self._arrays[NODATA_FRACTION][rows] = nodata_fractions
        self._arrays[DONE][rows] = True

    def flush(self) -> None:
        """Make what was written durable, so a killed run resumes after it (chips before flags)."""
        for _name, array in sorted(
            self._arrays.items(), key=lambda item: (item[0] == DONE, isinstance(item[1], np.memmap))
        ):
            array.flush()

    def _release(self) -> None:
        for array in self._arrays.values():
            if isinstance(array, RowFile):
                array.close()
        self._arrays.clear()

    def finish(
        self, statistics: Mapping[str, Any] | None = None, summary: Mapping[str, Any] | None = None
    ) -> str:
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

    def close(self) -> None:
        """Stop without publishing: the partial store stays for a later resume."""
        if self._arrays:
            self.flush()
            self._release()
        self._drop_lock()

    def discard(self) -> None:
        """Stop and delete the partial store (a run whose result is unusable)."""
        self._release()
        shutil.rmtree(self.partial, ignore_errors=True)
        self._drop_lock()

    # --- internals --------------------------------------------------------

    def _manifest(self) -> dict[str, Any]:
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

    def _create_arrays(self) -> None:
        n, size = len(self.cell_ids), self.chip_size
        np.save(os.path.join(self.partial, CELL_IDS), self.cell_ids)
        shapes: dict[str, tuple[tuple[int, ...], str]] = {
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

    def _open_arrays(self, mode: Literal["r+", "r"]) -> None:
        for spec in self.inputs:
            self._arrays[spec["name"]] = RowFile(
                os.path.join(self.partial, f"{spec['name']}.npy"), mode
            )
        for name in (NODATA_FRACTION, MOMENTS, DONE):
            self._arrays[name] = np.load(os.path.join(self.partial, name), mmap_mode=mode)

    def _partial_matches(self) -> bool:
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

    def _adopt_widened_dtypes(self) -> None:
        """Keep the dtypes the partial store was made with (an input may have been widened)."""
        for spec, recorded in zip(self.inputs, self._read_manifest()["inputs"], strict=True):
            spec["dtype"] = recorded["dtype"]

    def _read_manifest(self) -> dict[str, Any]:
        with open(os.path.join(self.partial, MANIFEST), encoding="utf-8") as handle:
            return json.load(handle)

    def _take_lock(self) -> None:
        """Hold ``.NAME.chips.lock`` exclusively, or refuse naming the run that holds it."""
        self._lock_handle = OutputLock(
            self.path, self.parameter, "the chip store", self.partial
        ).acquire()

    def _drop_lock(self) -> None:
        if self._lock_handle is not None:
            self._lock_handle.release()
            self._lock_handle = None


def _resume_settings(settings: Any) -> Any:
    if not isinstance(settings, dict):
        return settings
    return {key: value for key, value in settings.items() if key not in RECORD_ONLY_SETTINGS}


def _same_inputs(recorded: Any, wanted: Any) -> bool:
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


def _reserve_disk(path: str, parameter: str) -> None:
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


def _no_space(error: OSError, parameter: str) -> PovmapInputError:
    return PovmapInputError(
        parameter,
        f"not enough disk space for the chip store ({error.strerror}); free space or choose another output folder.",
    )


def _write_json(path: str, data: Any, parameter: str = "OUTPUT") -> None:
    text = strict_json.dumps(data, parameter, "the chip store manifest", indent=2, sort_keys=True)
    with atomic_output(path) as temporary, open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
