"""One contract, one reader: evaluate, target, districtestimates and verificationsample read the
prediction layer (PREDICTIONS) through core/decision/prediction_layer.py, so the same odd-but-valid
layer is accepted by all four and the same bad layer is refused by all four with the same words
(before, evaluate read it itself: it took points and layers without a CRS, converted text ids,
refused a layer with any cell left unpredicted, and named PREDICTIONS for id problems).

The id problems name ID_FIELD in the steps that have that parameter (evaluate, target) and
PREDICTIONS in those that have not (districtestimates, verificationsample); the words after the
parameter are the same wherever the fix is the same."""

import pytest

from povmap_qgis.core.errors import PovmapInputError

IDS = [500000010500000020 + column for column in range(6)]  # povmap-style 18-digit ids
LABELS = [1, 0, 1, 0, 0, 1]
PROBABILITIES = [0.9, 0.2, 0.7, 0.4, 0.1, 0.6]
STEPS_WITH_ID_FIELD = ("evaluate", "target")


def _cells(**changes):
    """The six cells as Predict poverty writes them (one member), with ``changes`` applied."""
    import geopandas
    from shapely.geometry import box

    columns = {
        "cell_id": list(IDS),
        "district": ["A", "A", "A", "B", "B", "B"],
        "prob_compact_cnn": list(PROBABILITIES),
        "prob_mean": list(PROBABILITIES),
        "votes": [int(value >= 0.5) for value in PROBABILITIES],
        "pred": [int(value >= 0.5) for value in PROBABILITIES],
    }
    geometry = changes.pop("geometry", [box(1000 * i, 0, 1000 * (i + 1), 1000) for i in range(6)])
    crs = changes.pop("crs", "EPSG:32642")
    for name, values in changes.items():
        if values is None:
            columns.pop(name)
        else:
            columns[name] = values
    return geopandas.GeoDataFrame(columns, geometry=geometry, crs=crs)


def _layer(folder, name, metadata=None, **changes):
    from povmap_qgis.core.geopackage import write_layer

    path = str(folder / f"{name}.gpkg")
    metadata = {"povmap_threshold": "0.5"} | (metadata or {})
    write_layer(_cells(**changes), path, metadata=metadata)
    return path


def _table(folder, name):
    """The prediction fields in a GeoPackage table without geometries."""
    import pyogrio

    path = str(folder / f"{name}.gpkg")
    pyogrio.write_dataframe(_cells().drop(columns="geometry"), path, layer=name)
    return path


def _multipolygons(folder, name):
    from shapely.geometry import MultiPolygon, box

    parts = [MultiPolygon([box(1000 * i, 0, 1000 * (i + 1), 1000)]) for i in range(6)]
    return _layer(folder, name, geometry=parts)


def _points(folder, name):
    from shapely.geometry import Point

    return _layer(folder, name, geometry=[Point(1000 * i + 500, 500) for i in range(6)])


