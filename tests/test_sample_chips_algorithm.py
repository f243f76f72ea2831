"""povmap:samplechips through Processing and the worker: store, nodata grid, cancel/resume, bad input."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from conftest import run_qgis_process
from helpers import read_grid
from qgis_helpers import CapturingFeedback, run_algorithm, run_failing
from test_chips_core import assert_like_gdalwarp, gdalwarp_chip

from povmap_qgis.core.atomic import lock_path
from povmap_qgis.core.chips.chip_store import ChipStore, partial_store_path
from povmap_qgis.core.grid import cells

ALG = "povmap:samplechips"
# The built plugin's parent folder: what a worker started by hand needs on PYTHONPATH.
BUILD = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(cells.__file__))))


@pytest.fixture(scope="module")
def tiny_training_grid(tiny_sample, tmp_path_factory):
    from povmap_qgis.core.grid.training_grid import TrainingGridOptions, build_training_grid

    path = str(tmp_path_factory.mktemp("grid") / "training_grid.gpkg")
    build_training_grid(
        TrainingGridOptions(
            points_path=os.path.join(tiny_sample, "synthetic_survey.gpkg"),
            score_field="score",
            output_path=path,
            crs="EPSG:32642",
            min_obs=8,
        )
    )
    return path


def sample_parameters(sample, grid, output, **overrides):
    parameters = {
        "GRID": grid,
        "DAYTIME": os.path.join(sample, "synthetic_daytime_s2l2a_10m.tif"),
        "DAYTIME_BANDS": "1,2,3",
        "NIGHTLIGHTS": os.path.join(sample, "synthetic_viirs_15arcsec.tif"),
        "ACCESSIBILITY": os.path.join(sample, "synthetic_accessibility_30arcsec.tif"),
        "OUTPUT": str(output),
    }
    parameters.update(overrides)
    return {key: value for key, value in parameters.items() if value is not None}


def test_samples_every_cell_like_gdalwarp_and_shows_nodata(
    povmap_provider, tiny_sample, tiny_training_grid, tmp_path
):
    results, feedback = run_algorithm(
        ALG,
        sample_parameters(
            tiny_sample,
            tiny_training_grid,
            tmp_path / "tiny",
            DAYTIME_BANDS="3,2,1",
            NODATA_GRID=str(tmp_path / "nodata.gpkg"),
        ),
    )
    assert results["OUTPUT"] == str(tmp_path / "tiny.chips")  # .chips added
    store = ChipStore(results["OUTPUT"])
    assert store.input_names == ["daytime", "nightlights", "accessibility"]
    assert [spec["bands"] for spec in store.manifest["inputs"]] == [[3, 2, 1], [1], [1]]
    grid = read_grid(tiny_training_grid)
    assert sorted(store.cell_ids[:].tolist()) == sorted(grid["cell_id"].tolist()) and results[
        "CELLS"
    ] == len(grid)
    row = len(store) // 3
    r, c = cells.decode_cell_ids(int(store.cell_ids[row]))
    bounds = (c * 1000.0, r * 1000.0, (c + 1) * 1000.0, (r + 1) * 1000.0)
    reference = gdalwarp_chip(
        os.path.join(tiny_sample, "synthetic_daytime_s2l2a_10m.tif"),
        [3, 2, 1],
        "EPSG:32642",
        bounds,
        10,
        "bilinear",
        str(tmp_path),
    )
    assert_like_gdalwarp(store.batch([row])["daytime"][0], reference)
    nodata_grid = read_grid(results["NODATA_GRID"])
    assert {"nodata_daytime", "nodata_nightlights", "nodata_accessibility", "chip_flagged"} <= set(
        nodata_grid.columns
    )
    assert len(nodata_grid) == len(grid) and (nodata_grid["chip_flagged"] == 0).all()
    log = feedback.text()
    assert f"Sampled {len(grid)} cells" in log and "per 1,000 cells" in log
    from qgis.core import QgsVectorLayer

    layer = QgsVectorLayer(results["NODATA_GRID"], "nodata", "ogr")
    assert (
        layer.renderer().type() == "categorizedSymbol"
        and layer.renderer().classAttribute() == "chip_flagged"
    )


def test_cancel_stops_the_worker_and_the_next_run_resumes(
    povmap_provider, tiny_sample, tiny_training_grid, tmp_path
):
    from qgis.core import QgsProcessingException

    parameters = sample_parameters(
        tiny_sample, tiny_training_grid, tmp_path / "resume.chips", DAYTIME=None
    )
    feedback = CapturingFeedback(cancel_at_progress=20)
    with pytest.raises(QgsProcessingException, match="Cancelled") as cancelled:
        run_algorithm(ALG, parameters, feedback)
    assert "run again with the same parameters to continue" in feedback.text()
    # one story: the sampled cells are kept, never "no output was written"
    assert "are kept" in str(cancelled.value)
    assert "no output was written" not in str(cancelled.value) + feedback.text()
    assert not os.path.exists(tmp_path / "resume.chips")
    partial = partial_store_path(str(tmp_path / "resume.chips"))
    assert os.path.isdir(partial)
    # where the partial folder is, how big (as du counts its files), and how to free the space
    size = sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, files in os.walk(partial)
        for name in files
    )
    message = str(cancelled.value)
    assert partial in message and "Delete that folder to free the space" in message
    shown = re.search(r"\(([\d.]+) (GB|MB|kB)\)", message)
    assert shown, message
    assert float(shown.group(1)) * {"GB": 1e9, "MB": 1e6, "kB": 1e3}[shown.group(2)] == (
        pytest.approx(size, rel=0.06)
    )
    results, feedback = run_algorithm(ALG, parameters)
    assert "Resuming the chip store" in feedback.text()
    assert (
        results["RESUMED_CELLS"] > 0
        and results["SAMPLED"] + results["RESUMED_CELLS"] == results["CELLS"]
    )
    assert not os.path.exists(partial_store_path(str(tmp_path / "resume.chips")))
    assert ChipStore(results["OUTPUT"]).manifest["state"] == "complete"


def test_nightlights_only_through_qgis_process(tiny_sample, tiny_training_grid, tmp_path):
    completed = run_qgis_process(
        "run",
        ALG,
        "--",
        f"GRID={tiny_training_grid}",
        f"NIGHTLIGHTS={os.path.join(tiny_sample, 'synthetic_viirs_15arcsec.tif')}",
        "RESOLUTION=20",
        f"OUTPUT={tmp_path / 'night.chips'}",
    )
    assert "FLAGGED" in completed.stdout
    store = ChipStore(str(tmp_path / "night.chips"))
    assert store.input_names == ["nightlights"] and store.chips("nightlights").shape[1:] == (
        50,
        50,
        1,
    )
    assert store.manifest["settings"]["resolution"] == 20


def test_extra_rasters_and_partial_coverage_are_flagged(
    povmap_provider, tiny_sample, tiny_training_grid, tmp_path
):
    """An extra 2-band raster covering only the west half of the grid: east cells are NaN and flagged, never zeros."""
    grid = read_grid(tiny_training_grid)
    xmin, ymin, xmax, ymax = grid.total_bounds
    middle = round((xmin + xmax) / 2000) * 1000
    path = tmp_path / "West Half.tif"
    width, height = int((middle - xmin) / 100), int((ymax - ymin) / 100)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=2,
        dtype="float32",
        crs="EPSG:32642",
        transform=rasterio.Affine(100, 0, xmin, 0, -100, ymax),
    ) as dataset:
        dataset.write(
            np.stack(
                [np.full((height, width), 5, "float32"), np.full((height, width), 7, "float32")]
            )
        )
    results, feedback = run_algorithm(
        ALG,
        {
            "GRID": tiny_training_grid,
            "EXTRA": [str(path)],
            "EXTRA_RESAMPLING": 0,
            "OUTPUT": str(tmp_path / "extra.chips"),
            "NODATA_GRID": str(tmp_path / "n.gpkg"),
        },
    )
    store = ChipStore(results["OUTPUT"])
    assert (
        store.input_names == ["west_half"]
        and store.manifest["inputs"][0]["resampling"] == "nearest"
    )
    chips = store.chips("west_half")
    east = np.array(
        [cells.decode_cell_ids(int(cell))[1] * 1000 >= middle for cell in store.cell_ids]
    )
    assert np.isnan(chips[east]).all() and (chips[~east][..., 1] == 7).all()
    assert results["FLAGGED"] == int(east.sum()) > 0 and "flagged" in feedback.text()
    assert (read_grid(results["NODATA_GRID"])["chip_flagged"].sum()) == east.sum()


def test_layers_that_are_not_files_are_refused_with_what_to_do(
    povmap_provider, tiny_training_grid, tmp_path
):
    from qgis.core import QgsRasterLayer

    tiles = QgsRasterLayer(
        "type=xyz&url=http://localhost:9/{z}/{x}/{y}.png&zmax=19&zmin=0", "Basemap tiles", "wms"
    )
    assert tiles.isValid()
    message = run_failing(
        ALG, {"GRID": tiny_training_grid, "DAYTIME": tiles, "OUTPUT": str(tmp_path / "x.chips")}
    )
    assert "DAYTIME" in message and "Basemap tiles" in message and "save it as a GeoTIFF" in message


@pytest.mark.parametrize(
    "case, expected",
    [
        ("no_input", ["at least one input raster"]),
        ("bands", ["DAYTIME", "band(s) [9]", "4 band(s)"]),
        ("bands_text", ["DAYTIME_BANDS", "not a list of band numbers"]),
        ("no_cell_id", ["GRID", "no cell_id field"]),
        ("no_overlap", ["NIGHTLIGHTS", "does not overlap the grid"]),
        ("no_crs", ["ACCESSIBILITY", "has no CRS"]),
        ("all_nodata", ["NIGHTLIGHTS", "no data in any cell"]),
        ("unwritable", ["OUTPUT", "not writable"]),
    ],
)
def test_bad_input_names_the_parameter_and_writes_nothing(
    povmap_provider, tiny_sample, tiny_training_grid, tmp_path, case, expected
):
    def raster(name, value, crs="EPSG:32642", origin=None, nodata=None):
        path = tmp_path / name
        xmin, _, _, ymax = read_grid(tiny_training_grid).total_bounds
        left, top = origin or (xmin - 5000, ymax + 5000)
        profile = {
            "driver": "GTiff",
            "width": 200,
            "height": 200,
            "count": 1,
            "dtype": "float32",
            "nodata": nodata,
            "transform": rasterio.Affine(100, 0, left, 0, -100, top),
        }
        if crs:
            profile["crs"] = crs
        with rasterio.open(path, "w", **profile) as dataset:
            dataset.write(np.full((1, 200, 200), value, "float32"))
        return str(path)

    output = tmp_path / "bad.chips"
    parameters = {"GRID": tiny_training_grid, "OUTPUT": str(output)}
    daytime = os.path.join(tiny_sample, "synthetic_daytime_s2l2a_10m.tif")
    if case == "bands":
        parameters.update(DAYTIME=daytime, DAYTIME_BANDS="1,2,9")
    elif case == "bands_text":
        parameters.update(DAYTIME=daytime, DAYTIME_BANDS="red,green")
    elif case == "no_cell_id":
        parameters.update(
            GRID=os.path.join(tiny_sample, "synthetic_districts.gpkg"), DAYTIME=daytime
        )
    elif case == "no_overlap":
        parameters.update(NIGHTLIGHTS=raster("far.tif", 1.0, origin=(100000, 1000000)))
    elif case == "no_crs":
        parameters.update(ACCESSIBILITY=raster("nocrs.tif", 1.0, crs=None))
    elif case == "all_nodata":
        parameters.update(NIGHTLIGHTS=raster("empty.tif", -9999.0, nodata=-9999.0))
    elif case == "unwritable":
        parameters.update(DAYTIME=daytime, OUTPUT="/proc/povmap/bad.chips")
    message = run_failing(ALG, parameters)
    for text in expected:
        assert text in message, message
    assert not os.path.exists(output) and not os.path.exists(partial_store_path(str(output)))


def test_a_second_run_on_the_same_store_is_refused_while_the_first_writes(
    povmap_provider, tiny_sample, tiny_training_grid, tmp_path
):
    """The first run is a real worker process stopped mid-run (SIGSTOP) while it holds the store."""
    import signal
    import time

    output = tmp_path / "shared.chips"
    job = {
        "step": "sample_chips",
        "options": {
            "grid_path": tiny_training_grid,
            "output_path": str(output),
            "inputs": [
                {
                    "name": "nightlights",
                    "path": os.path.join(tiny_sample, "synthetic_viirs_15arcsec.tif"),
                    "bands": [1],
                    "parameter": "NIGHTLIGHTS",
                }
            ],
        },
    }
    first = subprocess.Popen(
        [sys.executable, "-m", "povmap_qgis.worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=dict(os.environ, PYTHONPATH=BUILD),
    )
    first.stdin.write(json.dumps(job))
    first.stdin.close()
    lock = lock_path(str(output))
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(lock) and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        first.send_signal(signal.SIGSTOP)
        assert os.path.exists(lock), "the first run finished before it could be paused"
        message = run_failing(
            ALG,
            {
                "GRID": tiny_training_grid,
                "NIGHTLIGHTS": job["options"]["inputs"][0]["path"],
                "OUTPUT": str(output),
            },
        )
        assert "another run" in message and "is writing the chip store" in message
    finally:
        first.send_signal(signal.SIGCONT)
        first.wait(timeout=60)
    assert first.returncode == 0 and ChipStore(str(output)).manifest["state"] == "complete"


def test_a_full_disk_is_a_clear_error_and_leaves_nothing(tiny_sample, tiny_training_grid, tmp_path):
    """The worker under a 1 MB file-size limit (RLIMIT_FSIZE): reserving the store's space fails up front."""
    script = f"""
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
from povmap_qgis.core.chips.sampling import ChipInput, ChipOptions, sample_chips
from povmap_qgis.core.errors import PovmapInputError
try:
    sample_chips(ChipOptions(grid_path={tiny_training_grid!r}, output_path={str(tmp_path / "full.chips")!r},
                             inputs=[ChipInput('daytime', {os.path.join(tiny_sample, "synthetic_daytime_s2l2a_10m.tif")!r}, [1, 2, 3])]))
except PovmapInputError as error:
    print(error.parameter, error)
"""
    completed = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=BUILD),
        timeout=120,
    )
    assert completed.stdout.startswith("OUTPUT") and "disk space" in completed.stdout, (
        completed.stdout + completed.stderr
    )
    assert not os.path.exists(tmp_path / "full.chips") and not os.path.exists(
        partial_store_path(str(tmp_path / "full.chips"))
    )
