"""The QField project of a verification sample opened in the real QGIS desktop (Xvfb): the layer
loads from its relative path and the feature form shows the widgets the project configured
(value map, spin boxes, date picker, multi-line notes; the design fields not editable)."""

import json
import os
import shutil
import signal
import subprocess

import pytest
from conftest import INSTALLED_PLUGIN
from required_tools import xvfb_run
from test_desktop import PROFILE_SETTINGS, SCREEN, _missing_tools
from test_verification import prediction_frame

pytestmark = pytest.mark.slow
DRIVER = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "desktop", "open_field_project.py"
)
QGIS_TIMEOUT_S = 120


def test_field_project_form_in_the_qgis_desktop(tmp_path, qgis_app):
    from povmap_qgis.core.geopackage import write_layer
    from povmap_qgis.core.verification.verification_sample import (
        VerificationSampleOptions,
        verification_sample,
    )
    from povmap_qgis.processing.field_project import write_field_project

    missing = _missing_tools()
    if missing and os.environ.get("CI"):
        pytest.fail(f"CI must run the desktop test: install {', '.join(missing)} (scripts/setup)")
    if missing:
        pytest.skip(f"the desktop test needs {', '.join(missing)}")
    campaign = tmp_path / "campaign"
    campaign.mkdir()
    frame, _ = prediction_frame(seed=3)
    write_layer(frame, str(tmp_path / "predictions.gpkg"))
    verification_sample(
        VerificationSampleOptions(
            str(tmp_path / "predictions.gpkg"), str(campaign / "sample.gpkg"), sample_size=40
        )
    )
    write_field_project(
        str(campaign / "sample.gpkg"), "sample", str(campaign / "field.qgz"), "Verification sample"
    )
    moved = tmp_path / "on_the_phone"  # the folder copied elsewhere: the relative path must hold
    shutil.copytree(campaign, moved)
    shutil.rmtree(campaign)
    out = tmp_path / "out"
    out.mkdir()
    config = tmp_path / "qgis-config"
    profile = config / "profiles" / "default"
    shutil.copytree(
        INSTALLED_PLUGIN,
        profile / "python" / "plugins" / "povmap_qgis",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    (profile / "QGIS").mkdir(parents=True)
    (profile / "QGIS" / "QGIS3.ini").write_text(PROFILE_SETTINGS, encoding="utf-8")
    environment = dict(os.environ, POVMAP_DESKTOP_OUT=str(out), POVMAP_TRACKING="off")
    for name in ("QT_QPA_PLATFORM", "QGIS_CUSTOM_CONFIG_PATH", "QGIS_OPTIONS_PATH"):
        environment.pop(name, None)
    command = [
        *xvfb_run(SCREEN),
        "qgis",
        "--nologo",
        "--noversioncheck",
        "--profiles-path",
        str(config),
        "--project",
        str(moved / "field.qgz"),
        "--code",
        DRIVER,
    ]
    with open(tmp_path / "qgis.log", "wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=environment, start_new_session=True
        )
        try:
            process.wait(timeout=QGIS_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    text = (tmp_path / "qgis.log").read_text(encoding="utf-8", errors="replace")
    assert (out / "report.json").exists(), text[-3000:]
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["finished"], report["error"]
    print(report["widgets"])
    assert report["layers"] == [{"name": "Verification sample", "valid": True, "features": 40}]
    widgets = report["widgets"]
    assert widgets["observed_poor"]["class"] == "QComboBox"  # the value map
    assert "SpinBox" in widgets["households_visited"]["class"]
    assert "SpinBox" in widgets["households_poor"]["class"]
    assert "DateTimeEdit" in widgets["visit_date"]["class"]
    assert widgets["notes"]["class"] in ("QTextEdit", "QPlainTextEdit", "QTextBrowser")
    for field in ("observed_poor", "households_visited", "households_poor", "visit_date", "notes"):
        assert widgets[field]["editable"], field
    for field in ("weight", "stratum", "inclusion_probability", "cell_id"):
        assert not widgets[field]["editable"], field