ID = "the id problems: ID_FIELD where the step has it"
LAYERS = {
    # name: (how to write it, None when accepted, else (parameter, words every step says))
    "as Predict poverty writes it": (lambda f: _layer(f, "plain"), None),
    "multipolygons": (lambda f: _multipolygons(f, "multi"), None),
    "a cell without a prediction": (
        lambda f: _layer(
            f,
            "unpredicted",
            prob_mean=[None, *PROBABILITIES[1:]],
            prob_compact_cnn=[None, *PROBABILITIES[1:]],
            pred=[None, 0, 1, 0, 0, 1],
        ),
        None,
    ),
    "an own id recorded by Predict poverty": (
        lambda f: _layer(
            f,
            "own",
            metadata={"povmap_id_field": "village_no"},
            cell_id=None,
            village_no=list(IDS),
        ),
        None,
    ),
    "a repeated cell_id": (
        lambda f: _layer(f, "repeated", cell_id=[IDS[0], *IDS[:5]]),
        (ID, "2 cells of 'repeated' share 1 cell_id(s) (e.g. 500000010500000020); each cell"),
    ),
    "an empty cell_id": (
        lambda f: _layer(f, "noid", cell_id=[None, *IDS[1:]]),
        (ID, "1 feature(s) of 'noid' have no cell_id (NULL), e.g. the feature at row 1"),
    ),
    "text cell ids": (
        lambda f: _layer(f, "text", cell_id=[str(cell) for cell in IDS]),
        (ID, "the id field cell_id of 'text' holds object values; cell ids are whole numbers"),
    ),
    "no cell_id field and none recorded": (
        lambda f: _layer(f, "nocell", cell_id=None, village_no=list(IDS)),
        (ID, "the layer 'nocell' (PREDICTIONS) has no cell_id field (its fields: district"),
    ),
    "the recorded id field gone": (
        lambda f: _layer(f, "gone", metadata={"povmap_id_field": "village_no"}),
        (ID, "Predict poverty recorded village_no as the cells' id, but the field is gone"),
    ),
    "prob_mean above 1": (
        lambda f: _layer(f, "above", prob_mean=[1.5, *PROBABILITIES[1:]]),
        ("PREDICTIONS", "prob_mean of 'above' must hold probabilities between 0 and 1."),
    ),
    "prob_mean below 0": (
        lambda f: _layer(f, "below", prob_mean=[-0.1, *PROBABILITIES[1:]]),
        ("PREDICTIONS", "prob_mean of 'below' must hold probabilities between 0 and 1."),
    ),
    "prob_mean as text": (
        lambda f: _layer(f, "words", prob_mean=["high"] * 6),
        ("PREDICTIONS", "prob_mean of 'words' holds object values; it must hold probabilities"),
    ),
    "prob_mean empty everywhere": (
        lambda f: _layer(f, "empty", prob_mean=[float("nan")] * 6),  # a Real field
        ("PREDICTIONS", "prob_mean is empty in every cell of 'empty'; predict the cells first."),
    ),
    "no prob_mean": (
        lambda f: _layer(f, "noprob", prob_mean=None),
        ("PREDICTIONS", "the layer 'noprob' is not a prediction layer: it has no prob_mean field"),
    ),
    "points": (
        lambda f: _points(f, "points"),
        ("PREDICTIONS", "the layer 'points' has no polygons; use the prediction"),
    ),
    "a table without geometries": (
        lambda f: _table(f, "table"),
        ("PREDICTIONS", "the layer 'table' has no geometries (a table, e.g. a CSV file"),
    ),
    "no CRS": (
        lambda f: _layer(f, "nocrs", crs=None),
        ("PREDICTIONS", "the layer 'nocrs' has no CRS; set its CRS in the layer properties"),
    ),
}


def _evaluate(predictions, folder):
    import geopandas

    from povmap_qgis.core.decision.prediction_layer import read_predictions
    from povmap_qgis.core.progress import RecordingReporter
    from povmap_qgis.core.validation.evaluation import EvaluateOptions, evaluate

    # TRUTH labels the cells by the id the layer carries (read by the shared reader only when
    # the layer is accepted: a refused layer is refused before TRUTH is read)
    try:
        _, _, _, key = read_predictions(EvaluateOptions(predictions, "", "", ""))
    except PovmapInputError:
        key = "cell_id"
    truth = str(folder / "truth.gpkg")
    geopandas.GeoDataFrame({key: IDS, "label": LABELS}, geometry=[None] * 6).to_file(
        truth, engine="pyogrio"
    )
    options = EvaluateOptions(
        predictions_path=predictions,
        truth_path=truth,
        hitmiss_path=str(folder / "hitmiss.gpkg"),
        metrics_path=str(folder / "metrics.json"),
        random_draws=20,
    )
    reporter = RecordingReporter()
    summary = evaluate(options, reporter)
    return summary["metrics"]["all"]["ensemble"]["n"], reporter


def _target(predictions, folder):
    from povmap_qgis.core.decision.targeting import TargetOptions, target
    from povmap_qgis.core.progress import RecordingReporter

    options = TargetOptions(
        predictions_path=predictions,
        output_path=str(folder / "targeting.gpkg"),
        allocation_path=str(folder / "allocation.csv"),
        budget=0.5,
    )
    summary = target(options, RecordingReporter())
    return summary["data"]["predicted"], None


