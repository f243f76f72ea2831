"""The model manifest is checked, not trusted (issue 14 item 6): a schema for what prediction
relies on, and a sha256 of its model-defining part, so an edited package is refused like a
tampered weights file. On copies of the bundled package (no training needed)."""

import json
import shutil

import pytest

from povmap_qgis.core.errors import PovmapInputError
from povmap_qgis.core.model import model_package
from povmap_qgis.paths import bundled_model_path


@pytest.fixture()
def package(tmp_path):
    path = tmp_path / "copy.povmodel"
    shutil.copytree(bundled_model_path(), path)
    return path


def edit(path, change, rehash=False):
    manifest_file = path / "manifest.json"
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    change(manifest)
    if rehash:  # someone who also recomputes the hash: the schema still has to catch it
        manifest["manifest_sha256"] = model_package.manifest_digest(manifest)
    manifest_file.write_text(json.dumps(manifest), encoding="utf-8")


def refused(path):
    with pytest.raises(PovmapInputError) as caught:
        model_package.read_package(str(path))
    assert caught.value.parameter == "MODEL"
    return str(caught.value)


def test_the_bundled_package_records_and_matches_its_manifest_hash(package):
    manifest = model_package.read_package(str(package))
    assert manifest["manifest_sha256"] == model_package.manifest_digest(manifest)
    assert model_package.missing_parts(manifest) == []


def test_an_edited_threshold_is_refused_like_altered_weights(package):
    edit(package, lambda manifest: manifest.update(decision_threshold=0.01))
    assert "does not match its manifest_sha256" in refused(package)


def test_a_zero_std_is_refused_even_with_a_recomputed_hash(package):
    def zero_std(manifest):
        entry = manifest["normalisation"]["nightlights"]
        entry["std"] = [0.0 for _ in entry["std"]]

    edit(package, zero_std, rehash=True)
    assert "'normalisation.nightlights.std' must be positive" in refused(package)


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda manifest: manifest.update(threshold="high"), "'threshold' must be a number"),
        (lambda manifest: manifest.pop("threshold"), "'threshold' is missing"),
        (lambda manifest: manifest.pop("normalisation"), "'normalisation' is missing"),
        (lambda manifest: manifest.update(chip_size=0), "'chip_size' must be a positive"),
        (
            lambda manifest: manifest["normalisation"]["daytime"].update(mean=[1.0]),
            "'normalisation.daytime.mean' must hold one number per band (3)",
        ),
        (
            lambda manifest: manifest["members"].append(dict(manifest["members"][0])),
            "'members' must be objects with distinct names",
        ),
        (
            lambda manifest: manifest["members"][0].update(weights="m.weights.json"),
            "sharded weights",
        ),
    ],
)
def test_manifest_fields_are_checked_and_named(package, change, field):
    edit(package, change, rehash=True)
    assert field in refused(package)


def as_format_1_0(manifest):
    """What a package from before 0.2.0 holds: format 1.0, no hash, calibration or baseline
    (nor what later formats added: stacking, interval rule, training cells, member versions)."""
    for key in ("manifest_sha256", "calibration", "baseline"):
        manifest.pop(key)
    for key in ("stacking", "interval", "training_cells"):
        manifest.pop(key, None)
    for member in manifest["members"]:
        member.pop("architecture_version", None)
    manifest["format_version"] = "1.0"


def test_a_package_from_before_the_hash_loads_and_says_edits_cannot_be_detected(package):
    edit(package, as_format_1_0)
    manifest = model_package.read_package(str(package))
    assert any("no manifest_sha256" in line for line in model_package.missing_parts(manifest))


def test_a_1_1_package_without_its_hash_is_refused(package):
    format_version = json.loads((package / "manifest.json").read_text())["format_version"]
    assert format_version != "1.0"
    edit(package, lambda manifest: manifest.pop("manifest_sha256"))
    assert f"(format {format_version}) has no manifest_sha256" in refused(package)


@pytest.mark.parametrize(
    "where, value",
    [("mean", float("nan")), ("std", float("inf")), ("mean", 1e999), ("std", -float("inf"))],
)
def test_non_finite_normalisation_is_refused_even_rehashed(package, where, value):
    def change(manifest):
        manifest["normalisation"]["nightlights"][where][0] = value

    edit(package, change, rehash=True)
    message = refused(package)
    assert f"'normalisation.nightlights.{where}[0]' holds a number that is not finite" in message


def test_non_finite_numbers_in_any_field_are_refused_whoever_added_it(package):
    """Fields added later (intervals, stacking) are covered without being listed."""
    edit(package, lambda manifest: manifest.update(future={"width": [0.1, float("nan")]}), True)
    assert "'future.width[1]'" in refused(package)


def test_weights_must_be_a_file_name_inside_the_package(package, tmp_path):
    edit(package, lambda manifest: manifest["members"][0].update(weights="/etc/x.weights.h5"), True)
    assert "must be a file name inside the package" in refused(package)


def test_a_member_of_another_architecture_version_is_refused_and_none_recorded_is_the_first(
    package,
):
    """Weights are only meaningful with the code they were trained with (models.py records its
    versions; tests/keras_checks.py pins what each version computes)."""
    from povmap_qgis.core.model.models import ARCHITECTURE_VERSIONS, FIRST_ARCHITECTURE_VERSION

    def none_recorded(manifest):  # as every package from before versions were recorded
        for member in manifest["members"]:
            member.pop("architecture_version", None)

    edit(package, none_recorded, rehash=True)
    manifest = model_package.read_package(str(package))
    assert all("architecture_version" not in member for member in manifest["members"])
    assert all(
        ARCHITECTURE_VERSIONS[member["architecture"]] == FIRST_ARCHITECTURE_VERSION
        for member in manifest["members"]
    )
    first = manifest["members"][0]

    def later(manifest):
        manifest["members"][0]["architecture_version"] = FIRST_ARCHITECTURE_VERSION + 1

    edit(package, later, rehash=True)
    message = refused(package)
    assert (
        f"member '{first['name']}' was trained with the {first['architecture']} architecture "
        f"version {FIRST_ARCHITECTURE_VERSION + 1}" in message
    )
    assert (
        f"builds version {FIRST_ARCHITECTURE_VERSION}" in message
        and "train the model again" in message
    )
