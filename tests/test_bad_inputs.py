"""Bad inputs refused with a message, never a traceback (issue 14 item 5).

One table: each case damages a copy of a real input (chip store, grid, model
package), runs the algorithm through Processing and checks that the message
names the parameter (its label and id), holds no traceback, that nothing was
left in the output folder and that no input file changed (sha256).
"""

import hashlib
import json
import os
import shutil

import geopandas
import numpy as np
import pytest
from qgis_helpers import run_failing

from povmap_qgis.paths import bundled_model_path

DISTRICTS = ["Bhanpuro", "Dhanwari", "Gulzeero", "Jhalaro", "Kotlani", "Maknari"]


def edit_manifest(store, change):
    path = os.path.join(store, "manifest.json")
    with open(path, encoding="utf-8") as handle:
        manifest = json.load(handle)
    change(manifest)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle)


def truncate(path, keep=0.5):
    data = open(path, "rb").read()
    with open(path, "wb") as handle:
        handle.write(data[: int(len(data) * keep)])


def nest(path, depth=100_000):
    with open(path, "w", encoding="utf-8") as handle:
        handle.write('{"a":' * depth + "1" + "}" * depth)


def relabel(grid, labels):
    frame = geopandas.read_file(grid, layer="training_grid")
    frame["label"] = labels(frame)
    os.remove(grid)
    frame.to_file(grid, layer="training_grid", engine="pyogrio")


def set_weights(package, member_name, content):
    member_file = os.path.join(package, f"{member_name}.weights.h5")
    with open(member_file, "wb") as handle:
        handle.write(content)
    from povmap_qgis.core.model.model_package import sha256_of

    def change(manifest):
        for member in manifest["members"]:
            if member["name"] == member_name:
                member["sha256"] = sha256_of(member_file)

    edit_manifest(package, change)


def duplicate_first_cell(grid):
    frame = geopandas.read_file(grid, layer="training_grid")
    frame = geopandas.GeoDataFrame(
        geopandas.pd.concat([frame, frame.iloc[:2]], ignore_index=True), crs=frame.crs
    )
    os.remove(grid)
    frame.to_file(grid, layer="training_grid", engine="pyogrio")


def edit_package(package, change, rehash=True):
    """Edit a model manifest; ``rehash``: also recompute manifest_sha256, as a forger would."""
    from povmap_qgis.core.model.model_package import manifest_digest

    def edited(manifest):
        change(manifest)
        if rehash:
            manifest["manifest_sha256"] = manifest_digest(manifest)

    edit_manifest(package, edited)


def set_first_normalisation(statistic, value):
    def change(manifest):
        entry = next(iter(manifest["normalisation"].values()))
        entry[statistic] = [value] + entry[statistic][1:]

    return change


def weights_outside(package):
    """The first member's weights named with ../ (a copy beside the package; hash kept)."""
    member = json.load(open(os.path.join(package, "manifest.json"), encoding="utf-8"))["members"][0]
    shutil.copy(os.path.join(package, member["weights"]), os.path.dirname(package))

    def change(manifest):
        manifest["members"][0]["weights"] = "../" + member["weights"]

    edit_package(package, change)


def weights_linked_outside(package):
    member = json.load(open(os.path.join(package, "manifest.json"), encoding="utf-8"))["members"][0]
    inside = os.path.join(package, member["weights"])
    outside = os.path.join(os.path.dirname(package), member["weights"])
    shutil.move(inside, outside)
    os.symlink(outside, inside)


def shift_cell_ids(store):
    """cell_ids.npy rolled by one row: every chip now belongs to its neighbouring cell."""
    path = os.path.join(store, "cell_ids.npy")
    np.save(path, np.roll(np.load(path), 1))


def swap_first_rows(store, name="nightlights"):
    path = os.path.join(store, f"{name}.npy")
    chips = np.load(path)
    chips[[0, 1]] = chips[[1, 0]]
    np.save(path, chips)


def name_input_outside(store):
    """An input renamed ../nightlights, with its array copied where that name points."""
    shutil.copy(os.path.join(store, "nightlights.npy"), os.path.dirname(store))
    edit_manifest(store, lambda m: m["inputs"][0].update(name="../nightlights"))


