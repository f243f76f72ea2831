"""Predict writes its layer window by window (bounded memory for a country's grid, issue 27).

The grid is read and the prediction layer written ``vectors.WINDOW_CELLS`` cells
at a time, and predicting from the rasters reads its kept parts back window by
window (``raster_prediction.KeptParts``). Tiny windows (7 cells, one part cached)
must give the layer one window gives, field for field, with the same metadata;
the drift scores gathered window by window equal the PSI computed over all the
cells' statistics at once (``drift.input_scores`` on the store's features), and
no earlier window is still alive when the next is read.
"""

import json
import os

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # three predictions (TensorFlow, in a subprocess)

# The three predictions in one process (TensorFlow is not loaded in pytest's own, beside QGIS):
# argv: chips, grid, tiny sample folder, output folder; prints one JSON line per run.
PREDICTIONS = """
import json, os, sys
from povmap_qgis.core.chips.raster_sampler import ChipInput
from povmap_qgis.core import vectors
from povmap_qgis.core.model import prediction, raster_prediction
from povmap_qgis.core.progress import RecordingReporter
from povmap_qgis.paths import bundled_model_path

chips, grid, sample, folder = sys.argv[1:5]

# memory holds one window of the layer at a time: when a window is read, none read before is
# still alive (weak references, after a garbage collection)
import gc, weakref
read_windows, windows_read, most_alive = vectors.read_windows, [], [0]
def watched_windows(*args, **kwargs):
    for start, frame in read_windows(*args, **kwargs):
        gc.collect()
        most_alive[0] = max(most_alive[0], sum(ref() is not None for ref in windows_read))
        windows_read.append(weakref.ref(frame))
        yield start, frame
        del frame
vectors.read_windows = watched_windows
inputs = [
    ChipInput("daytime", os.path.join(sample, "synthetic_daytime_s2l2a_10m.tif"), [1, 2, 3]),
    ChipInput("nightlights", os.path.join(sample, "synthetic_viirs_15arcsec.tif"), [1]),
    ChipInput("accessibility", os.path.join(sample, "synthetic_accessibility_30arcsec.tif"), [1]),
]
for name, source, window in (("once", "chips", None), ("windows_chips", "chips", 7),
                             ("windows_rasters", "rasters", 7)):
    if window:
        vectors.WINDOW_CELLS, raster_prediction.KeptParts.CACHED_PARTS = window, 1
    reporter, most_alive[0] = RecordingReporter(), 0
    summary = prediction.predict(
        prediction.PredictOptions(
            model_path=bundled_model_path(),
            chips_path=chips if source == "chips" else None,
            grid_path=grid,
            output_path=os.path.join(folder, name + ".gpkg"),
            batch_rows=16,
            source=source,
            inputs=inputs if source == "rasters" else None,
        ),
        reporter,
    )
    print("RUN=" + json.dumps({"name": name, "summary": summary, "infos": reporter.infos,
                               "percents": reporter.percents, "windows": len(windows_read),
                               "most_alive": most_alive[0]}))
    windows_read.clear()
"""


def _predictions(tiny_chips, tiny_sample, folder):
    import subprocess
    import sys

    from conftest import BUILD_DIR

    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            PREDICTIONS,
            tiny_chips["chips"],
            tiny_chips["grid"],
            tiny_sample,
            folder,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=BUILD_DIR,
        env=dict(os.environ, PYTHONPATH=BUILD_DIR, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    runs = [
        json.loads(line[4:]) for line in completed.stdout.splitlines() if line.startswith("RUN=")
    ]
    assert len(runs) == 3, completed.stdout[-2000:] + completed.stderr[-3000:]
    return {run["name"]: run for run in runs}


def _layer(path):
    from helpers import read_grid

    from povmap_qgis.core.geopackage import read_layer_metadata

    return read_grid(path), read_layer_metadata(path)


def test_the_layer_written_in_windows_is_the_layer_written_at_once(
    tiny_chips, tiny_sample, tmp_path
):
    from povmap_qgis.core.chips import chip_features
    from povmap_qgis.core.chips.chip_store import ChipStore
    from povmap_qgis.core.history import drift
    from povmap_qgis.core.model import model_package
    from povmap_qgis.paths import bundled_model_path

    runs = _predictions(tiny_chips, tiny_sample, str(tmp_path))
    expected, expected_metadata = _layer(str(tmp_path / "once.gpkg"))
    assert len(expected) > 3 * 7
    for source in ("chips", "rasters"):
        run = runs[f"windows_{source}"]
        found, metadata = _layer(str(tmp_path / f"windows_{source}.gpkg"))
        assert list(found.columns) == list(expected.columns), source
        assert found.geometry.equals(expected.geometry), source
        tolerance = 0 if source == "chips" else 2e-5  # rasters: chips sampled again, not read
        for name in expected.columns.drop("geometry"):
            if expected[name].dtype.kind == "f":
                np.testing.assert_allclose(
                    found[name], expected[name], atol=tolerance, err_msg=name
                )
            elif name != "pred" or source == "chips":
                assert found[name].tolist() == expected[name].tolist(), (source, name)
        assert metadata.keys() == expected_metadata.keys(), source
        for key in metadata:
            if key != "povmap_drift":
                assert metadata[key] == expected_metadata[key], (source, key)
        assert run["summary"]["cells"] == runs["once"]["summary"]["cells"] == len(expected)
        assert run["summary"]["flagged"] == int(expected["chip_flagged"].sum())
        # the progress bar ends full; the log says once what the cells' inputs look like
        assert run["percents"][-1] == pytest.approx(100)
        assert sum("drift:" in message for message in run["infos"]) == 1
        assert sum("outside the training range" in message for message in run["infos"]) == 1
        # one window in memory at a time: no earlier window alive when the next is read
        assert run["windows"] > 3 and run["most_alive"] == 0, source

    # drift gathered window by window = PSI over all the cells' statistics at once
    manifest = model_package.read_package(bundled_model_path())
    store = ChipStore(tiny_chips["chips"])
    features = chip_features.package_features(store, np.arange(len(store)), manifest)
    whole = drift.input_scores(manifest, features)
    assert whole and json.loads(expected_metadata["povmap_drift"]) == pytest.approx(whole)
    for source in ("chips", "rasters"):
        windowed = _layer(str(tmp_path / f"windows_{source}.gpkg"))[1]["povmap_drift"]
        assert json.loads(windowed) == pytest.approx(whole, abs=1e-12), source
