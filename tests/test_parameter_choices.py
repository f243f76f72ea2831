"""What the dialogs offer: sensible default fields and only layers of the geometry a parameter needs."""

import os

from helpers import write_points
from qgis.core import (
    QgsApplication,
    QgsProcessing,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
)
from qgis_helpers import run_algorithm, run_failing

UTM = "EPSG:32642"
POINT = QgsProcessing.SourceType.TypeVectorPoint
POLYGON = QgsProcessing.SourceType.TypeVectorPolygon
# every vector input of every povmap algorithm and the one geometry it accepts
VECTOR_INPUTS = {
    ("buildtraininggrid", "INPUT"): POINT,
    ("buildtraininggrid", "URBAN"): POLYGON,
    ("buildtraininggrid", "DISTRICTS"): POLYGON,
    ("buildpredictiongrid", "AREA"): POLYGON,
    ("samplechips", "GRID"): POLYGON,
    ("train", "GRID"): POLYGON,
    ("predict", "GRID"): POLYGON,
    ("evaluate", "PREDICTIONS"): POLYGON,
    ("evaluate", "TRUTH"): POLYGON,
    ("crossvalidate", "GRID"): POLYGON,
    ("districtestimates", "SURVEY"): POINT,
    ("districtestimates", "DISTRICTS"): POLYGON,
    ("districtestimates", "PREDICTIONS"): POLYGON,
    ("districtestimates", "OUT_OF_FOLD"): POLYGON,
}


def algorithm(name):
    return QgsApplication.processingRegistry().createAlgorithmById(f"povmap:{name}")


def test_score_field_defaults_to_score_and_offers_numeric_fields_only(povmap_provider):
    alg = algorithm("buildtraininggrid")
    definition = alg.parameterDefinition("SCORE_FIELD")
    assert isinstance(definition, QgsProcessingParameterField)
    assert definition.defaultValue() == "score"
    assert definition.dataType() == QgsProcessingParameterField.DataType.Numeric
    assert definition.parentLayerParameterName() == "INPUT"


def test_vector_inputs_offer_only_the_geometry_they_need(povmap_provider):
    found = {}
    for alg in povmap_provider.algorithms():
        for definition in alg.parameterDefinitions():
            if isinstance(definition, QgsProcessingParameterFeatureSource):
                found[(alg.name(), definition.name())] = definition.dataTypes()
    assert {key: value for key, value in found.items() if key in VECTOR_INPUTS} == {
        key: [geometry] for key, geometry in VECTOR_INPUTS.items()
    }
    unlisted = {
        key: types
        for key, types in found.items()
        if key not in VECTOR_INPUTS and key[0] != "target"
    }
    assert all(
        QgsProcessing.SourceType.TypeVector not in types
        and QgsProcessing.SourceType.TypeVectorAnyGeometry not in types
        for types in unlisted.values()
    ), unlisted


def test_the_default_score_field_is_used_when_none_is_given(povmap_provider, tmp_path):
    points = write_points(
        tmp_path / "p.gpkg", [600100.0, 600200, 600300], [2800100.0] * 3, UTM, score=[5, 6, 7]
    )
    results, _ = run_algorithm(
        "povmap:buildtraininggrid", {"INPUT": str(points), "OUTPUT": str(tmp_path / "grid.gpkg")}
    )
    assert results["CELLS_KEPT"] == 1


def test_the_feature_id_as_score_is_refused_with_a_clear_message(povmap_provider, tmp_path):
    points = write_points(
        tmp_path / "p.gpkg", [600100.0, 600200, 600300], [2800100.0] * 3, UTM, score=[5, 6, 7]
    )
    message = run_failing(
        "povmap:buildtraininggrid",
        {"INPUT": str(points), "SCORE_FIELD": "fid", "OUTPUT": str(tmp_path / "grid.gpkg")},
    )
    assert "Poverty score field (SCORE_FIELD): 'fid' is the feature id" in message
    assert not os.path.exists(tmp_path / "grid.gpkg")


def test_labels_never_say_optional_twice_and_metrics_say_auc(povmap_provider):
    """QGIS adds "[optional]" to an optional parameter's label: the label itself never says it
    (three labels read "… optional) [optional]"); metric outputs name AUC as AUC."""
    for algorithm in povmap_provider.algorithms():
        for definition in algorithm.parameterDefinitions():
            assert "optional" not in definition.description().lower(), (
                algorithm.id(),
                definition.name(),
            )
        for output in algorithm.outputDefinitions():
            assert " auc" not in output.description(), (algorithm.id(), output.description())


def test_parameters_whose_label_said_optional_are_optional(povmap_provider):
    from qgis.core import QgsProcessingParameterDefinition

    optional = QgsProcessingParameterDefinition.Flag.FlagOptional
    for algorithm_id, names in {
        "target": ("DISTRICT_MIN_SHARE", "DISTRICT_MAX_SHARE", "TRUTH"),
        "districtestimates": (
            "WEIGHT_FIELD",
            "CLUSTER_FIELD",
            "STRATUM_FIELD",
            "POPULATION",
            "OUT_OF_FOLD",
        ),
        "verificationresults": ("POPULATION", "RECALIBRATE"),
        "verificationsample": ("MIN_DISTANCE", "FIELD_PROJECT"),
    }.items():
        algorithm = povmap_provider.algorithm(algorithm_id)
        for name in names:
            definition = algorithm.parameterDefinition(name)
            assert definition is not None, (algorithm_id, name)
            assert definition.flags() & optional, (algorithm_id, name)
