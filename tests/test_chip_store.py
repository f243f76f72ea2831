"""The chip store data contract: layout, memory-mapped reads, resume, locking (no QGIS)."""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from povmap_qgis.core.atomic import lock_path
from povmap_qgis.core.chips.chip_store import ChipStore, partial_store_path
from povmap_qgis.core.chips.chip_store_writer import ChipStoreWriter
from povmap_qgis.core.errors import PovmapInputError

INPUTS = [
    {
        "name": "daytime",
        "source": "/data/s2.tif",
        "bands": [4, 3, 2],
        "dtype": "float16",
        "resampling": "bilinear",
    },
    {
        "name": "nightlights",
        "source": "/data/viirs.tif",
        "bands": [1],
        "dtype": "float16",
        "resampling": "bilinear",
    },
]
SETTINGS = {"grid": "/data/grid.gpkg", "resolution": 10.0, "crs": "EPSG:32642"}


def fake_chips(rows, size=8):
    rows = np.asarray(rows)
    daytime = np.broadcast_to(
        rows[:, None, None, None].astype("float16"), (len(rows), size, size, 3)
    ).copy()
    lights = np.broadcast_to(
        (rows[:, None, None, None] * 0.5).astype("float16"), (len(rows), size, size, 1)
    ).copy()
    return {"daytime": daytime, "nightlights": lights}, np.zeros((len(rows), 2), dtype="float32")


def writer(path, cell_ids, settings=SETTINGS):
    return ChipStoreWriter(str(path), cell_ids, INPUTS, 8, settings).open()


def test_a_finished_store_follows_the_data_contract(tmp_path):
    cell_ids = np.arange(500_000_000_000_000_000, 500_000_000_000_000_020, dtype="int64")
    store_writer = writer(tmp_path / "grid.chips", cell_ids)
    chips, nodata = fake_chips(np.arange(20))
    nodata[3] = [0.25, 0.0]
    store_writer.write(np.arange(20), chips, nodata)
    path = store_writer.finish(statistics={"daytime": {"mean": [1, 2, 3]}})
    assert sorted(os.listdir(path)) == [
        "cell_ids.npy",
        "daytime.npy",
        "manifest.json",
        "nightlights.npy",
        "nodata_fraction.npy",
    ]
    assert not os.path.exists(partial_store_path(path))
    with open(os.path.join(path, "manifest.json"), encoding="utf-8") as handle:
        manifest = json.load(handle)
    assert (
        manifest["state"] == "complete"
        and manifest["format_version"] == "1.0"
        and manifest["chip_size"] == 8
    )
    assert [spec["name"] for spec in manifest["inputs"]] == ["daytime", "nightlights"]
    assert (
        manifest["inputs"][0]["statistics"] == {"mean": [1, 2, 3]}
        and manifest["settings"] == SETTINGS
    )
    daytime = np.load(os.path.join(path, "daytime.npy"), mmap_mode="r")
    assert daytime.shape == (20, 8, 8, 3) and daytime.dtype == np.float16
    assert np.array_equal(np.load(os.path.join(path, "cell_ids.npy")), cell_ids)
    assert np.load(os.path.join(path, "nodata_fraction.npy"))[3].tolist() == [0.25, 0.0]


def test_batches_are_read_from_memory_maps_in_the_requested_order(tmp_path):
    store_writer = writer(tmp_path / "g.chips", np.arange(50))
    store_writer.write(np.arange(50), *fake_chips(np.arange(50)))
    store = ChipStore(store_writer.finish())
    assert isinstance(store.chips("daytime"), np.memmap) and len(store) == 50
    batch = store.batch([7, 2, 41])
    assert batch["daytime"][:, 0, 0, 0].tolist() == [7, 2, 41]
    assert batch["nightlights"][:, 0, 0, 0].tolist() == [3.5, 1.0, 20.5]


def test_a_stopped_run_resumes_where_it_stopped(tmp_path):
    first = writer(tmp_path / "g.chips", np.arange(30))
    first.write(np.arange(12), *fake_chips(np.arange(12)))
    first.flush()
    first.close()
    assert not os.path.exists(tmp_path / "g.chips")
    second = writer(tmp_path / "g.chips", np.arange(30))
    assert second.resumed and second.pending().tolist() == list(range(12, 30))
    second.write(second.pending(), *fake_chips(second.pending()))
    store = ChipStore(second.finish())
    assert store.batch(np.arange(30))["daytime"][:, 0, 0, 0].tolist() == list(range(30))


