"""povmap:buildtraininggrid through Processing: reference, styles, bad input, cancel."""

import glob
import os

import numpy as np
import pandas
import pytest
from conftest import run_qgis_process
from helpers import read_grid, write_points, write_polygons
from qgis.core import QgsFeature, QgsGeometry, QgsPointXY, QgsVectorLayer
from qgis_helpers import CapturingFeedback, run_algorithm, run_failing

from povmap_qgis.core.grid import cells

ALG = "povmap:buildtraininggrid"
UTM = "EPSG:32642"


def sample_parameters(sample, output):
    return {
        "INPUT": os.path.join(sample, "synthetic_survey.gpkg"),
        "SCORE_FIELD": "score",
        "ACCURACY_FIELD": "gps_accuracy_m",
        "MAX_ACCURACY": 20,
        "DATE_FIELD": "survey_date",
        "MIN_DATE": "2016-01-01",
        "URBAN": os.path.join(sample, "synthetic_urban_centres.gpkg"),
        "DISTRICTS": os.path.join(sample, "synthetic_districts.gpkg"),
        "DISTRICT_FIELD": "name",
        "OUTPUT": str(output),
    }


def qgis_reference_grid(sample, tmp_path):
    """Same cleaning and aggregation with QGIS's own algorithms only."""
    import processing

    survey = os.path.join(sample, "synthetic_survey.gpkg")
    cleaned = processing.run(
        "native:extractbyexpression",
        {
            "INPUT": survey,
            "EXPRESSION": '"score" <> 0 AND "gps_accuracy_m" <= 20 AND "survey_date" >= to_date(\'2016-01-01\')',
            "OUTPUT": "TEMPORARY_OUTPUT",
        },
    )["OUTPUT"]
    projected = processing.run(
        "native:reprojectlayer", {"INPUT": cleaned, "TARGET_CRS": UTM, "OUTPUT": "TEMPORARY_OUTPUT"}
    )["OUTPUT"]
    rural = processing.run(
        "native:extractbylocation",
        {
            "INPUT": projected,
            "PREDICATE": [2],
            "INTERSECT": os.path.join(sample, "synthetic_urban_centres.gpkg"),
            "OUTPUT": "TEMPORARY_OUTPUT",
        },
    )["OUTPUT"]
    in_districts = processing.run(
        "native:extractbylocation",
        {
            "INPUT": rural,
            "PREDICATE": [0],
            "INTERSECT": os.path.join(sample, "synthetic_districts.gpkg"),
            "OUTPUT": "TEMPORARY_OUTPUT",
        },
    )["OUTPUT"]
    extent = in_districts.extent()
    xmin, ymin = (
        np.floor(extent.xMinimum() / 1000) * 1000,
        np.floor(extent.yMinimum() / 1000) * 1000,
    )
    xmax, ymax = np.ceil(extent.xMaximum() / 1000) * 1000, np.ceil(extent.yMaximum() / 1000) * 1000
    grid = processing.run(
        "native:creategrid",
        {
            "TYPE": 2,
            "EXTENT": f"{xmin},{xmax},{ymin},{ymax} [{UTM}]",
            "HSPACING": 1000,
            "VSPACING": 1000,
            "CRS": UTM,
            "OUTPUT": "TEMPORARY_OUTPUT",
        },
    )["OUTPUT"]
    joined = processing.run(
        "qgis:joinbylocationsummary",
        {
            "INPUT": grid,
            "JOIN": in_districts,
            "PREDICATE": [1],
            "JOIN_FIELDS": ["score"],
            "SUMMARIES": [0, 7],
            "DISCARD_NONMATCHING": True,
            "OUTPUT": "TEMPORARY_OUTPUT",
        },
    )["OUTPUT"]
    records = []
    for feature in joined.getFeatures():
        box = feature.geometry().boundingBox()
        row, col = round(box.yMinimum() / 1000), round(box.xMinimum() / 1000)
        records.append(
            {
                "cell_id": int(cells.encode_cell_ids(row, col)),
                "n_obs": feature["score_count"],
                "median_score": feature["score_median"],
            }
        )
    reference = pandas.DataFrame(records)
    return (
        reference[(reference["n_obs"] >= 3) & (reference["n_obs"] < 300)]
        .set_index("cell_id")
        .sort_index()
    )


