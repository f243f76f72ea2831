"""The bundled survey pipeline (resources/models/survey_pipeline.model3) opens as QGIS's
Graphical Modeler opens it: valid, every step complete, the survey inputs first."""

import importlib.util
import os

from conftest import ROOT

MODEL_FILE = os.path.join(ROOT, "resources", "models", "survey_pipeline.model3")


def test_the_bundled_pipeline_model_opens_valid_with_the_survey_first(povmap_provider):
    from qgis.core import QgsProcessingModelAlgorithm

    model = QgsProcessingModelAlgorithm()
    assert model.fromFile(MODEL_FILE), MODEL_FILE
    assert len(model.childAlgorithms()) == 7
    for child_id in model.childAlgorithms():
        valid, issues = model.validateChildAlgorithm(child_id)
        assert valid and not issues, (child_id, issues)
    valid, issues = model.validate()
    assert valid and not issues, issues
    inputs = [
        definition.name()
        for definition in model.parameterDefinitions()
        if not definition.isDestination()
    ]
    assert inputs[:4] == ["SURVEY", "SCORE_FIELD", "GROUND_TRUTH", "TRUTH_SCORE_FIELD"], inputs
    assert inputs[-1] == "CRS" and len(inputs) == 12, inputs


def test_every_step_of_the_bundled_pipeline_uses_the_algorithm_defaults(povmap_provider):
    """Parameters not wired to an input carry the algorithm's own default (a mandatory one
    left empty is what made the model invalid)."""
    from qgis.core import QgsProcessingModelAlgorithm, QgsProcessingModelChildParameterSource

    model = QgsProcessingModelAlgorithm()
    assert model.fromFile(MODEL_FILE)
    static = QgsProcessingModelChildParameterSource.Source.StaticValue
    training_grid = model.childAlgorithm("training_grid")
    algorithm = training_grid.algorithm()
    for name in ("CELL_SIZE", "CUTOFF", "MIN_OBS", "MAX_OBS"):
        [source] = training_grid.parameterSources()[name]
        assert source.source() == static
        assert source.staticValue() == algorithm.parameterDefinition(name).defaultValue(), name


def test_the_model_file_is_what_the_script_makes(povmap_provider, tmp_path):
    """A povmap algorithm that gains a parameter or changes a default makes the committed file
    stale (its steps would miss the new default): remake it with the script."""
    spec = importlib.util.spec_from_file_location(
        "make_pipeline_model", os.path.join(ROOT, "scripts", "make_pipeline_model.py")
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    from qgis.core import QgsProcessingModelAlgorithm

    saved, made = QgsProcessingModelAlgorithm(), QgsProcessingModelAlgorithm()
    assert script.build_survey_pipeline().toFile(str(tmp_path / "made.model3"))
    assert saved.fromFile(MODEL_FILE) and made.fromFile(str(tmp_path / "made.model3"))
    assert saved.toVariant() == made.toVariant(), (
        "resources/models/survey_pipeline.model3 is stale: run "
        ".venv/bin/python scripts/make_pipeline_model.py"
    )