def rewrite_raster(path, change):
    """Rewrite a raster's values in place (float32, no nodata value declared)."""
    import rasterio

    with rasterio.open(path) as dataset:
        values, profile = dataset.read().astype("float32"), dataset.profile
    profile.update(dtype="float32", nodata=None)
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(change(values).astype("float32"))


def zip_inputs(inputs):
    """The grid and the survey also inside a zip archive beside them (``inputs["zip"]``)."""
    import zipfile

    inputs["zip"] = os.path.join(os.path.dirname(inputs["grid"]), "archive.zip")
    with zipfile.ZipFile(inputs["zip"], "w") as archive:
        archive.write(inputs["grid"], "training_grid.gpkg")
        archive.write(inputs["survey"], "survey.gpkg")


def chip_store_case(damage):
    return lambda inputs: damage(inputs["chips"])


# case: (algorithm, parameter at fault, how to damage the inputs, extra parameters)
CASES = {
    "chip store without an input's array": (
        "train",
        "CHIPS",
        chip_store_case(lambda store: os.remove(os.path.join(store, "nightlights.npy"))),
        {},
    ),
    "chip store with a truncated input array": (
        "train",
        "CHIPS",
        chip_store_case(lambda store: truncate(os.path.join(store, "nightlights.npy"))),
        {},
    ),
    "chip store with a truncated cell_ids.npy": (
        "train",
        "CHIPS",
        chip_store_case(lambda store: truncate(os.path.join(store, "cell_ids.npy"), 0.9)),
        {},
    ),
    "chip store without nodata_fraction.npy": (
        "train",
        "CHIPS",
        chip_store_case(lambda store: os.remove(os.path.join(store, "nodata_fraction.npy"))),
        {},
    ),
    "chip store manifest without inputs": (
        "train",
        "CHIPS",
        chip_store_case(lambda store: edit_manifest(store, lambda m: m.pop("inputs"))),
        {},
    ),
    "chip store manifest without settings": (
        "train",
        "CHIPS",
        chip_store_case(lambda store: edit_manifest(store, lambda m: m.pop("settings"))),
        {},
    ),
    "chip store manifest with a chip_size the arrays do not have": (
        "train",
        "CHIPS",
        chip_store_case(lambda store: edit_manifest(store, lambda m: m.update(chip_size=50))),
        {},
    ),
    # stores whose arrays no longer match their manifest (issue 24 item 3)
    "chip store with cell_ids.npy shifted by one row": (
        "train",
        "CHIPS",
        chip_store_case(shift_cell_ids),
        {},
    ),
    "chip store with two rows of an input swapped": (
        "train",
        "CHIPS",
        chip_store_case(swap_first_rows),
        {},
    ),
    "chip store input named ../nightlights": (
        "train",
        "CHIPS",
        chip_store_case(name_input_outside),
        {},
    ),
    "chip store manifest nested 100,000 deep": (
        "train",
        "CHIPS",
        chip_store_case(lambda store: nest(os.path.join(store, "manifest.json"))),
        {},
    ),
    "chip store manifest that is not JSON": (
        "train",
        "CHIPS",
        chip_store_case(lambda store: truncate(os.path.join(store, "manifest.json"), 0.5)),
        {},
    ),
    "labels other than 0 and 1": (
        "train",
        "GRID",
        lambda inputs: relabel(inputs["grid"], lambda frame: frame["label"] * 2),
        {},
    ),
    "labels as text": (
        "train",
        "GRID",
        lambda inputs: relabel(
            inputs["grid"], lambda frame: np.where(frame["label"] == 1, "poor", "rich")
        ),
        {},
    ),
    "a grid of 4 cells": (
        "train",
        "GRID",
        lambda inputs: relabel(
            inputs["grid"],
            lambda frame: np.where(np.arange(len(frame)) < 4, frame["label"], None),
        ),
        {},
    ),
    "every district held out": (
        "train",
        "TEST_DISTRICTS",
        lambda inputs: None,
        {"SPLIT": 1, "TEST_DISTRICTS": ",".join(DISTRICTS)},
    ),
    "weights file that is not HDF5 (hash updated)": (
        "predict",
        "MODEL",
        lambda inputs: set_weights(inputs["model"], "compact_cnn", b"not HDF5 at all" * 100),
        {},
    ),
    "empty weights file (hash updated)": (
        "predict",
        "MODEL",
        lambda inputs: set_weights(inputs["model"], "compact_wide", b""),
        {},
    ),
    "model manifest nested 100,000 deep": (
        "predict",
        "MODEL",
        lambda inputs: nest(os.path.join(inputs["model"], "manifest.json")),
        {},
    ),
    # tampered packages (issue 24 item 2): the schema, not only the hash, must catch them
    "format-1.1 package without manifest_sha256": (
        "predict",
        "MODEL",
        lambda inputs: edit_package(
            inputs["model"], lambda m: m.pop("manifest_sha256"), rehash=False
        ),
        {},
    ),
    "package relabelled 1.0 without its hash but with a calibration": (
        "predict",
        "MODEL",
        lambda inputs: edit_package(
            inputs["model"],
            lambda m: (m.pop("manifest_sha256"), m.update(format_version="1.0")),
            rehash=False,
        ),
        {},
    ),
    "NaN normalisation mean (rehashed)": (
        "predict",
        "MODEL",
        lambda inputs: edit_package(inputs["model"], set_first_normalisation("mean", np.nan)),
        {},
    ),
    "infinite normalisation std (rehashed)": (
        "predict",
        "MODEL",
        lambda inputs: edit_package(inputs["model"], set_first_normalisation("std", np.inf)),
        {},
    ),
    "infinite calibration slope (rehashed)": (
        "predict",
        "MODEL",
        lambda inputs: edit_package(
            inputs["model"], lambda m: m["calibration"].update(slope=float("inf"))
        ),
        {},
    ),
    "NaN in a baseline coefficient (rehashed)": (
        "predict",
        "MODEL",
        lambda inputs: edit_package(
            inputs["model"], lambda m: m["baseline"].update(intercept=float("nan"))
        ),
        {},
    ),
    "weights named ../ outside the package (rehashed)": (
        "predict",
        "MODEL",
        lambda inputs: weights_outside(inputs["model"]),
        {},
    ),
    "weights linked to a file outside the package": (
        "predict",
        "MODEL",
        lambda inputs: weights_linked_outside(inputs["model"]),
        {},
    ),
    # values QGIS accepts that make no sense (issue 14 item 7)
    "an unknown CRS (EPSG:999999)": ("buildpredictiongrid", "CRS", None, {"CRS": "EPSG:999999"}),
    # a CRS that does not suit the data (issue 24 item 1): cells of the wrong size, without a word
    "UTM zone 10N for data at 70° E": ("buildpredictiongrid", "CRS", None, {"CRS": "EPSG:32610"}),
    "Web Mercator 'metres' at 25° N": ("buildpredictiongrid", "CRS", None, {"CRS": "EPSG:3857"}),
    # privacy (issue 24 item 5): single- and two-household cells
    "MIN_OBS=1": ("buildtraininggrid", "MIN_OBS", None, {"MIN_OBS": 1}),
    "MIN_OBS=2": ("buildtraininggrid", "MIN_OBS", None, {"MIN_OBS": 2}),
    # odd values read as something else, or accepted without a word (issue 24 item 8)
    "CUTOFF=nan": ("buildtraininggrid", "CUTOFF", None, {"CUTOFF": "nan"}),
    "MIN_DATE without DATE_FIELD": (
        "buildtraininggrid",
        "MIN_DATE",
        None,
        {"MIN_DATE": "2016-01-01"},
    ),
    "EPOCHS=many": ("train", "EPOCHS", None, {"EPOCHS": "many"}),
    "SEED=1e20": ("train", "SEED", None, {"SEED": "1e20"}),
    "BUDGET=0": ("target", "BUDGET", None, {"BUDGET": 0}),
    "BUDGET=2.5 cells": ("target", "BUDGET", None, {"BUDGET": 2.5, "BUDGET_UNIT": "cells"}),
    "a population raster of negative numbers": (
        "target",
        "POPULATION",
        lambda inputs: rewrite_raster(inputs["population"], lambda values: -np.abs(values) - 1),
        {},
    ),
    "a population raster all nodata": (
        "target",
        "POPULATION",
        lambda inputs: rewrite_raster(inputs["population"], lambda values: values * np.nan),
        {},
    ),
    # nothing written inside or beside an input (issue 24 item 9)
    "an output inside the model package": (
        "predict",
        "OUTPUT",
        None,
        {"OUTPUT": "{model}/predictions.gpkg"},
    ),
    "a grid inside a zip (/vsizip/)": (
        "samplechips",
        "GRID",
        zip_inputs,
        {"GRID": "/vsizip/{zip}/training_grid.gpkg"},
    ),
    "a survey inside a zip (/vsizip/)": (
        "buildtraininggrid",
        "INPUT",
        zip_inputs,
        {"INPUT": "/vsizip/{zip}/survey.gpkg"},
    ),
    "MAX_NODATA=nan": ("samplechips", "MAX_NODATA", None, {"MAX_NODATA": "nan"}),
    "HABITABLE_BAND=0": ("buildpredictiongrid", "HABITABLE_BAND", None, {"HABITABLE_BAND": 0}),
    "duplicate cell_ids sampled": (
        "samplechips",
        "ID_FIELD",
        lambda inputs: duplicate_first_cell(inputs["grid"]),
        {},
    ),
    "duplicate cell_ids trained on": (
        "train",
        "GRID",
        lambda inputs: duplicate_first_cell(inputs["grid"]),
        {},
    ),
    "the same member twice": ("train", "MEMBERS", None, {"MEMBERS": "compact_cnn,compact_cnn"}),
}


