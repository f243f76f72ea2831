"""The synthetic sample project: contents, realism checks, determinism, QGIS project, rendering."""

import hashlib
import json
import os
import subprocess
import sys

import geopandas
import numpy as np
import pandas
import pyogrio
import pytest
import rasterio
from conftest import ROOT


def metadata(sample):
    with open(os.path.join(sample, "synthetic_sample_metadata.json"), encoding="utf-8") as handle:
        return json.load(handle)


def test_rasters_look_like_their_real_counterparts(tiny_sample):
    with rasterio.open(os.path.join(tiny_sample, "synthetic_daytime_s2l2a_10m.tif")) as daytime:
        assert daytime.crs.to_epsg() == 32642 and daytime.res == (10.0, 10.0)
        assert daytime.count >= 3 and set(daytime.dtypes) == {"uint16"}
        assert daytime.overviews(1), "daytime image needs overviews"
        assert [description.lower()[:3] for description in daytime.descriptions[:3]] == [
            "red",
            "gre",
            "blu",
        ] or "B4" in daytime.descriptions[0]
        red = daytime.read(1, out_shape=(200, 300))
        assert 200 < np.median(red) < 5000 and red.std() > 50  # reflectance x 10000, textured
    with rasterio.open(os.path.join(tiny_sample, "synthetic_viirs_15arcsec.tif")) as lights:
        assert lights.crs.to_epsg() == 4326 and np.allclose(lights.res, (15 / 3600, 15 / 3600))
        assert lights.dtypes[0] == "float32"
        radiance = lights.read(1)
        assert radiance.max() > 10 * np.median(radiance) > 0  # bright towns over a noise floor
    with rasterio.open(os.path.join(tiny_sample, "synthetic_accessibility_30arcsec.tif")) as access:
        assert access.crs.to_epsg() == 4326 and np.allclose(
            access.res, (30 / 3600, 30 / 3600), rtol=0.01
        )
        minutes = access.read(1, masked=True)
        assert minutes.min() >= 0 and minutes.max() > 10


def test_vectors_and_survey_errors_as_the_paper_describes(tiny_sample):
    districts = geopandas.read_file(os.path.join(tiny_sample, "synthetic_districts.gpkg"))
    assert len(districts) >= 7 and districts["name"].is_unique
    assert sorted(districts["surveyed"].tolist()).count(0) == 1
    assert districts.geometry.is_valid.all()
    survey = geopandas.read_file(os.path.join(tiny_sample, "synthetic_survey.gpkg"))
    assert survey.crs.to_epsg() == 4326
    assert {"score", "gps_accuracy_m", "survey_date"} <= set(survey.columns)
    assert survey["score"].between(0, 100).all() and (survey["score"] == 0).mean() > 0.003
    assert (survey["gps_accuracy_m"] > 20).mean() > 0.005
    assert (pandas.to_datetime(survey["survey_date"]) < "2016-01-01").mean() > 0.005
    urban = geopandas.read_file(os.path.join(tiny_sample, "synthetic_urban_centres.gpkg")).to_crs(
        4326
    )
    in_towns = geopandas.sjoin(survey, urban, predicate="within")
    assert len(in_towns) > 0  # enumerator congregation points and town households
    unsurveyed = districts[districts["surveyed"] == 0].to_crs(4326)
    truth = geopandas.read_file(os.path.join(tiny_sample, "synthetic_ground_truth_survey.gpkg"))
    assert len(geopandas.sjoin(truth, unsurveyed, predicate="within")) == len(truth)
    assert len(geopandas.sjoin(survey, unsurveyed, predicate="within")) == 0


@pytest.fixture(scope="module")
def checked_sample(tmp_path_factory):
    """The tiny sample generated again as the demo is, with the ceiling check (no project)."""
    folder = tmp_path_factory.mktemp("checked") / "tiny"
    subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "scripts", "make_sample_project.py"),
            "--size",
            "tiny",
            "--out",
            str(folder),
            "--quiet",
            "--no-project",
        ],
        check=True,
    )
    return str(folder)


def test_metadata_states_synthetic_and_a_realistic_ceiling(tiny_sample, checked_sample):
    described = metadata(tiny_sample)
    assert described["synthetic"] is True and "SYNTHETIC" in described["statement"]
    assert described["seed"] == 42 and described["size"] == "tiny"
    # the test fixture skips the ceiling check (--no-check); by default it runs
    assert described["ceiling_auc"] is None and described["checks"] == {}
    checked = metadata(checked_sample)
    assert set(checked["checks"]) == {"survey", "ground_truth_survey"}
    assert 0.78 <= checked["ceiling_auc"] <= 0.92, checked["ceiling_auc"]
    assert checked["ceiling_auc"] == checked["checks"]["survey"]["ceiling_auc"]
    for name in os.listdir(tiny_sample):
        if name.endswith((".tif", ".gpkg", ".qgz")):
            assert name.startswith("synthetic_"), name


