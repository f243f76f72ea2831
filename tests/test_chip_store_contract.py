"""One contract, one reader: train, crossvalidate and predict open CHIPS through
``core/chips/chip_store.ChipStore`` (format, state, manifest, arrays' shapes and the integrity
record checked once, on open), so the same damaged store is refused by all three with the same
message, before any work and naming CHIPS, and a sound store is accepted by all three."""

import json
import os

import numpy as np
import pytest

from povmap_qgis.core.chips.chip_store_writer import ChipStoreWriter
from povmap_qgis.core.errors import PovmapInputError

INPUTS = [
    {"name": "daytime", "source": "/data/s2.tif", "bands": [4, 3, 2], "dtype": "float32"},
    {"name": "nightlights", "source": "/data/viirs.tif", "bands": [1], "dtype": "float32"},
]
SETTINGS = {"grid": "/data/grid.gpkg", "resolution": 100.0, "crs": "EPSG:32642"}
CELLS = 6


def _sound(folder):
    """A finished store of six cells, 8 × 8 chips."""
    cell_ids = 500000010500000020 + np.arange(CELLS, dtype="int64")
    writer = ChipStoreWriter(str(folder / "grid.chips"), cell_ids, INPUTS, 8, SETTINGS).open()
    rows = np.arange(CELLS)
    chips = {
        "daytime": np.full((CELLS, 8, 8, 3), 0.5, dtype="float32") * rows[:, None, None, None],
        "nightlights": np.ones((CELLS, 8, 8, 1), dtype="float32"),
    }
    writer.write(rows, chips, np.zeros((CELLS, 2), dtype="float32"))
    return writer.finish()


def _manifest(path, change):
    with open(os.path.join(path, "manifest.json"), encoding="utf-8") as handle:
        manifest = json.load(handle)
    change(manifest)
    with open(os.path.join(path, "manifest.json"), "w", encoding="utf-8") as handle:
        json.dump(manifest, handle)
    return path


def _flip_a_byte(path, file_name):
    target = os.path.join(path, file_name)
    data = bytearray(open(target, "rb").read())
    data[-1] ^= 0xFF
    open(target, "wb").write(bytes(data))
    return path


def _truncate(path, file_name):
    target = os.path.join(path, file_name)
    data = open(target, "rb").read()
    open(target, "wb").write(data[:-40])
    return path


def _not_a_store(folder):
    path = folder / "holiday.chips"
    path.mkdir()
    (path / "photo.jpg").write_bytes(b"\xff\xd8")
    return str(path)


def _not_json(folder):
    path = _sound(folder)
    with open(os.path.join(path, "manifest.json"), "w", encoding="utf-8") as handle:
        handle.write("{not json")
    return path


STORES = {
    # name: (how to make it, None when accepted, else words of the one message)
    "a sound store": (_sound, None),
    "a store without integrity record (before format 1.0's record)": (
        lambda f: _manifest(_sound(f), lambda m: m.pop("integrity")),
        None,
    ),
    "a folder that is not a store": (_not_a_store, "is not a chip store ([Errno 2]"),
    "a manifest that is not JSON": (_not_json, "is not a chip store (Expecting property name"),
    "another format version": (
        lambda f: _manifest(_sound(f), lambda m: m.update(format_version="2.0")),
        "has chip store format 2.0; this version reads 1.0.",
    ),
    "an unfinished store": (
        lambda f: _manifest(_sound(f), lambda m: m.update(state="sampling")),
        "is not complete; run the chip sampling again to finish it.",
    ),
    "a manifest without inputs": (
        lambda f: _manifest(_sound(f), lambda m: m.update(inputs=[])),
        "is damaged: its manifest.json has no list of inputs; sample the chips again",
    ),
    "a truncated cell_ids.npy": (
        lambda f: _truncate(_sound(f), "cell_ids.npy"),
        "is damaged: cell_ids.npy cannot be read, it may be truncated",
    ),
    "an input array gone": (
        lambda f: (os.remove(os.path.join(path := _sound(f), "nightlights.npy")), path)[1],
        "is damaged: nightlights.npy is missing; sample the chips again",
    ),
    "an id changed since it was written": (
        lambda f: _flip_a_byte(_sound(f), "cell_ids.npy"),
        "is damaged: cell_ids.npy does not have the content recorded in manifest.json",
    ),
    "chips changed since they were written": (
        lambda f: _flip_a_byte(_sound(f), "daytime.npy"),
        "is damaged: daytime.npy does not have the content recorded in manifest.json",
    ),
}


def _train(store, folder):
    from povmap_qgis.core.model.training import TrainOptions, train

    train(
        TrainOptions(
            chips_path=store,
            grid_path=str(folder / "absent_grid.gpkg"),
            output_path=str(folder / "m.povmodel"),
        )
    )


def _crossvalidate(store, folder):
    from povmap_qgis.core.validation.crossvalidation import CrossValidateOptions, crossvalidate

    crossvalidate(
        CrossValidateOptions(
            chips_path=store,
            grid_path=str(folder / "absent_grid.gpkg"),
            metrics_path=str(folder / "cv.json"),
            output_grid_path=str(folder / "cv.gpkg"),
        )
    )


def _predict(store, folder):
    from povmap_qgis.core.model.prediction import PredictOptions, predict
    from povmap_qgis.paths import bundled_model_path

    predict(
        PredictOptions(
            model_path=bundled_model_path(),
            chips_path=store,
            grid_path=str(folder / "absent_grid.gpkg"),
            output_path=str(folder / "predictions.gpkg"),
        )
    )


STEPS = {"train": _train, "crossvalidate": _crossvalidate, "predict": _predict}


@pytest.mark.parametrize("case", list(STORES))
def test_every_step_gives_the_same_answer_on_the_same_chip_store(case, tmp_path):
    make, refused = STORES[case]
    store = make(tmp_path)
    before = {name: open(os.path.join(store, name), "rb").read() for name in os.listdir(store)}
    answers = {}
    for step, run in STEPS.items():
        folder = tmp_path / step
        folder.mkdir()
        with pytest.raises(PovmapInputError) as raised:  # a sound store: then the grid is absent
            run(store, folder)
        answers[step] = raised.value
        assert os.listdir(folder) == [], (step, os.listdir(folder))  # nothing written
    after = {name: open(os.path.join(store, name), "rb").read() for name in os.listdir(store)}
    assert after == before  # no step touched the store
    if refused is None:
        # past the store: train and crossvalidate stop at the absent GRID, predict at the
        # bundled model's inputs, which these two are not
        assert {step: error.parameter for step, error in answers.items()} == {
            "train": "GRID",
            "crossvalidate": "GRID",
            "predict": "CHIPS",
        }, answers
        assert "chip store" not in str(answers["train"]), answers
        assert "the model was trained on" in str(answers["predict"]), answers
        return
    messages = {str(error) for error in answers.values()}
    assert {error.parameter for error in answers.values()} == {"CHIPS"}, answers
    assert len(messages) == 1, answers
    assert refused in messages.pop(), answers
