"""Outputs loaded by Processing (dialog, batch, modeler) show povmap's styles, extra styles included.

Processing loads results through ``handleAlgorithmResults``, which skips the
style saved in a GeoPackage; these tests load outputs that way (as the dialog
does) and check what the user sees in the layer's renderer and Styles menu.
"""

import os

import geopandas
import shapely
from helpers import carried_styles, write_points
from qgis.core import (
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputLayerDefinition,
    QgsProject,
    QgsVectorLayer,
)
from qgis_helpers import CapturingFeedback

from povmap_qgis.core.geopackage import write_layer
from povmap_qgis.paths import style_path
from povmap_qgis.processing.output_styles import style_on_load
from povmap_qgis.processing.predict import EXTRA_STYLES

UTM = "EPSG:32642"


def loaded_layer(path):
    """The layer of the current project whose source is ``path``."""
    wanted = os.path.abspath(path)
    for layer in QgsProject.instance().mapLayers().values():
        if os.path.abspath(layer.source().split("|")[0]) == wanted:
            return layer
    raise AssertionError(f"{path} was not loaded into the project")


def categories(layer):
    return {str(category.value()): category.label() for category in layer.renderer().categories()}


def load_as_processing_does(algorithm_id, output_name, path):
    """Load ``path`` as the Processing dialog loads an algorithm's output, post-processors included."""
    from processing.gui.Postprocessing import handleAlgorithmResults
    from qgis.core import QgsApplication

    algorithm = QgsApplication.processingRegistry().createAlgorithmById(f"povmap:{algorithm_id}")
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    definition = QgsProcessingOutputLayerDefinition(path, QgsProject.instance())
    parameters = {output_name: definition}
    destination = algorithm.parameterAsOutputLayer(parameters, output_name, context)
    assert context.willLoadLayerOnCompletion(destination)
    style_on_load(algorithm_id, output_name, destination, context)
    assert handleAlgorithmResults(
        algorithm, context, QgsProcessingFeedback(), parameters=parameters
    )
    return loaded_layer(path)


def prediction_frame():
    cells = [shapely.box(600000 + 1000 * i, 2800000, 601000 + 1000 * i, 2801000) for i in range(4)]
    return geopandas.GeoDataFrame(
        {
            "cell_id": [1, 2, 3, 4],
            "prob_mean": [0.1, 0.4, 0.6, 0.9],
            "votes": [0, 1, 2, 3],
            "pred": [0, 0, 1, 1],
            "disagreement": [0.0, 0.2, 0.3, 0.1],
        },
        geometry=cells,
        crs=UTM,
    )


def write_predictions(path, frame=None):
    """A prediction layer written as predict writes it: class style first, then the extras."""
    write_layer(
        prediction_frame() if frame is None else frame,
        path,
        style_path("prediction_class"),
        "povmap predicted class",
        extra_styles=[(style_path(name), label) for name, label in EXTRA_STYLES],
    )


def test_training_grid_run_and_loaded_by_processing_is_categorized_by_label(
    povmap_provider, tmp_path
):
    from processing.tools.general import runAndLoadResults

    points = write_points(
        tmp_path / "p.gpkg",
        [600100.0, 600200, 600300, 601100, 601200, 601300],
        [2800100.0] * 6,
        UTM,
        score=[5, 6, 7, 40, 50, 60],
    )
    output = str(tmp_path / "grid.gpkg")
    results = runAndLoadResults(
        "povmap:buildtraininggrid", {"INPUT": str(points), "SCORE_FIELD": "score", "OUTPUT": output}
    )
    layer = loaded_layer(results["OUTPUT"])
    assert layer.renderer().type() == "categorizedSymbol"
    assert layer.renderer().classAttribute() == "label"
    assert categories(layer) == {"1": "Poor (label 1)", "0": "Not poor (label 0)"}


def test_prediction_layer_loaded_by_processing_offers_probability_and_disagreement_styles(
    povmap_provider, tmp_path
):
    path = str(tmp_path / "predictions.gpkg")
    write_predictions(path)
    layer = load_as_processing_does("predict", "OUTPUT", path)
    assert layer.renderer().type() == "categorizedSymbol"
    assert layer.renderer().classAttribute() == "pred"
    assert set(categories(layer)) == {"0", "1"}
    manager = layer.styleManager()
    assert manager.currentStyle() == "povmap predicted class"
    assert sorted(manager.styles()) == sorted(
        ["povmap predicted class"] + [label for _, label in EXTRA_STYLES]
    )
    manager.setCurrentStyle("povmap probability (mean of members)")
    assert layer.renderer().type() == "graduatedSymbol"
    assert layer.renderer().classAttribute() == "prob_mean"
    manager.setCurrentStyle("povmap member disagreement")
    assert layer.renderer().classAttribute() == "disagreement"
    manager.setCurrentStyle("povmap predicted class")
    assert layer.renderer().classAttribute() == "pred"


