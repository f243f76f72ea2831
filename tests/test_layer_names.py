"""Output layers are named after what they hold, where and from which model ("Predictions —
Kotlani (demo_compact)"), as the Processing dialog loads them; reports name their inputs by
the names they have in the project, never by a temporary file's "OUTPUT".

With QGIS's Processing option "Prefer filename as layer name" as it comes (on), for files
outside the system temp folder, as a user's are (the tests' own temp folder is not pytest's,
tests/conftest.py): before the names were given after loading, each layer was its file's name."""

import os

import pytest
from qgis.core import QgsProject, QgsSettings, QgsVectorLayer
from qgis.PyQt.QtCore import QDir

from povmap_qgis.processing.layer_names import layer_title, model_label


def test_titles_say_what_where_and_detail():
    assert layer_title("Predictions", "Kotlani", "demo_compact") == (
        "Predictions — Kotlani (demo_compact)"
    )
    assert layer_title("Prediction grid", "Kotlani") == "Prediction grid — Kotlani"
    assert layer_title("Selection") == "Selection"
    assert model_label("/data/sindh_2023.povmodel/") == "sindh_2023"
    assert model_label("models:/sindh_2023@champion") == "sindh_2023@champion"
    assert model_label(None) is None


def _names_of(paths):
    wanted = {os.path.abspath(path) for path in paths}
    return sorted(
        layer.name()
        for layer in QgsProject.instance().mapLayers().values()
        if os.path.abspath(layer.source().split("|")[0]) in wanted
    )


def test_two_runs_give_two_layers_named_after_their_districts(
    povmap_provider, tiny_sample, tmp_path
):
    """Build prediction grid run twice from the Processing toolbox's path (runAndLoadResults):
    one district, then all; the Layers panel tells them apart."""
    import pyogrio
    from processing.tools.general import runAndLoadResults

    prefer_file_name = "Processing/Configuration/PREFER_FILENAME_AS_LAYER_NAME"
    assert QgsSettings().value(prefer_file_name, True, type=bool)
    assert not str(tmp_path).startswith(QDir.tempPath())  # QGIS would name a temp file as asked
    districts = os.path.join(tiny_sample, "synthetic_districts.gpkg")
    names = set(pyogrio.read_dataframe(districts, read_geometry=False)["name"])
    assert len(names) > 3  # more than three: counted, not listed
    one = runAndLoadResults(
        "povmap:buildpredictiongrid",
        {
            "AREA": f"{districts}|layername=synthetic_districts|subset=\"name\" = 'Sorabad'",
            "DISTRICT_FIELD": "name",
            "OUTPUT": str(tmp_path / "sorabad.gpkg"),
        },
    )["OUTPUT"]
    every = runAndLoadResults(
        "povmap:buildpredictiongrid",
        {"AREA": districts, "DISTRICT_FIELD": "name", "OUTPUT": str(tmp_path / "all.gpkg")},
    )["OUTPUT"]
    assert _names_of([one]) == ["Prediction grid — Sorabad"]
    assert _names_of([every]) == [f"Prediction grid — {len(names)} districts"]


@pytest.fixture()
def predictions_in_project(tmp_path):
    """A prediction layer in the project under the name povmap gives it (a temporary output's
    file layer is called OUTPUT), and a labelled grid of the same cells."""
    import geopandas
    import numpy as np
    import shapely

    from povmap_qgis.core.geopackage import write_layer
    from povmap_qgis.paths import style_path

    rng = np.random.default_rng(3)
    n = 40
    cells = [shapely.box(1000 * i, 0, 1000 * (i + 1), 1000) for i in range(n)]
    probability = np.round(rng.uniform(0, 1, n), 4)
    frame = geopandas.GeoDataFrame(
        {
            "cell_id": (500000000) * 10**9 + 500000000 + np.arange(n),
            "district": ["Kotlani"] * n,
            "prob_demo": probability,
            "prob_mean": probability,
            "votes": (probability >= 0.5).astype("int32"),
            "pred": (probability >= 0.5).astype("int32"),
            "disagreement": np.zeros(n),
        },
        geometry=cells,
        crs="EPSG:32642",
    )
    path = str(tmp_path / "OUTPUT.gpkg")
    write_layer(
        frame,
        path,
        style_path("prediction_class"),
        "povmap prediction (class)",
        metadata={
            "povmap_model": "/models/demo_compact.povmodel",
            "povmap_threshold": 0.5,
            "povmap_members": "demo",
        },
    )
    truth = frame[["cell_id", "district", "geometry"]].assign(
        label=(rng.uniform(0, 1, n) < probability).astype("int32")
    )
    truth_path = str(tmp_path / "truth.gpkg")
    write_layer(truth, truth_path, style_path("training_grid"), "povmap training grid")
    layer = QgsVectorLayer(path, "Predictions — Kotlani (demo_compact)", "ogr")
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    yield layer, truth_path
    QgsProject.instance().removeMapLayer(layer.id())


def test_evaluate_and_target_name_their_outputs_and_reports_use_the_layer_name(
    povmap_provider, predictions_in_project, tmp_path
):
    from processing.tools.general import runAndLoadResults

    layer, truth = predictions_in_project
    evaluated = runAndLoadResults(
        "povmap:evaluate",
        {
            "PREDICTIONS": layer.id(),
            "TRUTH": truth,
            "RANDOM_DRAWS": 10,
            "HITMISS": str(tmp_path / "hitmiss.gpkg"),
            "REPORT": str(tmp_path / "evaluation.html"),
            "METRICS": str(tmp_path / "metrics.json"),
        },
    )
    assert _names_of([evaluated["HITMISS"]]) == ["Hits and misses — Kotlani (demo_compact)"]
    targeted = runAndLoadResults(
        "povmap:target",
        {
            "PREDICTIONS": layer.id(),
            "BUDGET": 0.25,
            "OUTPUT": str(tmp_path / "selection.gpkg"),
            "ALLOCATION": str(tmp_path / "allocation.csv"),
            "REPORT": str(tmp_path / "targeting.html"),
        },
    )
    assert _names_of([targeted["OUTPUT"]]) == ["Selection — Kotlani (25 % of the cells)"]
    for report in ("evaluation.html", "targeting.html"):
        with open(tmp_path / report, encoding="utf-8") as handle:
            html = handle.read()
        assert "Predictions — Kotlani (demo_compact)" in html, report
        assert "OUTPUT against" not in html and "OUTPUT:" not in html, report
