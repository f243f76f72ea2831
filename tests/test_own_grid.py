"""Any polygon grid with a unique id (ID_FIELD): chips are the polygons' bounding boxes at
RESOLUTION, equal to gdalwarp -te <box> -tr <res> <res>; predictions carry the grid's own id."""

import json
import os

import numpy as np
import pytest
import shapely
from helpers import read_grid, write_polygons
from qgis_helpers import run_algorithm, run_failing
from test_chips_core import assert_like_gdalwarp, gdalwarp_chip, tiny_inputs

from povmap_qgis.core.chips.chip_store import ChipStore
from povmap_qgis.core.chips.grid_cells import read_grid_cells
from povmap_qgis.core.chips.sampling import ChipOptions, sample_chips
from povmap_qgis.core.errors import PovmapInputError

CRS = "EPSG:32642"


def own_grid(tiny_grid, path, side=400.0, extra_side=403.0, shift=(123.4, 57.9)):
    """A statistics-office-like grid over the tiny sample: squares of ``side`` m at an origin
    that is no multiple of the pixel size, ids that are not povmap's (``gid``), a gap, and
    two squares of ``extra_side`` m off that lattice (a ``side`` of 403 m gives 40 px, as
    gdalwarp rounds it)."""
    xmin, ymin, _, _ = read_grid(tiny_grid).total_bounds
    x0, y0 = xmin + shift[0], ymin + shift[1]
    boxes, ids = [], []
    for row in range(3):
        for col in range(4):
            if (row, col) == (1, 2):
                continue  # a gap: blocks need not be full
            left, bottom = x0 + col * side, y0 + row * side
            boxes.append(shapely.box(left, bottom, left + side, bottom + side))
            ids.append(9000 + 37 * len(ids))
    for k in range(2):
        left, bottom = x0 + 2000 + k * 611.3, y0 + 333.3
        boxes.append(shapely.box(left, bottom, left + extra_side, bottom + extra_side))
        ids.append(5 - k)
    write_polygons(path, boxes, CRS, gid=np.array(ids, dtype="int64"), name=[f"c{i}" for i in ids])
    return str(path)


def test_chips_of_an_own_grid_equal_gdalwarp_of_each_bounding_box(tiny_sample, tmp_path):
    grid = own_grid(_povmap_grid(tiny_sample, tmp_path), tmp_path / "own.gpkg")
    inputs = tiny_inputs(tiny_sample)
    store_path = str(tmp_path / "own.chips")
    summary = sample_chips(
        ChipOptions(grid_path=grid, inputs=inputs, output_path=store_path, id_field="gid")
    )
    store = ChipStore(store_path)
    frame = read_grid(grid)
    assert summary["chip_size"] == 40 and len(store) == len(frame) == 13
    assert store.manifest["settings"]["id_field"] == "gid"
    assert sorted(store.cell_ids[:].tolist()) == sorted(frame["gid"].tolist())
    row_of = {int(cell): row for row, cell in enumerate(store.cell_ids)}
    for gid, polygon in zip(frame["gid"], frame.geometry, strict=True):
        for spec in inputs:
            reference = gdalwarp_chip(
                spec.path, spec.bands, CRS, polygon.bounds, 10, "bilinear", str(tmp_path)
            )
            assert reference.shape[:2] == (40, 40)  # gdalwarp's own rounding of 403 m
            assert_like_gdalwarp(store.batch([row_of[int(gid)]])[spec.name][0], reference)


def _povmap_grid(tiny_sample, tmp_path):
    from povmap_qgis.core.grid.training_grid import TrainingGridOptions, build_training_grid

    path = str(tmp_path / "povmap_grid.gpkg")
    build_training_grid(
        TrainingGridOptions(
            points_path=os.path.join(tiny_sample, "synthetic_survey.gpkg"),
            score_field="score",
            output_path=path,
            crs=CRS,
            min_obs=8,
        )
    )
    return path