def _district_estimates(predictions, folder):
    """The step's reader of PREDICTIONS: the map's district means (``map_covariate``)."""
    import geopandas
    from shapely.geometry import box

    from povmap_qgis.core.estimation.district_estimates import DistrictEstimatesOptions
    from povmap_qgis.core.estimation.district_inputs import map_covariate, read_districts
    from povmap_qgis.core.progress import RecordingReporter

    districts = str(folder / "districts.gpkg")
    geopandas.GeoDataFrame(
        {"name": ["A", "B"]},
        geometry=[box(0, 0, 3000, 1000), box(3000, 0, 6000, 1000)],
        crs="EPSG:32642",
    ).to_file(districts, engine="pyogrio")
    options = DistrictEstimatesOptions(
        survey_path="",
        score_field="score",
        districts_path=districts,
        district_field="name",
        predictions_path=predictions,
        output_path=str(folder / "districts_out.gpkg"),
        table_path=str(folder / "districts.csv"),
    )
    reporter = RecordingReporter()
    mapped = map_covariate(options, read_districts(options, reporter), reporter, [])
    return mapped["cells_total"], None


def _verification_sample(predictions, folder):
    from povmap_qgis.core.progress import RecordingReporter
    from povmap_qgis.core.verification.verification_sample import (
        VerificationSampleOptions,
        verification_sample,
    )

    options = VerificationSampleOptions(
        predictions_path=predictions, output_path=str(folder / "sample.gpkg"), sample_size=4
    )
    summary = verification_sample(options, RecordingReporter())
    return summary["cells"], None


STEPS = {
    "evaluate": _evaluate,
    "target": _target,
    "districtestimates": _district_estimates,
    "verificationsample": _verification_sample,
}


@pytest.mark.parametrize("case", list(LAYERS))
def test_every_step_gives_the_same_answer_on_the_same_prediction_layer(case, tmp_path):
    write, refused = LAYERS[case]
    predictions = write(tmp_path)
    answers, refusals = {}, {}
    for step, run in STEPS.items():
        folder = tmp_path / step
        folder.mkdir()
        try:
            answers[step] = run(predictions, folder)
        except PovmapInputError as error:
            refusals[step] = (error.parameter, str(error).removeprefix(f"{error.parameter}: "))
    if refused is None:
        assert not refusals, refusals
        predicted = 5 if case == "a cell without a prediction" else 6
        # every step read the predicted cells: evaluate compared them with TRUTH, target and
        # districtestimates used their probabilities, verificationsample could draw them
        assert {step: answer[0] for step, answer in answers.items()} == dict.fromkeys(
            STEPS, predicted
        ), answers
        if predicted == 5:
            said = answers["evaluate"][1].warnings
            assert any("1 cells without a prediction (empty prob_mean)" in line for line in said)
        return
    parameter, words = refused
    assert set(refusals) == set(STEPS), (answers, refusals)
    messages = {message for _, message in refusals.values()}
    if parameter == ID:
        assert {step: named for step, (named, _) in refusals.items()} == {
            step: "ID_FIELD" if step in STEPS_WITH_ID_FIELD else "PREDICTIONS" for step in STEPS
        }
        # the same words, but a step without ID_FIELD does not send the user to it
        assert len({refusals[step][1] for step in STEPS_WITH_ID_FIELD}) == 1, refusals
        assert len({refusals[step][1] for step in STEPS if step not in STEPS_WITH_ID_FIELD}) == 1
        assert all(words in message for message in messages), refusals
        assert not any(
            "(ID_FIELD)" in refusals[step][1] for step in STEPS if step not in STEPS_WITH_ID_FIELD
        ), refusals
    else:
        assert {named for named, _ in refusals.values()} == {parameter}, refusals
        assert len(messages) == 1, refusals
        assert words in messages.pop(), refusals