def digests(paths):
    found = {}
    for top in paths:
        for folder, _, files in os.walk(top) if os.path.isdir(top) else [("", [], [top])]:
            for name in files:
                path = os.path.join(folder, name)
                with open(path, "rb") as handle:
                    found[path] = hashlib.sha256(handle.read()).hexdigest()
    return found


@pytest.fixture(scope="module")
def pristine(tiny_chips, tiny_sample, tiny_predictions):
    """Read-only originals: the labelled grid, the night-lights store, the full store, the
    bundled model, the sample's districts, night lights, population raster and survey, and
    the bundled model's predictions."""
    return {
        "grid": tiny_chips["grid"],
        "chips": tiny_chips["night"],
        "all_chips": tiny_chips["chips"],
        "model": bundled_model_path(),
        "districts": os.path.join(tiny_sample, "synthetic_districts.gpkg"),
        "nightlights": os.path.join(tiny_sample, "synthetic_viirs_15arcsec.tif"),
        "population": os.path.join(tiny_sample, "synthetic_population_3arcsec.tif"),
        "survey": os.path.join(tiny_sample, "synthetic_survey.gpkg"),
        "predictions": tiny_predictions,
    }


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused_with_a_message_and_leaves_nothing(
    povmap_provider, pristine, tmp_path, case
):
    algorithm, parameter, damage, extra = CASES[case]
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    copies = {
        "grid": str(inputs / "training_grid.gpkg"),
        "chips": str(inputs / ("night.chips" if algorithm == "train" else "all.chips")),
        "model": str(inputs / "demo.povmodel"),
    }
    for name in ("districts", "nightlights", "population", "survey", "predictions"):
        copies[name] = str(inputs / os.path.basename(pristine[name]))
        shutil.copy(pristine[name], copies[name])
    shutil.copy(pristine["grid"], copies["grid"])
    shutil.copytree(pristine["chips" if algorithm == "train" else "all_chips"], copies["chips"])
    if algorithm == "predict":
        shutil.copytree(pristine["model"], copies["model"])
    if damage:
        damage(copies)
    before = digests([str(inputs)])
    output = tmp_path / "output"
    output.mkdir()
    if algorithm == "train":
        parameters = {"GRID": copies["grid"], "CHIPS": copies["chips"], "PRESET": "compact"}
        parameters.update(MEMBERS="compact_cnn", EPOCHS=1, OUTPUT=str(output / "model.povmodel"))
    elif algorithm == "predict":
        parameters = {"GRID": copies["grid"], "CHIPS": copies["chips"], "MODEL": copies["model"]}
        parameters["OUTPUT"] = str(output / "predictions.gpkg")
    elif algorithm == "samplechips":
        parameters = {"GRID": copies["grid"], "NIGHTLIGHTS": copies["nightlights"]}
        parameters["OUTPUT"] = str(output / "night.chips")
    elif algorithm == "target":
        parameters = {"PREDICTIONS": copies["predictions"], "POPULATION": copies["population"]}
        parameters.update(BUDGET_UNIT="share_of_people", BUDGET=0.3)
        parameters["OUTPUT"] = str(output / "target.gpkg")
        parameters["ALLOCATION"] = str(output / "allocation.csv")
        parameters["REPORT"] = str(output / "target.html")
    elif algorithm == "buildtraininggrid":
        parameters = {"INPUT": copies["survey"], "SCORE_FIELD": "score"}
        parameters["OUTPUT"] = str(output / "training_grid.gpkg")
    else:  # buildpredictiongrid
        parameters = {"AREA": copies["districts"], "HABITABLE": copies["population"]}
        parameters["OUTPUT"] = str(output / "prediction_grid.gpkg")
    parameters.update(
        {
            key: value.format(**copies) if isinstance(value, str) else value
            for key, value in extra.items()
        }
    )

    message = run_failing(f"povmap:{algorithm}", parameters)
    print(f"\n[{case}] {message}")  # the table as users read it: pytest -s

    assert f" — {parameter}: " in message, message  # "Label — ID: what is wrong"
    assert "Traceback" not in message and "Error:" not in message.split(":", 1)[0], message
    assert os.listdir(output) == [], os.listdir(output)
    assert [name for name in os.listdir(tmp_path) if name not in ("inputs", "output")] == []
    assert digests([str(inputs)]) == before