def test_uncertainty_and_out_of_range_styles_are_saved_in_the_prediction_geopackage(
    povmap_provider, tmp_path
):
    """Carried in the file; graduated on the interval width, categorized on out_of_range."""
    from qgis.core import QgsMapLayerStyle

    from povmap_qgis.core.model.prediction import styles_with_their_fields

    frame = prediction_frame()
    frame["prob_low"] = [0.05, 0.3, 0.3, 0.85]
    frame["prob_high"] = [0.15, 0.5, 0.9, 0.95]
    frame["out_of_range"] = [0, 0, 1, 0]
    path = str(tmp_path / "predictions.gpkg")
    extra = [(style_path(name), label) for name, label in EXTRA_STYLES]
    write_layer(
        frame,
        path,
        style_path("prediction_class"),
        "povmap predicted class",
        extra_styles=styles_with_their_fields(extra, frame.columns),
    )
    layer = QgsVectorLayer(path, "predictions", "ogr")
    by_name = carried_styles(path)
    assert {
        "povmap uncertainty (prob_high − prob_low)",
        "povmap outside the training range",
    } <= set(by_name)

    def renderer_of(name):
        QgsMapLayerStyle(by_name[name]).writeToLayer(layer)
        return layer.renderer()

    width = renderer_of("povmap uncertainty (prob_high − prob_low)")
    assert width.type() == "graduatedSymbol"
    assert width.classAttribute() == '"prob_high" - "prob_low"'
    assert [(r.lowerValue(), r.upperValue()) for r in width.ranges()] == [
        (0, 0.1),
        (0.1, 0.2),
        (0.2, 0.4),
        (0.4, 1.0),
    ]
    widths = frame["prob_high"] - frame["prob_low"]  # 0.1, 0.2, 0.6, 0.1 → classes 0/1, 1, 3, 0/1
    symbols = [width.symbolForValue(float(value)) for value in widths]
    assert symbols[2].color().name() == "#525252"  # wide: the darkest class
    outside = renderer_of("povmap outside the training range")
    assert outside.type() == "categorizedSymbol"
    assert outside.classAttribute() == "out_of_range"
    assert categories(layer) == {
        "0": "Inside the training range",
        "1": "Outside the training range: treat with care",
    }
    # a 1.0 package writes no out_of_range: its style is left out, the uncertainty style kept
    kept = styles_with_their_fields(extra, frame.drop(columns=["out_of_range"]).columns)
    assert [label for _, label in kept] == [label for _, label in EXTRA_STYLES[:-1]]


def test_a_geopackage_without_styles_gets_the_plugin_styles(povmap_provider, tmp_path):
    path = str(tmp_path / "bare_predictions.gpkg")
    prediction_frame().to_file(path, layer="bare_predictions", engine="pyogrio")
    assert not QgsVectorLayer(path, "bare", "ogr").listStylesInDatabase()[0]
    layer = load_as_processing_does("predict", "OUTPUT", path)
    assert layer.renderer().classAttribute() == "pred"
    assert len(layer.styleManager().styles()) == 1 + len(EXTRA_STYLES)


def test_nothing_is_attached_when_processing_does_not_load_the_output(povmap_provider, tmp_path):
    context = QgsProcessingContext()
    assert style_on_load("predict", "OUTPUT", str(tmp_path / "x.gpkg"), context) is None


def test_added_by_hand_the_output_is_one_layer_that_opens_with_its_style(povmap_provider, tmp_path):
    """QGIS 3.22 asks "Select Items to Add" whenever a file lists more than one sublayer, system
    tables such as ``layer_styles`` included. A povmap GeoPackage lists exactly one, and QGIS
    loads ``NAME.qml`` beside it as the layer's default style (the desktop test drops the
    pipeline's outputs on a real QGIS window and sees no question)."""
    from qgis.core import Qgis, QgsProviderRegistry

    path = str(tmp_path / "predictions.gpkg")
    write_predictions(path)
    ogr = QgsProviderRegistry.instance().providerMetadata("ogr")
    listed = ogr.querySublayers(path, Qgis.SublayerQueryFlag.IncludeSystemTables)
    assert [sublayer.name() for sublayer in listed] == ["predictions"]
    layer = QgsVectorLayer(path, "predictions", "ogr")  # loads the default style, as adding does
    assert layer.renderer().type() == "categorizedSymbol"
    assert layer.renderer().classAttribute() == "pred"
    assert set(categories(layer)) == {"0", "1"}