def test_an_own_grid_over_povmap_cells_gives_the_same_chips_and_predictions(
    povmap_provider, tiny_sample, tmp_path
):
    """The same squares as a povmap grid, other ids in another order: every chip and every
    prediction of a place is the povmap grid's (a wrong id-to-chip match would differ)."""
    povmap = _povmap_grid(tiny_sample, tmp_path)
    frame = read_grid(povmap)
    shuffled = frame.sample(frac=1.0, random_state=3).reset_index(drop=True)
    own = shuffled[["district", "geometry"]].copy()
    own["village"] = 70_000 + np.arange(len(own)) * 13
    own.to_file(tmp_path / "own.gpkg", engine="pyogrio")
    inputs = tiny_inputs(tiny_sample)
    results = {}
    for name, grid, id_field in (
        ("povmap", povmap, "cell_id"),
        ("own", str(tmp_path / "own.gpkg"), "village"),
    ):
        cells = read_grid_cells(grid, id_field=id_field)
        assert cells.povmap_ids == (name == "povmap")
        chips = str(tmp_path / f"{name}.chips")
        sample_chips(
            ChipOptions(grid_path=grid, inputs=inputs, output_path=chips, id_field=id_field)
        )
        output = str(tmp_path / f"{name}_predictions.gpkg")
        parameters = {"CHIPS": chips, "GRID": grid, "OUTPUT": output}
        if name == "own":
            parameters["ID_FIELD"] = "village"
        run_algorithm("povmap:predict", parameters)
        results[name] = (ChipStore(chips), read_grid(output))
    (store, predicted), (own_store, own_predicted) = results["povmap"], results["own"]
    assert list(own_predicted["village"]) == list(own["village"])  # the grid's id, kept
    # Match places by their centres: geometry is the only link between the two grids.
    key = [tuple(np.round(g.centroid.coords[0], 3)) for g in predicted.geometry]
    own_key = [tuple(np.round(g.centroid.coords[0], 3)) for g in own_predicted.geometry]
    position = {place: index for index, place in enumerate(key)}
    order = [position[place] for place in own_key]
    for field in ("prob_mean", "prob_raw", "pred", "votes", "chip_flagged"):
        np.testing.assert_allclose(
            own_predicted[field].to_numpy(), predicted[field].to_numpy()[order], atol=1e-5
        )
    # Evaluate matches by the same id, the one predict recorded (no ID_FIELD given): the own
    # grid's labelled polygons give the povmap grid's metrics, and the hit/miss layer keeps it.
    own_truth = own.assign(label=shuffled["label"].to_numpy())
    own_truth.to_file(tmp_path / "own_truth.gpkg", engine="pyogrio")
    evaluated = {}
    for name, truth, id_field in (
        ("povmap", povmap, None),
        ("own", str(tmp_path / "own_truth.gpkg"), None),
    ):
        parameters = {
            "PREDICTIONS": str(tmp_path / f"{name}_predictions.gpkg"),
            "TRUTH": truth,
            "HITMISS": str(tmp_path / f"{name}_hitmiss.gpkg"),
            "METRICS": str(tmp_path / f"{name}_metrics.json"),
            "REPORT": str(tmp_path / f"{name}_report.html"),
            "RANDOM_DRAWS": 50,
        }
        if id_field:
            parameters["ID_FIELD"] = id_field
        run_algorithm("povmap:evaluate", parameters)
        with open(parameters["METRICS"], encoding="utf-8") as handle:
            evaluated[name] = json.load(handle)
    assert evaluated["own"]["data"]["common_cells"] == len(own) > 0
    assert evaluated["own"]["data"]["id_field"] == "village"
    own_metrics, metrics = evaluated["own"]["metrics"]["all"], evaluated["povmap"]["metrics"]["all"]
    assert set(own_metrics) == set(metrics)
    for model in set(metrics) - {"random"}:  # coin flips are drawn in row order: not compared
        for metric, value in metrics[model].items():
            if isinstance(value, (int, float)):
                assert own_metrics[model][metric] == pytest.approx(value, abs=1e-9), (model, metric)
    assert "village" in read_grid(str(tmp_path / "own_hitmiss.gpkg"))
    # Target reads the id predict recorded (no ID_FIELD given) and enrols the same places.
    import pyogrio

    own_output = str(tmp_path / "own_predictions.gpkg")
    recorded = pyogrio.read_info(own_output, layer="own_predictions")["layer_metadata"]
    assert recorded["povmap_id_field"] == "village"
    budget = len(own) // 3
    selected = {}
    for name in ("povmap", "own"):
        run_algorithm(
            "povmap:target",
            {
                "PREDICTIONS": str(tmp_path / f"{name}_predictions.gpkg"),
                "BUDGET_UNIT": "cells",
                "BUDGET": budget,
                "OUTPUT": str(tmp_path / f"{name}_selection.gpkg"),
                "ALLOCATION": str(tmp_path / f"{name}_allocation.csv"),
                "REPORT": str(tmp_path / f"{name}_selection.html"),
            },
        )
        selection = read_grid(str(tmp_path / f"{name}_selection.gpkg"))
        chosen = selection[selection["selected"] == 1]
        selected[name] = {tuple(np.round(g.centroid.coords[0], 3)) for g in chosen.geometry}
        if name == "own":
            assert list(selection["village"]) == list(own["village"])
            ordered = selection.sort_values(
                ["prob_mean", "village"], ascending=[False, True], kind="mergesort"
            )
            assert set(chosen["village"]) == set(ordered["village"].iloc[:budget])
    assert len(selected["own"]) == budget and selected["own"] == selected["povmap"]
    own_rows = {int(cell): row for row, cell in enumerate(own_store.cell_ids)}
    rows = {int(cell): row for row, cell in enumerate(store.cell_ids)}
    for village, cell in zip(
        own_predicted["village"], predicted["cell_id"].to_numpy()[order], strict=True
    ):
        np.testing.assert_array_equal(
            own_store.batch([own_rows[int(village)]])["daytime"],
            store.batch([rows[int(cell)]])["daytime"],
        )