def test_null_labels_are_counted_and_pretrained_for_compact_members_is_a_warning(
    povmap_provider, pristine, tmp_path
):
    grid = str(tmp_path / "training_grid.gpkg")
    shutil.copy(pristine["grid"], grid)
    relabel(grid, lambda frame: frame["label"].where(np.arange(len(frame)) >= 7))
    from qgis_helpers import run_algorithm

    results, feedback = run_algorithm(
        "povmap:train",
        {
            "GRID": grid,
            "CHIPS": pristine["chips"],
            "PRESET": "compact",
            "MEMBERS": "compact_cnn",
            "EPOCHS": 1,
            "PRETRAINED": "imagenet",
            "OUTPUT": str(tmp_path / "model.povmodel"),
        },
    )
    warnings = "\n".join(feedback.warnings)
    assert "GRID: 7 of 147 cells have no label (NULL) and are left out." in warnings, warnings
    assert "PRETRAINED: compact_cnn cannot start from ImageNet weights" in warnings, warnings
    assert os.path.isdir(results["OUTPUT"])


def test_extra_rasters_named_like_the_stores_own_files_get_their_own_names(
    povmap_provider, pristine, tmp_path
):
    """EXTRA rasters called moments, cell_ids, done or nightlights (beside NIGHTLIGHTS) are
    stored under names of their own: the store opens and each array is its raster's."""
    from qgis_helpers import run_algorithm

    from povmap_qgis.core.chips.chip_store import ChipStore, check_input_name
    from povmap_qgis.core.errors import PovmapInputError

    extras = []
    for stem in ("moments", "cell_ids", "done", "nightlights"):
        extras.append(str(tmp_path / f"{stem}.tif"))
        shutil.copy(pristine["nightlights"], extras[-1])
    results, _ = run_algorithm(
        "povmap:samplechips",
        {
            "GRID": pristine["grid"],
            "NIGHTLIGHTS": pristine["nightlights"],
            "EXTRA": extras,
            "OUTPUT": str(tmp_path / "named.chips"),
        },
    )
    store = ChipStore(results["OUTPUT"])
    assert store.input_names == [
        "nightlights",
        "moments_2",
        "cell_ids_2",
        "done_2",
        "nightlights_2",
    ]
    for name in store.input_names[1:]:
        np.testing.assert_array_equal(store.chips(name), store.chips("nightlights"))
    for name, parameter in (("../x", "EXTRA"), ("moments", "EXTRA"), ("Cell_IDs", "OUTPUT")):
        with pytest.raises(PovmapInputError) as caught:
            check_input_name(name, parameter)
        assert caught.value.parameter == parameter


