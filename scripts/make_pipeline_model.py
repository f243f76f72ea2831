#!/usr/bin/env python3
"""Write resources/models/survey_pipeline.model3, the Graphical Modeler model of the survey pipeline.

Run with the project's venv (it sees PyQGIS), after the plugin is built
(``scripts/build_plugin.py``): ``.venv/bin/python scripts/make_pipeline_model.py``.
The model is committed; this script is how it was made and how to remake it after
a parameter of a povmap algorithm changes. tests/test_chaining.py runs the file.

The model: survey → Build training grid → Sample image chips → Train; a second,
ground-truth survey → Build training grid (same CRS) → Sample image chips → Predict
with the trained package → Evaluate against that survey's labels.

Every step's parameters that are not wired to an input or another step carry the algorithm's
default as a static value (as the Modeler writes them), so the model opens valid; the inputs
are shown in the order of ``definitions`` (survey first), which the file records.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_FILE = os.path.join(ROOT, "resources", "models", "survey_pipeline.model3")
MODEL_NAME = "survey_pipeline"
MODEL_GROUP = "Poverty mapping"
PRESETS = ["paper", "compact"]  # povmap:train's PRESET options, in its order

DESCRIPTION = (
    "The survey pipeline in one run: household survey → training grid → image chips → trained "
    "ensemble; a second survey (e.g. a new survey of a district left out of training) → its "
    "grid in the same CRS → chips → predictions of the trained ensemble → evaluation against that "
    "survey's labels (hit/miss layer, metrics, HTML report). Give the rasters the model should "
    "learn from (at least one). Open it in the Graphical Modeler to change any step's settings."
)

# name -> (help) of the model's inputs; the definitions are made in build_survey_pipeline().
HELP = {
    "SURVEY": "One point per surveyed household (the training survey), in any CRS.",
    "SCORE_FIELD": "Numeric poverty score of each household of SURVEY (e.g. the Simple Poverty "
    "Scorecard); not an id such as fid.",
    "GROUND_TRUTH": "A second household survey to check the predictions against, e.g. a new "
    "survey of a district left out of training. Its cells are gridded in the training grid's CRS.",
    "TRUTH_SCORE_FIELD": "Numeric poverty score of each household of GROUND_TRUTH.",
    "DISTRICTS": "District polygons (optional): households outside every district are dropped; "
    "each cell takes its district's name, used in the per-district table of the report.",
    "DISTRICT_FIELD": "Field of DISTRICTS holding the district name.",
    "DAYTIME": "Daytime imagery (e.g. Sentinel-2), bands 1, 2, 3 as red, green, blue (optional).",
    "NIGHTLIGHTS": "Night-time lights raster (e.g. VIIRS), band 1 (optional).",
    "ACCESSIBILITY": "Accessibility raster (e.g. travel time to cities), band 1 (optional).",
    "PRESET": "compact: three small CNNs and stats_gbm (gradient boosting on per-chip statistics), "
    "stacked, that train on a CPU (default); paper: ResNet50 + ResNet50V2 + ResNet101 as in the "
    "paper (use a GPU). Numbers: paper (0), compact (1).",
    "EPOCHS": "Upper bound on epochs per member; 0: the preset's (early stopping usually ends "
    "sooner).",
    "CRS": "A projected CRS in metres for the cells of both surveys. Empty: the UTM zone of the "
    "households' median position in SURVEY.",
}


def build_survey_pipeline():
    """The model as a QgsProcessingModelAlgorithm (needs a running QGIS with povmap registered)."""
    from qgis.core import (
        QgsProcessing,
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelChildParameterSource,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterCrs,
        QgsProcessingParameterEnum,
        QgsProcessingParameterFeatureSource,
        QgsProcessingParameterField,
        QgsProcessingParameterNumber,
        QgsProcessingParameterRasterLayer,
    )
    from qgis.PyQt.QtCore import QPointF

    model = QgsProcessingModelAlgorithm(MODEL_NAME, MODEL_GROUP, "povmap")
    points = [QgsProcessing.SourceType.TypeVectorPoint]
    polygons = [QgsProcessing.SourceType.TypeVectorPolygon]
    numeric = QgsProcessingParameterField.DataType.Numeric
    definitions = [
        QgsProcessingParameterFeatureSource("SURVEY", "Household survey points", points),
        QgsProcessingParameterField(
            "SCORE_FIELD", "Poverty score field", "score", "SURVEY", numeric
        ),
        QgsProcessingParameterFeatureSource("GROUND_TRUTH", "Ground-truth survey points", points),
        QgsProcessingParameterField(
            "TRUTH_SCORE_FIELD",
            "Ground truth: poverty score field",
            "score",
            "GROUND_TRUTH",
            numeric,
        ),
        QgsProcessingParameterFeatureSource("DISTRICTS", "Districts", polygons, optional=True),
        QgsProcessingParameterField(
            "DISTRICT_FIELD", "District name field", None, "DISTRICTS", optional=True
        ),
        QgsProcessingParameterRasterLayer("DAYTIME", "Daytime imagery", optional=True),
        QgsProcessingParameterRasterLayer("NIGHTLIGHTS", "Night-time lights", optional=True),
        QgsProcessingParameterRasterLayer("ACCESSIBILITY", "Accessibility", optional=True),
        QgsProcessingParameterEnum("PRESET", "Preset", PRESETS, False, PRESETS.index("compact")),
        QgsProcessingParameterNumber(
            "EPOCHS",
            "Maximum epochs (0: the preset's)",
            QgsProcessingParameterNumber.Type.Integer,
            0,
            False,
            0,
        ),
        QgsProcessingParameterCrs("CRS", "Grid CRS (empty: UTM zone of the survey)", optional=True),
    ]
    for row, definition in enumerate(definitions):
        definition.setHelp(HELP[definition.name()])
        component = QgsProcessingModelParameter(definition.name())
        component.setDescription(definition.description())
        component.setPosition(QPointF(120, 60 + 70 * row))
        model.addModelParameter(definition, component)

    def parameter(name):
        return [QgsProcessingModelChildParameterSource.fromModelParameter(name)]

    def output_of(child_id, name):
        return [QgsProcessingModelChildParameterSource.fromChildOutput(child_id, name)]

    def value(static):
        return [QgsProcessingModelChildParameterSource.fromStaticValue(static)]

    rasters = {name: parameter(name) for name in ("DAYTIME", "NIGHTLIGHTS", "ACCESSIBILITY")}
    children = [  # child id, algorithm, description, position, sources, model outputs
        (
            "training_grid",
            "buildtraininggrid",
            "Build training grid (survey)",
            (480, 80),
            {
                "INPUT": parameter("SURVEY"),
                "SCORE_FIELD": parameter("SCORE_FIELD"),
                "DISTRICTS": parameter("DISTRICTS"),
                "DISTRICT_FIELD": parameter("DISTRICT_FIELD"),
                "CRS": parameter("CRS"),
            },
            {},
        ),
        (
            "training_chips",
            "samplechips",
            "Sample image chips (survey cells)",
            (480, 240),
            {"GRID": output_of("training_grid", "OUTPUT"), **rasters},
            {},
        ),
        (
            "train",
            "train",
            "Train poverty ensemble",
            (480, 400),
            {
                "CHIPS": output_of("training_chips", "OUTPUT"),
                "GRID": output_of("training_grid", "OUTPUT"),
                "PRESET": parameter("PRESET"),
                "EPOCHS": parameter("EPOCHS"),
                "SEED": value(0),
            },
            {"OUTPUT": "Model package"},
        ),
        (
            "truth_grid",
            "buildtraininggrid",
            "Build training grid (ground truth, same CRS)",
            (820, 80),
            {
                "INPUT": parameter("GROUND_TRUTH"),
                "SCORE_FIELD": parameter("TRUTH_SCORE_FIELD"),
                "DISTRICTS": parameter("DISTRICTS"),
                "DISTRICT_FIELD": parameter("DISTRICT_FIELD"),
                "CRS": output_of("training_grid", "GRID_CRS"),
            },
            {},
        ),
        (
            "truth_chips",
            "samplechips",
            "Sample image chips (ground-truth cells)",
            (820, 240),
            {"GRID": output_of("truth_grid", "OUTPUT"), **rasters},
            {},
        ),
        (
            "predict",
            "predict",
            "Predict poverty (ground-truth cells)",
            (820, 400),
            {
                "MODEL": output_of("train", "OUTPUT"),
                "CHIPS": output_of("truth_chips", "OUTPUT"),
                "GRID": output_of("truth_grid", "OUTPUT"),
            },
            {"OUTPUT": "Predictions"},
        ),
        (
            "evaluate",
            "evaluate",
            "Evaluate predictions",
            (820, 560),
            {
                "PREDICTIONS": output_of("predict", "OUTPUT"),
                "TRUTH": output_of("truth_grid", "OUTPUT"),
            },
            {"HITMISS": "Hits and misses", "REPORT": "Report", "METRICS": "Metrics"},
        ),
    ]
    for child_id, algorithm, description, (x, y), sources, outputs in children:
        child = QgsProcessingModelChildAlgorithm(f"povmap:{algorithm}")
        if child.algorithm() is None:
            raise RuntimeError(f"povmap:{algorithm} is not registered: load the povmap provider")
        child.setChildId(child_id)
        child.setDescription(description)
        child.setPosition(QPointF(x, y))
        for name, source in {**_defaults_of(child.algorithm()), **sources}.items():
            child.addParameterSources(name, source)
        model_outputs = {}
        for output_name, label in outputs.items():
            output = QgsProcessingModelOutput(label, label)
            output.setChildId(child_id)
            output.setChildOutputName(output_name)
            output.setPosition(QPointF(x + 260, y + 40 + 40 * len(model_outputs)))
            model_outputs[label] = output
        child.setModelOutputs(model_outputs)
        model.addChildAlgorithm(child)
    model.updateDestinationParameters()
    model.setParameterOrder([definition.name() for definition in definitions])
    model.setHelpContent({"ALG_DESC": DESCRIPTION, "ALG_CREATOR": "povmap-qgis", **HELP})
    return model


def _defaults_of(algorithm):
    """Each input parameter of ``algorithm`` with a default, as a static value: what the Modeler's
    step dialog writes when a step is added. A mandatory parameter without a value makes the
    model invalid ("Parameter X is mandatory") even where the algorithm has a default."""
    from qgis.core import QgsProcessingModelChildParameterSource

    return {
        definition.name(): [
            QgsProcessingModelChildParameterSource.fromStaticValue(definition.defaultValue())
        ]
        for definition in algorithm.parameterDefinitions()
        if not definition.isDestination() and definition.defaultValue() is not None
    }


def main():
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    sys.path.insert(0, os.path.join(ROOT, "build"))
    sys.path.append("/usr/share/qgis/python/plugins")
    from qgis.core import QgsApplication

    application = QgsApplication([], False)
    application.initQgis()
    from processing.core.Processing import Processing

    Processing.initialize()
    from povmap_qgis.processing.provider import PovmapProvider

    provider = PovmapProvider()
    QgsApplication.processingRegistry().addProvider(provider)
    model = build_survey_pipeline()
    os.makedirs(os.path.dirname(MODEL_FILE), exist_ok=True)
    if not model.toFile(MODEL_FILE):
        raise SystemExit(f"could not write {MODEL_FILE}")
    print(f"wrote {MODEL_FILE}")
    QgsApplication.processingRegistry().removeProvider(provider)


if __name__ == "__main__":
    main()