def _killed_writer(path, n_cells, n_written):
    """A writer process that stops dead after writing ``n_written`` cells (no close: files stay)."""
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {os.path.dirname(os.path.dirname(os.path.abspath(__file__)))!r} + '/build')
        sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
        import numpy as np
        from test_chip_store import writer, fake_chips
        w = writer({str(path)!r}, np.arange({n_cells}))
        w.write(np.arange({n_written}), *fake_chips(np.arange({n_written})))
        w.flush()
        os._exit(9)
    """)
    return subprocess.Popen([sys.executable, "-c", script])


def test_a_killed_run_leaves_a_stale_lock_that_the_next_run_takes_over(tmp_path):
    _killed_writer(tmp_path / "g.chips", 10, 4).wait()
    assert os.path.exists(lock_path(str(tmp_path / "g.chips")))
    resumed = writer(tmp_path / "g.chips", np.arange(10))
    assert resumed.resumed and resumed.pending().tolist() == list(range(4, 10))
    resumed.close()
    assert not os.path.exists(lock_path(str(tmp_path / "g.chips")))


def test_two_runs_cannot_write_the_same_store(tmp_path):
    holder = writer(tmp_path / "g.chips", np.arange(10))
    with pytest.raises(
        PovmapInputError, match="OUTPUT: another run .* is writing the chip store"
    ) as refused:
        writer(tmp_path / "g.chips", np.arange(10))
    # the message names the lock and the hidden folder, so a user can find both
    assert lock_path(str(tmp_path / "g.chips")) in str(refused.value)
    assert partial_store_path(str(tmp_path / "g.chips")) in str(refused.value)
    holder.close()
    writer(tmp_path / "g.chips", np.arange(10)).close()


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc to see a zombie")
def test_a_dead_but_unreaped_writer_does_not_block_the_next_run(tmp_path):
    """The old lock checked the recorded pid: a zombie (or a reused pid) looked alive forever."""
    child = _killed_writer(tmp_path / "g.chips", 10, 0)
    try:
        deadline = time.monotonic() + 60
        # Z and no thread left: a zombie leader whose other threads are still exiting
        # still holds its files (and the lock) for a moment, as it should.
        while not _exited_unreaped(child.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _exited_unreaped(child.pid), "the writer did not exit"
        resumed = writer(tmp_path / "g.chips", np.arange(10))  # not reaped yet: still takes over
        assert resumed.resumed
        resumed.close()
    finally:
        child.wait()


def test_a_live_process_named_in_a_stale_lock_does_not_block_the_next_run(tmp_path):
    """A killed run's lock may name a pid that now belongs to another process (here: this one),
    also in the ``lock`` file inside a partial store left by an earlier version."""
    path = str(tmp_path / "g.chips")
    _killed_writer(path, 4, 2).wait()
    for lock in (lock_path(path), os.path.join(partial_store_path(path), "lock")):
        with open(lock, "w", encoding="utf-8") as handle:
            handle.write(f"{socket.gethostname()} {os.getpid()}")  # alive, but holds no lock

    resumed = writer(path, np.arange(4))
    assert resumed.resumed and resumed.pending().tolist() == [2, 3]
    resumed.write([2, 3], *fake_chips([2, 3]))
    resumed.finish()
    assert "lock" not in os.listdir(path) and not os.path.exists(lock_path(path))


def _exited_unreaped(pid):
    return _state(pid) == "Z" and os.listdir(f"/proc/{pid}/task") == [str(pid)]


def _state(pid):
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        text = handle.read()
    return text[text.rfind(")") + 2 :].split()[0]


def test_other_settings_start_afresh_and_never_touch_the_finished_store(tmp_path):
    done = writer(tmp_path / "g.chips", np.arange(5))
    done.write(np.arange(5), *fake_chips(np.arange(5)))
    done.finish()
    other = writer(tmp_path / "g.chips", np.arange(5), settings={**SETTINGS, "resolution": 20.0})
    assert not other.resumed and other.pending().tolist() == list(range(5))
    other.write([0, 1], *fake_chips([9, 9]))
    other.close()  # stopped half way
    store = ChipStore(str(tmp_path / "g.chips"))
    assert store.manifest["settings"]["resolution"] == 10.0
    assert store.batch(np.arange(5))["daytime"][:, 0, 0, 0].tolist() == [0, 1, 2, 3, 4]


def test_unfinished_or_foreign_folders_are_refused_clearly(tmp_path):
    stopped = writer(tmp_path / "g.chips", np.arange(5))
    stopped.close()
    with pytest.raises(PovmapInputError, match="CHIPS: .* is not a chip store"):
        ChipStore(str(tmp_path / "g.chips"))
    with pytest.raises(PovmapInputError, match="CHIPS: .* is not complete"):
        ChipStore(partial_store_path(str(tmp_path / "g.chips")))
    with pytest.raises(PovmapInputError, match="must be a folder name ending in .chips"):
        ChipStoreWriter(str(tmp_path / "g.npy"), np.arange(3), INPUTS, 8, SETTINGS)