def test_runs_that_read_rasters_write_nothing_beside_them(povmap_provider, pristine, tmp_path):
    """Sampling chips, averaging habitability and summing population read rasters with GDAL,
    which keeps statistics in NAME.aux.xml beside them unless told not to (GDAL_PAM_ENABLED=NO
    in the worker): the inputs' folder holds exactly what it held, byte for byte."""
    from qgis_helpers import run_algorithm

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name in ("nightlights", "population", "districts", "predictions"):
        shutil.copy(pristine[name], inputs / os.path.basename(pristine[name]))
    copy = {name: str(inputs / os.path.basename(pristine[name])) for name in pristine}
    before = digests([str(inputs)])
    output = tmp_path / "output"
    output.mkdir()
    run_algorithm(
        "povmap:samplechips",
        {
            "GRID": pristine["grid"],
            "NIGHTLIGHTS": copy["nightlights"],
            "OUTPUT": str(output / "n.chips"),
        },
    )
    run_algorithm(
        "povmap:buildpredictiongrid",
        {
            "AREA": copy["districts"],
            "HABITABLE": copy["population"],
            "OUTPUT": str(output / "grid.gpkg"),
        },
    )
    run_algorithm(
        "povmap:target",
        {
            "PREDICTIONS": copy["predictions"],
            "POPULATION": copy["population"],
            "BUDGET_UNIT": "share_of_people",
            "BUDGET": 0.3,
            "OUTPUT": str(output / "t.gpkg"),
            "ALLOCATION": str(output / "t.csv"),
            "REPORT": str(output / "t.html"),
        },
    )
    assert digests([str(inputs)]) == before, sorted(os.listdir(inputs))