@pytest.mark.parametrize(
    "case, parameter, words",
    [
        ("duplicate", "ID_FIELD", ["share 1 gid(s)", "9037", "its own gid"]),
        ("null", "ID_FIELD", ["have no gid (NULL)", "row 2"]),
        ("missing", "ID_FIELD", ["no code field", "gid"]),
        ("text", "ID_FIELD", ["holds object values", "whole numbers"]),
        ("sizes", "GRID", ["one size", "gid 9000", "600 × 600 m", "60 × 60 px"]),
        ("chip_size", "CHIP_SIZE", ["a chip of 64 px", "does not cover"]),
    ],
)
def test_bad_own_grids_are_refused_naming_the_parameter(
    tiny_sample, tmp_path, case, parameter, words
):
    import geopandas

    grid = own_grid(_povmap_grid(tiny_sample, tmp_path), tmp_path / "own.gpkg")
    frame = read_grid(grid)
    id_field, chip_size = "gid", None
    if case == "duplicate":
        frame.loc[0, "gid"] = frame.loc[1, "gid"]
    elif case == "null":
        frame["gid"] = frame["gid"].astype("Int64")
        frame.loc[1, "gid"] = None
    elif case == "missing":
        id_field = "code"
    elif case == "text":
        id_field = "name"
    elif case == "sizes":
        xmin, ymin = frame.geometry[1].bounds[:2]
        frame.loc[0, "geometry"] = shapely.box(xmin - 600, ymin - 900, xmin, ymin - 300)
        frame.loc[0, "gid"] = 9000
    elif case == "chip_size":
        chip_size = 64
    geopandas.GeoDataFrame(frame, crs=CRS).to_file(tmp_path / "bad.gpkg", engine="pyogrio")
    output = tmp_path / "bad.chips"
    with pytest.raises(PovmapInputError) as caught:
        sample_chips(
            ChipOptions(
                grid_path=str(tmp_path / "bad.gpkg"),
                inputs=tiny_inputs(tiny_sample)[1:2],
                output_path=str(output),
                id_field=id_field,
                chip_size=chip_size,
            )
        )
    message = str(caught.value)
    assert caught.value.parameter == parameter, message
    assert all(word in message for word in words), message
    assert not output.exists()


def test_processing_names_the_id_field_by_its_label(povmap_provider, tiny_sample, tmp_path):
    grid = own_grid(_povmap_grid(tiny_sample, tmp_path), tmp_path / "own.gpkg")
    frame = read_grid(grid)
    frame.loc[0, "gid"] = frame.loc[1, "gid"]
    frame.to_file(tmp_path / "dup.gpkg", engine="pyogrio")
    parameters = {
        "GRID": str(tmp_path / "dup.gpkg"),
        "ID_FIELD": "gid",
        "NIGHTLIGHTS": os.path.join(tiny_sample, "synthetic_viirs_15arcsec.tif"),
        "OUTPUT": str(tmp_path / "x.chips"),
    }
    message = run_failing("povmap:samplechips", parameters)
    assert "Cell id field" in message and "ID_FIELD" in message and "share 1 gid(s)" in message
    results, _ = run_algorithm("povmap:samplechips", dict(parameters, GRID=grid))
    assert ChipStore(results["OUTPUT"]).manifest["settings"]["id_field"] == "gid"