def test_an_output_written_again_replaces_its_style_file_and_a_failed_write_leaves_both(
    tmp_path,
):
    """The GeoPackage and its style file appear together: a second run replaces both; a
    run that fails while writing leaves the previous pair as it was, and no partials."""
    import pytest

    path = str(tmp_path / "grid.gpkg")
    write_layer(prediction_frame(), path, style_path("prediction_class"), "class")
    write_layer(prediction_frame(), path, style_path("hitmiss"), "hit/miss")
    with open(style_path("hitmiss"), encoding="utf-8") as handle:
        assert carried_styles(path) == {"hit/miss": handle.read()}
    before = {name: (tmp_path / name).read_bytes() for name in ("grid.gpkg", "grid.qml")}
    unwritable = prediction_frame().assign(phase=[1j] * 4)  # no GeoPackage field type for it
    with pytest.raises(Exception, match="complex"):
        write_layer(unwritable, path, style_path("prediction_class"), "class")
    assert {name: (tmp_path / name).read_bytes() for name in ("grid.gpkg", "grid.qml")} == before
    assert sorted(os.listdir(tmp_path)) == ["grid.gpkg", "grid.qml"]


def test_every_layer_output_has_plugin_styles_to_fall_back_on(povmap_provider):
    from qgis.core import QgsProcessing, QgsProcessingParameterVectorDestination

    from povmap_qgis.processing.output_styles import FALLBACK_STYLES

    outputs = {
        (alg.name(), definition.name())
        for alg in povmap_provider.algorithms()
        for definition in alg.parameterDefinitions()
        if isinstance(definition, QgsProcessingParameterVectorDestination)
        and definition.dataType() != QgsProcessing.SourceType.TypeVector  # tables: no style
    }
    assert outputs <= set(FALLBACK_STYLES), outputs - set(FALLBACK_STYLES)
    for styles in FALLBACK_STYLES.values():
        assert all(os.path.isfile(style_path(name)) for name, _ in styles)


def test_a_table_output_is_loaded_without_a_warning(povmap_provider, tmp_path):
    import pandas
    import pyogrio

    from povmap_qgis.processing.output_styles import OutputStyler

    path = str(tmp_path / "runs.gpkg")
    pyogrio.write_dataframe(pandas.DataFrame({"run": ["a", "b"]}), path, layer="runs")
    layer = QgsVectorLayer(path, "runs", "ogr")
    feedback = CapturingFeedback()
    OutputStyler().postProcessLayer(layer, QgsProcessingContext(), feedback)
    assert feedback.warnings == []


def test_a_file_added_by_hand_gets_its_extra_styles_and_its_default_without_the_qml(
    povmap_provider, tmp_path
):
    """While the plugin is loaded: the carried extra styles join the style list of a povmap
    GeoPackage added to a project; a copy without its NAME.qml (moved alone) still opens drawn
    by class; a project being read keeps the styles it saved."""
    import shutil

    from qgis.core import QgsProject

    from povmap_qgis.processing.output_styles import AddedByHandStyler

    path = str(tmp_path / "predictions.gpkg")
    write_predictions(path)
    alone = tmp_path / "moved"
    alone.mkdir()
    shutil.copy(path, alone / "predictions.gpkg")
    project = QgsProject()
    styler = AddedByHandStyler(project)
    try:
        with_qml = QgsVectorLayer(path, "with qml", "ogr")
        without_qml = QgsVectorLayer(str(alone / "predictions.gpkg"), "alone", "ogr")
        assert without_qml.renderer().type() == "singleSymbol"  # what QGIS alone gives it
        project.addMapLayers([with_qml, without_qml])
        extra_names = {label for _, label in EXTRA_STYLES}
        assert set(with_qml.styleManager().styles()) == {"default"} | extra_names
        assert with_qml.renderer().classAttribute() == "pred"  # QGIS's, from the .qml
        assert without_qml.renderer().type() == "categorizedSymbol"
        assert without_qml.renderer().classAttribute() == "pred"
        assert set(without_qml.styleManager().styles()) == {"povmap predicted class"} | extra_names

        saved = QgsProject()
        saved.addMapLayer(QgsVectorLayer(path, "saved", "ogr"))
        assert saved.write(str(tmp_path / "saved.qgz"))
        project.clear()
        assert project.read(str(tmp_path / "saved.qgz"))
        (reread,) = project.mapLayers().values()
        assert reread.styleManager().styles() == ["default"]
    finally:
        styler.disconnect()
