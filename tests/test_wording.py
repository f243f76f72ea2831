"""What users read: counts with the right plural, labels beside ids, sensible decimals, toolbox tooltips."""

import os

from helpers import write_points
from qgis.core import QgsApplication
from qgis_helpers import run_failing

from povmap_qgis.core.model.prediction import members_summary
from povmap_qgis.core.wording import counted

UTM = "EPSG:32642"


def algorithm(name):
    return QgsApplication.processingRegistry().createAlgorithmById(f"povmap:{name}")


def test_counts_say_one_member_and_several_members():
    assert counted(1, "member") == "1 member"
    assert counted(3, "member") == "3 members"
    assert counted(1656, "cell") == "1,656 cells"
    assert counted(2, "child", "children") == "2 children"
    assert members_summary([{"name": "compact_cnn"}], 1) == "1 member (compact_cnn) on 1 cell"
    assert (
        members_summary([{"name": "a"}, {"name": "b"}], 1200) == "2 members (a, b) on 1,200 cells"
    )


def test_double_parameters_show_a_few_decimals_not_six(povmap_provider):
    expected = {
        ("buildtraininggrid", "CELL_SIZE"): 2,  # 1000.00, not 1000.000000
        ("buildtraininggrid", "CUTOFF"): 2,
        ("samplechips", "RESOLUTION"): 2,
        ("samplechips", "MAX_NODATA"): 2,
        ("train", "TARGET_RECALL"): 2,
    }
    for (name, parameter), decimals in expected.items():
        alg = algorithm(name)
        metadata = alg.parameterDefinition(parameter).metadata()
        assert metadata["widget_wrapper"]["decimals"] == decimals, (name, parameter)


def test_every_algorithm_has_a_one_sentence_toolbox_description(povmap_provider):
    for alg in povmap_provider.algorithms():
        description = alg.shortDescription()
        assert 20 < len(description) <= 160 and description.endswith((".", "…")), alg.id()
        assert ". " not in description, alg.id()


def test_help_gives_the_label_beside_each_id(povmap_provider):
    alg = algorithm("buildtraininggrid")
    help_text = alg.shortHelpString()
    assert "<i>Minimum households per cell (privacy)</i> (MIN_OBS)" in help_text
    assert "<i>GPS accuracy field (m)</i> (ACCURACY_FIELD)" in help_text
    assert "in any CRS" in help_text  # a plain word, not the parameter


def test_errors_give_the_label_beside_the_id(povmap_provider, tmp_path):
    points = write_points(
        tmp_path / "p.gpkg", [600100.0, 600200, 600300], [2800100.0] * 3, UTM, score=[5, 6, 7]
    )
    message = run_failing(
        "povmap:buildtraininggrid",
        {"INPUT": str(points), "SCORE_FIELD": "wealth", "OUTPUT": str(tmp_path / "grid.gpkg")},
    )
    assert "Poverty score field — SCORE_FIELD: the field 'wealth'" in message
    assert not os.path.exists(tmp_path / "grid.gpkg")


def test_errors_raised_by_an_algorithm_itself_give_the_label_too(
    povmap_provider, tiny_sample, tmp_path
):
    message = run_failing(
        "povmap:samplechips",
        {
            "GRID": os.path.join(tiny_sample, "synthetic_districts.gpkg"),
            "DAYTIME": os.path.join(tiny_sample, "synthetic_daytime_s2l2a_10m.tif"),
            "DAYTIME_BANDS": "red,green",
            "OUTPUT": str(tmp_path / "never-written.chips"),
        },
    )
    assert "Daytime bands (red, green, blue) — DAYTIME_BANDS: 'red,green' is not a list" in message
    assert os.listdir(tmp_path) == []