def test_a_cell_id_field_must_match_the_geometry(tiny_sample, tmp_path):
    """cell_id is povmap's id: a povmap grid moved by 5 m (edited or reprojected, its metadata
    lost) is refused, as is an own grid whose ids are named cell_id (with what to do)."""
    povmap = _povmap_grid(tiny_sample, tmp_path)
    assert read_grid_cells(povmap).povmap_ids
    moved = read_grid(povmap)
    moved["geometry"] = moved.geometry.translate(5.0, 0.0)
    moved.to_file(tmp_path / "moved.gpkg", engine="pyogrio")
    own = read_grid(own_grid(povmap, tmp_path / "own.gpkg")).rename(columns={"gid": "cell_id"})
    own.to_file(tmp_path / "own_cell_id.gpkg", engine="pyogrio")
    for name in ("moved", "own_cell_id"):
        with pytest.raises(PovmapInputError) as caught:
            read_grid_cells(str(tmp_path / f"{name}.gpkg"))
        message = str(caught.value)
        assert caught.value.parameter == "GRID" and "do not match their cell_id" in message
        assert "rename that field" in message and "(ID_FIELD)" in message
    renamed = own.rename(columns={"cell_id": "gid"})
    renamed.to_file(tmp_path / "own_gid.gpkg", engine="pyogrio")
    cells = read_grid_cells(str(tmp_path / "own_gid.gpkg"), id_field="gid")
    assert not cells.povmap_ids and cells.chip_size == 40


@pytest.mark.slow
def test_crossvalidation_and_training_on_an_own_labelled_grid(
    povmap_provider, tiny_chips, tmp_path
):
    """Labelled polygons of an own grid (ids 'village', shuffled) over the tiny labelled cells:
    cross-validation reads the id the chip store was sampled by, every labelled cell gets one
    fold, a district stays in one fold, and the output keeps the own id; train runs too."""
    from povmap_qgis.core.chips.sampling import ChipInput

    folder = tmp_path  # not the session's tiny_chips folder, which other tests watch
    labelled = read_grid(tiny_chips["grid"]).sample(frac=1.0, random_state=5)
    own = labelled[["district", "label", "geometry"]].reset_index(drop=True)
    own["village"] = 40_000 + 7 * np.arange(len(own))
    own.to_file(folder / "villages.gpkg", engine="pyogrio")
    source = ChipStore(tiny_chips["night"]).manifest["inputs"][0]["source"]
    chips = str(folder / "villages.chips")
    sample_chips(
        ChipOptions(
            grid_path=str(folder / "villages.gpkg"),
            inputs=[ChipInput("nightlights", source, [1])],
            output_path=chips,
            id_field="village",
        )
    )
    common = {"CHIPS": chips, "GRID": str(folder / "villages.gpkg"), "PRESET": "compact"}
    common.update(MEMBERS="compact_cnn", SEED=4, EPOCHS=1)
    run_algorithm(
        "povmap:crossvalidate",
        dict(
            common,
            FOLDS=3,
            REPORT=str(folder / "report.html"),
            METRICS=str(folder / "metrics.json"),
            OUTPUT_GRID=str(folder / "folds.gpkg"),
        ),
    )
    folds = read_grid(str(folder / "folds.gpkg"))
    assert list(folds["village"]) == list(own["village"])
    assert folds["fold"].notna().sum() >= 0.9 * len(own)  # flagged cells aside
    per_district = folds.dropna(subset=["fold"]).groupby("district")["fold"].nunique()
    assert (per_district == 1).all() and folds["fold"].nunique() == 3
    results, _ = run_algorithm(
        "povmap:train", dict(common, OUTPUT=str(folder / "villages.povmodel"))
    )
    assert os.path.isdir(results["OUTPUT"])