def test_a_qgis_process_run_writes_nothing_beside_its_input_rasters(pristine, tmp_path):
    """qgis_process opens a run's input rasters itself, before the algorithm's code, and closes
    them as it exits, when GDAL would keep their statistics in NAME.aux.xml beside them (it did,
    beside the demo's population raster): a povmap run switches that off for its process."""
    from conftest import run_qgis_process

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name in ("population", "predictions"):
        shutil.copy(pristine[name], inputs / os.path.basename(pristine[name]))
    before = digests([str(inputs)])
    output = tmp_path / "output"
    output.mkdir()
    run_qgis_process(
        "run",
        "povmap:target",
        "--",
        f"PREDICTIONS={inputs / os.path.basename(pristine['predictions'])}",
        f"POPULATION={inputs / os.path.basename(pristine['population'])}",
        "BUDGET_UNIT=share_of_people",
        "BUDGET=0.3",
        f"OUTPUT={output / 't.gpkg'}",
        f"ALLOCATION={output / 't.csv'}",
        f"REPORT={output / 't.html'}",
    )
    assert (output / "t.gpkg").exists()
    assert digests([str(inputs)]) == before, sorted(os.listdir(inputs))


def test_only_a_qgis_process_run_of_a_povmap_algorithm_switches_gdal_sidecars_off():
    from osgeo import gdal

    from povmap_qgis.processing.inputs import no_gdal_sidecars_in_a_qgis_process_run

    previous = gdal.GetConfigOption("GDAL_PAM_ENABLED")
    try:
        for arguments in (
            ["/usr/bin/qgis", "run", "povmap:target"],  # the desktop
            ["/usr/bin/qgis_process.bin", "run", "native:buffer", "--", "INPUT=a.gpkg"],
            ["/usr/bin/qgis_process.bin", "help", "povmap:target"],
            ["/usr/bin/qgis_process.bin", "run"],
            [],
        ):
            assert not no_gdal_sidecars_in_a_qgis_process_run(arguments), arguments
            assert gdal.GetConfigOption("GDAL_PAM_ENABLED") == previous
        arguments = ["/usr/bin/qgis_process.bin", "--json", "run", "povmap:target", "--", "X=1"]
        assert no_gdal_sidecars_in_a_qgis_process_run(arguments)
        assert gdal.GetConfigOption("GDAL_PAM_ENABLED") == "NO"
    finally:
        gdal.SetConfigOption("GDAL_PAM_ENABLED", previous)