def test_equals_qgis_creategrid_and_joinbylocationsummary_on_the_tiny_sample(
    povmap_provider, tiny_sample, tmp_path
):
    results, feedback = run_algorithm(ALG, sample_parameters(tiny_sample, tmp_path / "grid.gpkg"))
    ours = read_grid(results["OUTPUT"]).set_index("cell_id").sort_index()
    reference = qgis_reference_grid(tiny_sample, tmp_path)
    assert len(ours) > 100
    assert ours.index.tolist() == reference.index.tolist()
    assert (ours["n_obs"] == reference["n_obs"]).all()
    assert np.allclose(ours["median_score"], reference["median_score"])
    assert (ours["label"] == (reference["median_score"] < 19).astype(int)).all()
    # the cleaning counts are algorithm outputs and are logged
    assert results["CELLS_KEPT"] == len(ours) and results["POOR_CELLS"] == int(ours["label"].sum())
    assert (
        results["DROPPED_ZERO"] > 0
        and results["DROPPED_INACCURATE"] > 0
        and results["DROPPED_TOO_EARLY"] > 0
        and results["DROPPED_URBAN"] > 0
    )
    assert results["GRID_CRS"] == UTM
    assert any(line.startswith("Cleaning:") for line in feedback.infos)


def test_output_opens_styled_by_label(povmap_provider, tmp_path):
    points = write_points(
        tmp_path / "p.gpkg",
        [600100.0, 600200, 600300, 601100, 601200, 601300],
        [2800100.0] * 6,
        UTM,
        score=[5, 6, 7, 40, 50, 60],
    )
    results, _ = run_algorithm(
        ALG, {"INPUT": str(points), "SCORE_FIELD": "score", "OUTPUT": str(tmp_path / "grid.gpkg")}
    )
    layer = QgsVectorLayer(results["OUTPUT"], "grid", "ogr")
    assert layer.isValid() and layer.featureCount() == 2
    assert layer.renderer().type() == "categorizedSymbol"
    assert {str(category.value()) for category in layer.renderer().categories()} == {"0", "1"}


def test_memory_layer_input_is_exported_and_the_export_removed(povmap_provider, tmp_path):
    from qgis.core import QgsProcessingUtils

    layer = QgsVectorLayer(
        "Point?crs=EPSG:32642&field=score:double", "households in memory", "memory"
    )
    features = []
    for index, score in enumerate([3, 4, 5, 30]):
        feature = QgsFeature(layer.fields())
        feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(600100 + index * 10, 2800100)))
        feature.setAttributes([score])
        features.append(feature)
    layer.dataProvider().addFeatures(features)
    before = set(
        glob.glob(os.path.join(QgsProcessingUtils.tempFolder(), "**", "*.gpkg"), recursive=True)
    )
    results, _ = run_algorithm(
        ALG, {"INPUT": layer, "SCORE_FIELD": "score", "OUTPUT": str(tmp_path / "grid.gpkg")}
    )
    assert read_grid(results["OUTPUT"])["median_score"].tolist() == [4.5]
    after = set(
        glob.glob(os.path.join(QgsProcessingUtils.tempFolder(), "**", "*.gpkg"), recursive=True)
    )
    assert after - before == set(), "the exported household points must not stay on disk"


def test_a_file_in_the_processing_temp_folder_is_read_in_place_and_kept(povmap_provider, tmp_path):
    """An earlier step's TEMPORARY_OUTPUT lives in the temp folder: it is the user's and must survive."""
    from qgis.core import QgsProcessingUtils

    earlier = os.path.join(QgsProcessingUtils.tempFolder(), "earlier_step_output.gpkg")
    write_points(earlier, [600100.0, 600200, 600300], [2800100.0] * 3, UTM, score=[5, 6, 7])
    results, _ = run_algorithm(
        ALG, {"INPUT": earlier, "SCORE_FIELD": "score", "OUTPUT": str(tmp_path / "grid.gpkg")}
    )
    assert results["CELLS_KEPT"] == 1
    assert os.path.exists(earlier)
    loaded = QgsVectorLayer(earlier, "earlier", "ogr")
    results, _ = run_algorithm(
        ALG, {"INPUT": loaded, "SCORE_FIELD": "score", "OUTPUT": str(tmp_path / "grid2.gpkg")}
    )
    assert results["CELLS_KEPT"] == 1 and os.path.exists(earlier)