def _content_digest(folder, names=None):
    digest = hashlib.sha256()
    for name in sorted(names if names is not None else os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.endswith(".tif"):
            with rasterio.open(path) as dataset:
                digest.update(dataset.read().tobytes())
        elif name.endswith(".gpkg"):
            frame = pyogrio.read_dataframe(path)
            digest.update(
                pandas.util.hash_pandas_object(
                    frame.drop(columns="geometry"), index=False
                ).values.tobytes()
            )
            digest.update(b"".join(frame.geometry.to_wkb()))
    return digest.hexdigest()


def test_generation_is_deterministic_for_a_seed(tiny_sample, checked_sample):
    """Generated twice, with and without the ceiling check: the same data (the check only reads);
    the fixture's --sae adds its two files and changes none of the others."""
    default = sorted(name for name in os.listdir(checked_sample) if not name.endswith(".aux.xml"))
    added = {name for name in os.listdir(tiny_sample) if not name.endswith(".aux.xml")} - set(
        default
    )
    assert added == {  # (.aux.xml: statistics GDAL writes beside a raster QGIS has read)
        "synthetic_clustered_survey.gpkg",
        "synthetic_subdistricts.gpkg",
        "synthetic_sample_project.qgz",  # the checked sample is made without the project
    }
    assert _content_digest(checked_sample, default) == _content_digest(tiny_sample, default)


def test_project_opens_with_every_layer_valid(qgis_app, tiny_sample):
    from qgis.core import QgsProject

    project = QgsProject()
    assert project.read(os.path.join(tiny_sample, "synthetic_sample_project.qgz"))
    layers = list(project.mapLayers().values())
    assert len(layers) >= 7
    assert all(layer.isValid() for layer in layers), [
        layer.name() for layer in layers if not layer.isValid()
    ]
    assert all("ynthetic" in layer.name() for layer in layers)
    assert project.crs().authid() == "EPSG:32642"


def test_the_project_renders_to_a_map_with_many_colours(tiny_sample, tmp_path):
    from PIL import Image

    output = tmp_path / "map.png"
    subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "scripts", "sample_project_qgz.py"),
            tiny_sample,
            "--render",
            str(output),
            "--width",
            "600",
            "--quiet",
        ],
        check=True,
        env=dict(os.environ, QT_QPA_PLATFORM="offscreen"),
    )
    image = np.asarray(Image.open(output).convert("RGB"))
    assert image.shape[1] == 600
    assert image.std() > 20
    assert (
        len(np.unique(image.reshape(-1, 3) // 32, axis=0)) > 30
    )  # fields, water, towns, labels: not a flat picture


def test_render_map_draws_a_styled_grid_over_the_project(povmap_provider, tiny_sample, tmp_path):
    from PIL import Image
    from qgis_helpers import run_algorithm

    results, _ = run_algorithm(
        "povmap:buildtraininggrid",
        {
            "INPUT": os.path.join(tiny_sample, "synthetic_survey.gpkg"),
            "SCORE_FIELD": "score",
            "URBAN": os.path.join(tiny_sample, "synthetic_urban_centres.gpkg"),
            "OUTPUT": str(tmp_path / "grid.gpkg"),
        },
    )
    output = tmp_path / "map.png"
    subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "scripts", "render_map.py"),
            str(output),
            results["OUTPUT"],
            "--project",
            os.path.join(tiny_sample, "synthetic_sample_project.qgz"),
            "--project-layers",
            "daytime",
            "--width",
            "500",
        ],
        check=True,
        env=dict(os.environ, QT_QPA_PLATFORM="offscreen"),
        capture_output=True,
    )
    pixels = np.asarray(Image.open(output).convert("RGB")).reshape(-1, 3).astype(int)
    orange = (
        (pixels[:, 0] > 180) & (pixels[:, 1] > 60) & (pixels[:, 1] < 150) & (pixels[:, 2] < 90)
    )  # poor cells, #e66101
    purple = (pixels[:, 2] > 110) & (pixels[:, 0] < 130) & (pixels[:, 1] < 100)  # not poor, #5e3c99
    assert orange.mean() > 0.02 and purple.mean() > 0.02, (orange.mean(), purple.mean())
