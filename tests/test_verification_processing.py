"""povmap:verificationsample and povmap:verificationresults through Processing and qgis_process:
the outputs written and styled, the QField project opened by QGIS with its form's widgets, the
numbers returned equal to the core step's, a sample with edited weights refused with nothing written."""

import json
import os

import pandas
import pyogrio
import pytest
from helpers import carried_styles
from test_verification import design_of, edit_geopackage, kobo_returns, prediction_frame

_CAMPAIGN: dict = {}


@pytest.fixture
def campaign(tmp_path_factory, povmap_provider):
    """One sample drawn through Processing, shared by the tests of this module."""
    if not _CAMPAIGN:
        _CAMPAIGN.update(_draw(tmp_path_factory))
    return _CAMPAIGN


def _draw(tmp_path_factory):
    from qgis_helpers import run_algorithm

    from povmap_qgis.core.geopackage import write_layer

    folder = tmp_path_factory.mktemp("verification_processing")
    frame, latent = prediction_frame(seed=2)
    write_layer(frame, str(folder / "predictions.gpkg"))
    results, feedback = run_algorithm(
        "povmap:verificationsample",
        {
            "PREDICTIONS": str(folder / "predictions.gpkg"),
            "SAMPLE_SIZE": 60,
            "SEED": 11,
            "OUTPUT": str(folder / "sample.gpkg"),
            "FORM": str(folder / "form.xlsx"),
            "FIELD_PROJECT": str(folder / "field.qgz"),
        },
    )
    truth = pandas.Series((latent > 0.1).astype(int), index=frame["cell_id"])
    return {"folder": folder, "results": results, "feedback": feedback, "truth": truth}


def test_sample_outputs_are_written_styled_and_counted(campaign):
    results, folder = campaign["results"], campaign["folder"]
    sample = pyogrio.read_dataframe(results["OUTPUT"], layer="sample")
    assert results["SAMPLED"] == len(sample) == 60
    assert results["CELLS"] == sum(row["cells"] for row in design_of(results["OUTPUT"])["strata"])
    assert "povmap verification sample" in carried_styles(results["OUTPUT"], "sample")
    assert os.path.isfile(folder / "form.xlsx") and results["FIELD_PROJECT"] == str(
        folder / "field.qgz"
    )


def test_field_project_opens_in_qgis_with_the_form_configured(campaign):
    from qgis.core import QgsFieldConstraints, QgsProject

    project = QgsProject()
    assert project.read(str(campaign["folder"] / "field.qgz"))
    (layer,) = project.mapLayers().values()
    assert layer.isValid() and layer.featureCount() == 60
    assert not os.path.isabs(project.readPath("./sample.gpkg")) or True  # paths stored relative:
    with __import__("zipfile").ZipFile(campaign["folder"] / "field.qgz") as archive:
        text = archive.read(next(n for n in archive.namelist() if n.endswith(".qgs"))).decode()
    assert "./sample.gpkg" in text and str(campaign["folder"]) not in text
    fields = layer.fields()
    widget = layer.editorWidgetSetup(fields.indexOf("observed_poor"))
    assert widget.type() == "ValueMap"
    assert {value for item in widget.config()["map"] for value in item.values()} == {"1", "0"}
    assert layer.editorWidgetSetup(fields.indexOf("households_visited")).type() == "Range"
    assert layer.editorWidgetSetup(fields.indexOf("visit_date")).type() == "DateTime"
    poor = fields.indexOf("households_poor")
    assert '"households_poor" <= "households_visited"' in layer.constraintExpression(poor)
    assert (
        fields.at(poor)
        .constraints()
        .constraintStrength(QgsFieldConstraints.Constraint.ConstraintExpression)
        == QgsFieldConstraints.ConstraintStrength.ConstraintStrengthHard
    )
    assert "now()" in layer.defaultValueDefinition(fields.indexOf("visit_date")).expression()
    config = layer.editFormConfig()
    assert config.readOnly(fields.indexOf("weight")) and config.readOnly(fields.indexOf("stratum"))
    assert not config.readOnly(fields.indexOf("observed_poor"))


def test_results_through_qgis_process_return_the_core_numbers(campaign):
    from conftest import run_qgis_process

    folder = campaign["folder"]
    sample = pyogrio.read_dataframe(folder / "sample.gpkg", layer="sample")
    returns = kobo_returns({"truth": campaign["truth"]}, sample, skip=(2,))
    returns.to_csv(folder / "kobo.csv", index=False)
    completed = run_qgis_process(
        "run",
        "povmap:verificationresults",
        "--",
        f"SAMPLE={folder / 'sample.gpkg'}",
        f"RETURNS={folder / 'kobo.csv'}",
        f"OUTPUT={folder / 'outcomes.gpkg'}",
        f"METRICS={folder / 'metrics.json'}",
        f"REPORT={folder / 'report.html'}",
    )
    results = dict(line.split(":\t", 1) for line in completed.stdout.splitlines() if ":\t" in line)
    metrics = json.load(open(folder / "metrics.json", encoding="utf-8"))
    assert float(results["USERS_ACCURACY_POOR"]) == pytest.approx(
        metrics["users_accuracy_poor"]["estimate"]
    )
    assert float(results["POOR_SHARE_LOW"]) == pytest.approx(metrics["poor_share"]["low"])
    assert int(float(results["VISITED"])) == 59 and int(float(results["MISSING"])) == 1
    html = open(folder / "report.html", encoding="utf-8").read()
    assert "poor cells were poor" in html and html.count("data:image/png;base64,") == 1
    assert html.index("poor cells were poor") < html.index(
        "Error matrix"
    )  # the plain summary first
    outcomes = pyogrio.read_dataframe(folder / "outcomes.gpkg")
    assert (outcomes["outcome"] == "not_visited").sum() == 1
    assert "povmap verification outcome" in carried_styles(str(folder / "outcomes.gpkg"))


def test_edited_weights_are_refused_through_processing_nothing_written(campaign, tmp_path):
    import shutil

    from qgis_helpers import run_failing

    shutil.copy(campaign["folder"] / "sample.gpkg", tmp_path / "sample.gpkg")
    edit_geopackage(str(tmp_path / "sample.gpkg"), ["UPDATE sample SET weight = 1 WHERE fid = 1"])
    out = tmp_path / "out"
    out.mkdir()
    message = run_failing(
        "povmap:verificationresults",
        {
            "SAMPLE": str(tmp_path / "sample.gpkg"),
            "OUTPUT": str(out / "o.gpkg"),
            "METRICS": str(out / "m.json"),
            "REPORT": str(out / "r.html"),
        },
    )
    assert "Verification sample — SAMPLE:" in message and "no longer matches the design" in message
    assert os.listdir(out) == []
