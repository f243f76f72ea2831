"""One contract, one reader: evaluate and target read the labelled grid (TRUTH) through
core/grid/labelled_grid.py, so the same odd-but-valid file is accepted by both and the same bad
file is refused by both with the same message (before, target kept the first of a repeated
cell_id that evaluate refused, and refused the text labels evaluate converts)."""

import pytest

from povmap_qgis.core.errors import PovmapInputError

IDS = [500000010500000020 + column for column in range(6)]  # povmap-style 18-digit ids
LABELS = [1, 0, 1, 0, 0, 1]


@pytest.fixture(scope="module")
def predictions(tmp_path_factory):
    """Six predicted square cells (one member, its probability, the ensemble's class)."""
    import geopandas
    from shapely.geometry import box

    folder = tmp_path_factory.mktemp("contract")
    probabilities = [0.9, 0.2, 0.7, 0.4, 0.1, 0.6]
    frame = geopandas.GeoDataFrame(
        {
            "cell_id": IDS,
            "district": ["A", "A", "A", "B", "B", "B"],
            "prob_compact_cnn": probabilities,
            "prob_mean": probabilities,
            "pred": [int(value >= 0.5) for value in probabilities],
        },
        geometry=[box(1000 * i, 0, 1000 * (i + 1), 1000) for i in range(6)],
        crs="EPSG:32642",
    )
    path = folder / "predictions.gpkg"
    frame.to_file(path, engine="pyogrio")
    return str(path)


def _csv(folder, name, header, rows):
    """A CSV without a .csvt: GDAL reads every field as text."""
    path = folder / f"{name}.csv"
    path.write_text(
        "\n".join([",".join(header)] + [",".join(str(value) for value in row) for row in rows])
        + "\n",
        encoding="utf-8",
    )
    return str(path)


def _gpkg(folder, name, ids, labels):
    import geopandas

    path = folder / f"{name}.gpkg"

    geopandas.GeoDataFrame({"cell_id": ids, "label": labels}, geometry=[None] * len(ids)).to_file(
        path, engine="pyogrio"
    )
    return str(path)


TRUTHS = {
    # name: (how to write it, refused message or None)
    "numbers in a GeoPackage": (lambda f: _gpkg(f, "numbers", IDS, LABELS), None),
    "text of a CSV without .csvt": (
        lambda f: _csv(f, "text", ["cell_id", "label"], zip(IDS, LABELS, strict=True)),
        None,
    ),
    "a repeated cell_id": (
        lambda f: _csv(
            f, "repeated", ["cell_id", "label"], [*zip(IDS, LABELS, strict=True), (IDS[0], 0)]
        ),
        "2 cells of 'repeated' share 1 cell_id(s) (e.g. 500000010500000020); each cell must appear once",
    ),
    "a label 2": (
        lambda f: _csv(
            f, "two", ["cell_id", "label"], [(IDS[0], 2), *zip(IDS[1:], LABELS[1:], strict=True)]
        ),
        "must be 1 (poor) or 0 (not poor); it also holds 2",
    ),
    "text labels": (
        lambda f: _csv(f, "words", ["cell_id", "label"], [(cell, "poor") for cell in IDS]),
        "the label field of 'words' holds text ('poor'); it must hold 1 (poor) or 0 (not poor)",
    ),
    "no label field": (
        lambda f: _csv(f, "nolabel", ["cell_id", "score"], [(cell, 10) for cell in IDS]),
        "has no label field (1 = poor, 0 = not poor)",
    ),
    "an empty cell_id": (
        lambda f: _csv(
            f, "noid", ["cell_id", "label"], [("", 1), *zip(IDS[1:], LABELS[1:], strict=True)]
        ),
        "1 feature(s) of 'noid' have no cell_id (NULL), e.g. the feature at row 1",
    ),
}


def _evaluate(predictions, truth, folder):
    from povmap_qgis.core.progress import RecordingReporter
    from povmap_qgis.core.validation.evaluation import EvaluateOptions, evaluate

    options = EvaluateOptions(
        predictions_path=predictions,
        truth_path=truth,
        hitmiss_path=str(folder / "hitmiss.gpkg"),
        metrics_path=str(folder / "metrics.json"),
        random_draws=20,
    )
    return evaluate(options, RecordingReporter())


def _target(predictions, truth, folder):
    from povmap_qgis.core.decision.targeting import TargetOptions, target
    from povmap_qgis.core.progress import RecordingReporter

    options = TargetOptions(
        predictions_path=predictions,
        output_path=str(folder / "targeting.gpkg"),
        allocation_path=str(folder / "allocation.csv"),
        budget=0.5,
        truth_path=truth,
    )
    return target(options, RecordingReporter())


@pytest.mark.parametrize("case", list(TRUTHS))
def test_evaluate_and_target_give_the_same_answer_on_the_same_labelled_grid(
    case, predictions, tmp_path
):
    write, refused = TRUTHS[case]
    truth = write(tmp_path)
    answers = {}
    for step, run in (("evaluate", _evaluate), ("target", _target)):
        folder = tmp_path / step
        folder.mkdir()
        try:
            answers[step] = run(predictions, truth, folder)
        except PovmapInputError as error:
            assert error.parameter == "TRUTH", (step, str(error))
            answers[step] = str(error)
    if refused is None:
        evaluated, targeted = answers["evaluate"], answers["target"]
        assert isinstance(evaluated, dict) and isinstance(targeted, dict), answers
        # both read all six labels: evaluate compares them, target measures on them
        assert evaluated["metrics"]["all"]["ensemble"]["n"] == 6
        assert targeted["measured"]["truth_cells"] == 6
    else:
        assert answers["evaluate"] == answers["target"], answers
        assert refused in answers["evaluate"], answers["evaluate"]
