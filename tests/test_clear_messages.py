"""Messages that say what is really wrong (issue 14 item 12), through Processing."""

import os
import shutil

import geopandas
import pyogrio
from qgis_helpers import run_algorithm, run_failing
from test_build_prediction_grid import irregular_districts
from test_evaluate import layers  # noqa: F401 (module fixture: a prediction layer and truths)


def test_a_csv_without_geometry_is_called_a_table_not_a_layer_without_crs(
    povmap_provider, tmp_path
):
    table = tmp_path / "households.csv"
    table.write_text("x,y,score\n600100,2800100,5\n600200,2800300,30\n")
    message = run_failing(
        "povmap:buildtraininggrid",
        {"INPUT": str(table), "SCORE_FIELD": "score", "OUTPUT": str(tmp_path / "grid.gpkg")},
    )
    assert "INPUT: the layer" in message and "has no geometries" in message
    assert "Add Delimited Text Layer" in message and "no CRS" not in message
    assert not (tmp_path / "grid.gpkg").exists()


def test_a_truth_csv_without_csvt_is_read_as_numbers(povmap_provider, layers, tmp_path):  # noqa: F811
    truth = pyogrio.read_dataframe(layers["paths"]["truth"], layer="truth", read_geometry=False)
    truth[["cell_id", "label"]].to_csv(tmp_path / "truth.csv", index=False)
    assert not (tmp_path / "truth.csvt").exists()  # GDAL reads every field as text
    outputs = {
        "HITMISS": str(tmp_path / "h.gpkg"),
        "REPORT": str(tmp_path / "r.html"),
        "METRICS": str(tmp_path / "m.json"),
    }
    from_csv, feedback = run_algorithm(
        "povmap:evaluate",
        {"PREDICTIONS": layers["paths"]["predictions"], "TRUTH": str(tmp_path / "truth.csv")}
        | outputs,
    )
    assert any("label field of 'truth' is text" in line for line in feedback.infos)
    reference = {
        key: str(tmp_path / f"ref_{os.path.basename(path)}") for key, path in outputs.items()
    }
    from_gpkg, _ = run_algorithm(
        "povmap:evaluate",
        {"PREDICTIONS": layers["paths"]["predictions"], "TRUTH": layers["paths"]["truth"]}
        | reference,
    )
    for key in ("CELLS", "HITS", "MISSES", "FALSE_ALARMS", "RECALL", "AUC"):
        assert from_csv[key] == from_gpkg[key], key
    # text that is no number is refused naming the field, not as a 0/1 problem
    (tmp_path / "w").mkdir()
    truth.assign(label=truth["label"].map({0: "rich", 1: "poor"}))[["cell_id", "label"]].to_csv(
        tmp_path / "words.csv", index=False
    )
    message = run_failing(
        "povmap:evaluate",
        {"PREDICTIONS": layers["paths"]["predictions"], "TRUTH": str(tmp_path / "words.csv")}
        | {key: str(tmp_path / "w" / os.path.basename(path)) for key, path in outputs.items()},
    )
    assert "TRUTH: the label field of" in message and "holds text ('poor', 'rich')" in message


def test_cross_validation_over_one_district_does_not_suggest_one_fold(
    povmap_provider, tiny_chips, tmp_path
):
    grid = geopandas.read_file(tiny_chips["grid"], layer="training_grid")
    grid.assign(district="Dadu").to_file(tmp_path / "one_district.gpkg", engine="pyogrio")
    message = run_failing(
        "povmap:crossvalidate",
        {
            "GRID": str(tmp_path / "one_district.gpkg"),
            "CHIPS": tiny_chips["night"],
            "FOLDS": 2,
            "REPORT": str(tmp_path / "cv.html"),
            "METRICS": str(tmp_path / "cv.json"),
            "OUTPUT_GRID": str(tmp_path / "cv.gpkg"),
        },
    )
    assert "GRID: the labelled cells lie in 1 district(s) (Dadu)" in message
    assert "needs at least 2" in message and "FOLDS ≤ 1" not in message


def test_a_truncated_cell_ids_file_is_a_damaged_chip_store_not_a_grid_problem(
    povmap_provider, tiny_chips, tmp_path
):
    store = tmp_path / "night.chips"
    shutil.copytree(tiny_chips["night"], store)
    cell_ids = store / "cell_ids.npy"
    cell_ids.write_bytes(cell_ids.read_bytes()[:-40])
    for algorithm, output in (("povmap:train", "OUTPUT"), ("povmap:crossvalidate", "REPORT")):
        parameters = {"GRID": tiny_chips["grid"], "CHIPS": str(store)}
        if output == "OUTPUT":
            parameters["OUTPUT"] = str(tmp_path / "m.povmodel")
        else:
            parameters.update(
                REPORT=str(tmp_path / "cv.html"),
                METRICS=str(tmp_path / "cv.json"),
                OUTPUT_GRID=str(tmp_path / "cv.gpkg"),
            )
        message = run_failing(algorithm, parameters)
        assert "CHIPS: the chip store" in message and "cell_ids.npy cannot be read" in message
        assert "GRID:" not in message and "Traceback" not in message
        assert sorted(os.listdir(tmp_path)) == ["night.chips"]  # nothing written


def test_a_damaged_file_is_not_reported_as_not_found(povmap_provider, tmp_path):
    broken = tmp_path / "districts.gpkg"
    broken.write_bytes(b"not a GeoPackage " * 100)
    message = run_failing(
        "povmap:buildpredictiongrid", {"AREA": str(broken), "OUTPUT": str(tmp_path / "o.gpkg")}
    )
    assert f"(AREA): the file '{broken}' exists but cannot be read as a vector layer" in message
    assert "not found" not in message and "1,700 bytes" in message
    area, _ = irregular_districts(tmp_path)
    raster = tmp_path / "built_up.tif"
    raster.write_bytes(b"II*\x00" + b"\xff" * 60)  # a TIFF cut short after its header
    message = run_failing(
        "povmap:buildpredictiongrid",
        {"AREA": str(area), "HABITABLE": str(raster), "OUTPUT": str(tmp_path / "o.gpkg")},
    )
    assert f"(HABITABLE): the file '{raster}' exists but cannot be read as a raster" in message
    assert "not found" not in message
    (tmp_path / "empty.gpkg").write_bytes(b"")
    message = run_failing(
        "povmap:buildpredictiongrid",
        {"AREA": str(tmp_path / "empty.gpkg"), "OUTPUT": str(tmp_path / "o.gpkg")},
    )
    assert "it is empty (0 bytes)" in message
    message = run_failing(
        "povmap:buildpredictiongrid",
        {"AREA": f"{area}|layername=nowhere", "OUTPUT": str(tmp_path / "o.gpkg")},
    )
    assert "it has no layer 'nowhere' (its layers: districts" in message
    # a file that is really missing keeps QGIS's wording
    message = run_failing(
        "povmap:buildpredictiongrid",
        {"AREA": str(tmp_path / "missing.gpkg"), "OUTPUT": str(tmp_path / "o.gpkg")},
    )
    assert "not found" in message
    assert not (tmp_path / "o.gpkg").exists()