def test_bad_input_messages_name_the_parameter(povmap_provider, tmp_path):
    points = write_points(
        tmp_path / "p.gpkg",
        [600100.0] * 4,
        [2800100.0] * 4,
        UTM,
        score=[1, 2, 3, 4],
        name=["a", "b", "c", "d"],
    )
    polygons = write_polygons(
        tmp_path / "poly.gpkg", [__import__("shapely").box(0, 0, 1, 1)], UTM, score=[1]
    )
    base = {"INPUT": str(points), "SCORE_FIELD": "score", "OUTPUT": str(tmp_path / "out.gpkg")}
    cases = [
        ({"INPUT": str(polygons)}, "INPUT: the layer", "Polygon geometries"),
        ({"SCORE_FIELD": "wealth"}, "SCORE_FIELD", "'wealth'"),
        ({"SCORE_FIELD": "name"}, "SCORE_FIELD", "not numeric"),
        ({"CELL_SIZE": 0}, "CELL_SIZE", ""),
        ({"MIN_OBS": 0}, "MIN_OBS", ""),
        ({"MIN_OBS": 5}, "MIN_OBS", "no cell has at least 5"),
        ({"ACCURACY_FIELD": "score", "MAX_ACCURACY": 0.5}, "INPUT", "no household is left"),
        ({"OUTPUT": str(tmp_path / "missing-folder" / "out.gpkg")}, "OUTPUT", "does not exist"),
        ({"OUTPUT": str(tmp_path / "out.shp")}, "OUTPUT", "must be a .gpkg"),
    ]
    for overrides, parameter, text in cases:
        message = run_failing(ALG, {**base, **overrides})
        assert parameter in message and text in message, (overrides, message)
    assert sorted(os.listdir(tmp_path)) == ["p.gpkg", "poly.gpkg"]


def test_empty_layer_is_refused(povmap_provider, tmp_path):
    empty = QgsVectorLayer("Point?crs=EPSG:32642&field=score:double", "no households", "memory")
    message = run_failing(
        ALG, {"INPUT": empty, "SCORE_FIELD": "score", "OUTPUT": str(tmp_path / "out.gpkg")}
    )
    assert "INPUT" in message and "empty" in message
    assert not os.path.exists(tmp_path / "out.gpkg")


def test_null_scores_and_points_outside_districts_are_reported(povmap_provider, tmp_path):
    points = write_points(
        tmp_path / "p.gpkg",
        [600100.0] * 5 + [700000.0],
        [2800100.0] * 6,
        UTM,
        score=[1, None, 3, 4, None, 9],
    )
    districts = write_polygons(
        tmp_path / "d.gpkg",
        [__import__("shapely").box(600000, 2800000, 601000, 2801000)],
        UTM,
        name=["Only"],
    )
    results, feedback = run_algorithm(
        ALG,
        {
            "INPUT": str(points),
            "SCORE_FIELD": "score",
            "DISTRICTS": str(districts),
            "DISTRICT_FIELD": "name",
            "OUTPUT": str(tmp_path / "g.gpkg"),
        },
    )
    assert results["DROPPED_NULL_SCORE"] == 2 and results["DROPPED_OUTSIDE_DISTRICTS"] == 1
    assert any("no value in SCORE_FIELD" in warning for warning in feedback.warnings)
    assert any("outside every polygon of DISTRICTS" in warning for warning in feedback.warnings)


def test_cancel_mid_run_leaves_no_output(povmap_provider, tmp_path):
    rng = np.random.default_rng(0)
    n = 400_000
    points = write_points(
        tmp_path / "many.gpkg",
        68 + rng.random(n),
        25 + rng.random(n),
        "EPSG:4326",
        score=rng.integers(1, 80, n),
    )
    feedback = CapturingFeedback(cancel_at_progress=20)
    output = tmp_path / "grid.gpkg"
    with pytest.raises(Exception, match="Cancel"):
        run_algorithm(
            ALG, {"INPUT": str(points), "SCORE_FIELD": "score", "OUTPUT": str(output)}, feedback
        )
    assert feedback.isCanceled()
    assert sorted(os.listdir(tmp_path)) == ["many.gpkg"]


def test_runs_headless_with_qgis_process(tiny_sample, tmp_path):
    output = tmp_path / "grid.gpkg"
    arguments = [f"{key}={value}" for key, value in sample_parameters(tiny_sample, output).items()]
    completed = run_qgis_process("run", ALG, "--", *arguments)
    assert "CELLS_KEPT:" in completed.stdout
    grid = read_grid(output)
    assert len(grid) > 100 and grid["n_obs"].min() >= 3
    from qgis.core import QgsVectorLayer as Layer

    assert Layer(str(output), "grid", "ogr").renderer().type() == "categorizedSymbol"


def test_qgis_process_lists_the_provider():
    completed = run_qgis_process("list")
    assert "Poverty mapping" in completed.stdout
    assert (
        "povmap:buildtraininggrid" in completed.stdout
        and "povmap:buildpredictiongrid" in completed.stdout
    )
