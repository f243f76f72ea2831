"""The model package: ``NAME.povmodel/`` (docs/contracts.md, format 1.2; reads 1.0, 1.1).

::

    NAME.povmodel/
      manifest.json             inputs (names, bands, shape), resolution, chip size,
                                normalisation, members (architecture, weights file,
                                sha256), threshold, cutoff and label meaning,
                                training summary, holdout metrics, software versions;
                                since 1.1: each input's value transform (in its
                                normalisation entry), ``calibration`` (Platt scaling
                                of the ensemble mean) and ``baseline`` (logistic
                                regression on per-chip statistics, plain numbers,
                                with the training cells' statistic range); since
                                0.3.0: ``interval`` (the prob_low/prob_high rule of
                                core/model/intervals.py, plain numbers; without it
                                the members' spread, as before); since 1.2: ``stacking`` (how ``prob_raw`` combines
                                the members and the baseline: weights, intercept,
                                candidates, where it was fitted; core/model/stacking.py)
      <member>.weights.h5       Keras weights of each member
      stats_gbm.trees.json      the statistics member's trees as plain numbers
                                (core/model/statistics_member.py), hashed like weights
      training_cells.npy        since 0.3: the ids of the cells whose labels the members
                                learned from (training + validation; int64, sorted), hashed in
                                the manifest's ``training_cells`` (file, sha256, count,
                                id_field, crs, cell_size), so an evaluation can tell them apart

A 1.1 package (no ``stacking``) keeps the members' mean as ``prob_raw``, and the log
says so. A 1.0 package still loads: it has no transform (linear normalisation, as it
was trained), no calibration (``prob_mean`` = ``prob_raw``, and ``missing_parts``
says so for the log and the reports) and no baseline.

Loading rebuilds each member's architecture from code (``core.model.models``) and
reads weights only — no pickles, no stored code. A package whose files are
missing or altered, of an unknown format version, or whose inputs do not
match the chip store is refused with a message saying what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

from .. import strict_json
from ..errors import PovmapInputError
from .models import ARCHITECTURE_VERSIONS, ARCHITECTURES, FIRST_ARCHITECTURE_VERSION

if TYPE_CHECKING:
    import numpy as np


FORMAT = "povmap-model"
FORMAT_VERSION = "1.2"
SUPPORTED_VERSIONS = ("1.0", "1.1", "1.2")
MANIFEST = "manifest.json"
# What defines the model: an edit to any of these changes predictions, so their canonical
# sha256 is recorded as ``manifest_sha256`` and checked on loading (since 0.2.0).
MODEL_DEFINING_KEYS = (
    "format",
    "format_version",
    "preset",
    "members",
    "inputs",
    "chip_size",
    "resolution",
    "cell_size",
    "crs",
    "normalisation",
    "threshold",
    "decision_threshold",
    "decision_rule",
    "label",
    "calibration",
    "baseline",
    "training_cells",
    "interval",
    "stacking",
)
WEIGHTS_SUFFIXES = (".weights.h5", ".trees.json")
TRAINING_CELLS_FILE = "training_cells.npy"
FORMAT_1_1_KEYS = ("calibration", "baseline")  # written since 1.1, which always has its hash


def sha256_of(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def check_package_path(path: str | None, parameter: str = "OUTPUT") -> None:
    if not path or not path.rstrip("/").endswith(".povmodel"):
        raise PovmapInputError(parameter, f"'{path}' must be a folder name ending in .povmodel.")


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """sha256 of the model-defining part of a manifest in a canonical JSON form."""
    defining = {key: manifest[key] for key in MODEL_DEFINING_KEYS if key in manifest}
    text = json.dumps(defining, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_manifest(folder: str, manifest: dict[str, Any]) -> None:
    """Record each member's weights hash and the manifest's own, then write it (not yet published)."""
    for member in manifest["members"]:
        member["sha256"] = sha256_of(os.path.join(folder, member["weights"]))
    manifest["manifest_sha256"] = manifest_digest(manifest)
    text = strict_json.dumps(manifest, None, "the model manifest", indent=2, sort_keys=True)
    with open(os.path.join(folder, MANIFEST), "w", encoding="utf-8") as handle:
        handle.write(text)


def write_training_cells(
    folder: str, cell_ids: Any, id_field: str, crs: str | None, cell_size: float | None
) -> dict[str, Any]:
    """Write the ids of the cells the members learned from; the manifest's ``training_cells``."""
    import numpy as np

    path = os.path.join(folder, TRAINING_CELLS_FILE)
    ids = np.unique(np.asarray(cell_ids, dtype="int64"))
    np.save(path, ids, allow_pickle=False)
    return {
        "file": TRAINING_CELLS_FILE,
        "sha256": sha256_of(path),
        "count": int(len(ids)),
        "parts": "train+validation",
        "id_field": id_field,
        "crs": crs,
        "cell_size": cell_size,
    }


def read_training_cells(
    manifest: Mapping[str, Any],
) -> tuple[np.ndarray | None, Any]:
    """(sorted int64 ids, record) of the cells the members learned from, or (None, why not):
    a package made before 0.3 records none, a missing or altered file is not trusted."""
    import numpy as np

    record = manifest.get("training_cells")
    if not isinstance(record, dict) or not isinstance(record.get("file"), str):
        return None, (
            "the model package does not record which cells it was trained on (made before "
            "povmap-qgis 0.3)"
        )
    path = os.path.join(manifest["path"], os.path.basename(record["file"]))
    if not os.path.isfile(path) or sha256_of(path) != record.get("sha256"):
        return None, (
            f"the model package's list of training cells ({record['file']}) is missing or does "
            "not match its sha256"
        )
    return np.load(path, allow_pickle=False).astype("int64"), record


def read_package(path: str, parameter: str = "MODEL") -> dict[str, Any]:
    """The verified manifest of a package (hashes, files, version, architectures)."""
    path = os.path.abspath(path.rstrip("/"))
    try:
        with open(os.path.join(path, MANIFEST), encoding="utf-8") as handle:
            manifest = json.load(handle)
    except (OSError, ValueError) as error:
        raise PovmapInputError(
            parameter,
            f"'{path}' is not a model package ({error}); choose a .povmodel folder made by Train.",
        ) from None
    except RecursionError:
        raise PovmapInputError(
            parameter,
            f"'{path}' is not a model package (its {MANIFEST} is nested too deeply); choose a "
            ".povmodel folder made by Train.",
        ) from None
    if not isinstance(manifest, dict):
        raise PovmapInputError(
            parameter, f"'{path}' is not a model package ({MANIFEST} is not an object)."
        )
    if manifest.get("format") != FORMAT:
        raise PovmapInputError(
            parameter,
            f"'{path}' is not a povmap model package (format '{manifest.get('format')}').",
        )
    if manifest.get("format_version") not in SUPPORTED_VERSIONS:
        raise PovmapInputError(
            parameter,
            f"'{path}' has model package version {manifest.get('format_version')}; this plugin reads {', '.join(SUPPORTED_VERSIONS)}. Update the plugin or retrain the model.",
        )
    if not manifest.get("members"):
        raise PovmapInputError(parameter, f"'{path}' lists no ensemble members.")
    _check_schema(manifest, path, parameter)
    recorded = manifest.get("manifest_sha256")
    if recorded is None and manifest["format_version"] != "1.0":
        raise PovmapInputError(
            parameter,
            f"'{path}': its {MANIFEST} (format {manifest['format_version']}) has no "
            "manifest_sha256, which every package of this format is written with: it was "
            "removed (edited or damaged); refusing to load it. Use an intact copy or train the "
            "model again.",
        )
    if recorded is None and any(key in manifest for key in FORMAT_1_1_KEYS):
        raise PovmapInputError(
            parameter,
            f"'{path}': its {MANIFEST} says format 1.0 but holds "
            f"{', '.join(key for key in FORMAT_1_1_KEYS if key in manifest)}, which only later "
            "packages have, and no manifest_sha256 (edited or damaged); refusing to load it. "
            "Use an intact copy or train the model again.",
        )
    if recorded is not None and recorded != manifest_digest(manifest):
        raise PovmapInputError(
            parameter,
            f"'{path}': the model-defining part of {MANIFEST} (inputs, normalisation, members, "
            "thresholds, calibration, baseline) does not match its manifest_sha256 (edited or "
            "damaged); refusing to load it. Use an intact copy or train the model again.",
        )
    for member in manifest["members"]:
        if member.get("architecture") not in ARCHITECTURES:
            raise PovmapInputError(
                parameter,
                f"'{path}': member '{member.get('name')}' has unknown architecture '{member.get('architecture')}'.",
            )
        _check_architecture_version(path, member, parameter)
        weights = os.path.join(path, os.path.basename(member.get("weights", "")))
        if os.path.dirname(os.path.realpath(weights)) != os.path.realpath(path):
            raise PovmapInputError(
                parameter,
                f"'{path}': the weights file '{member.get('weights')}' of member "
                f"'{member['name']}' is a link to a file outside the package; refusing to load "
                "it. Copy the package with its files (not links) or train the model again.",
            )
        if not os.path.isfile(weights):
            raise PovmapInputError(
                parameter,
                f"'{path}': the weights file '{member.get('weights')}' of member '{member['name']}' is missing.",
            )
        if sha256_of(weights) != member.get("sha256"):
            raise PovmapInputError(
                parameter,
                f"'{path}': the weights of member '{member['name']}' do not match their sha256 in the manifest (altered or damaged); refusing to load them.",
            )
    manifest["path"] = path
    return manifest


def _check_schema(manifest: dict[str, Any], path: str, parameter: str) -> None:
    """Types and ranges of what prediction relies on; a message naming the field otherwise."""

    def refuse(field: str, what: str) -> NoReturn:
        raise PovmapInputError(
            parameter,
            f"'{path}': {MANIFEST} field '{field}' {what}; this package cannot be used. Use an "
            "intact copy or train the model again.",
        )

    def number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    # Every number prediction could read, whichever field holds it (those added later
    # included): NaN or infinity parses from Python's JSON but makes every cell poor or none.
    non_finite = strict_json.non_finite_paths(manifest)
    if non_finite:
        listed = ", ".join(non_finite[:5]) + (" …" if len(non_finite) > 5 else "")
        refuse(listed, "holds a number that is not finite (NaN or infinity)")
    for key in ("threshold", "decision_threshold"):
        if key in manifest and not (number(manifest[key]) and 0 < manifest[key] < 1):
            refuse(key, f"must be a number between 0 and 1 (it is {manifest[key]!r})")
    if "threshold" not in manifest:
        refuse("threshold", "is missing")
    for key in ("chip_size", "resolution"):
        if not (number(manifest.get(key)) and manifest[key] > 0):
            refuse(key, f"must be a positive number (it is {manifest.get(key)!r})")
    inputs = manifest.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        refuse("inputs", "must list the model's inputs")
    normalisation = manifest.get("normalisation")
    if not isinstance(normalisation, dict):
        refuse("normalisation", "is missing or not an object")
    for spec in inputs:
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            refuse("inputs", "holds an entry without a name")
        bands = spec.get("bands")
        if not isinstance(bands, list) or not bands:
            refuse(f"inputs[{spec['name']}].bands", "must list the bands")
        entry = normalisation.get(spec["name"])
        if not isinstance(entry, dict):
            refuse(f"normalisation.{spec['name']}", "is missing")
        for statistic in ("mean", "std"):
            values = entry.get(statistic)
            if not (
                isinstance(values, list)
                and len(values) == len(bands)
                and all(number(value) for value in values)
            ):
                refuse(
                    f"normalisation.{spec['name']}.{statistic}",
                    f"must hold one number per band ({len(bands)})",
                )
        if not all(value > 0 for value in entry["std"]):
            refuse(f"normalisation.{spec['name']}.std", "must be positive for every band")
    names = [member.get("name") for member in manifest["members"] if isinstance(member, dict)]
    if len(names) != len(manifest["members"]) or len(set(names)) != len(names):
        refuse("members", "must be objects with distinct names")
    for member in manifest["members"]:
        weights = member.get("weights")
        if not isinstance(weights, str) or not weights.endswith(WEIGHTS_SUFFIXES):
            refuse(
                f"members[{member['name']}].weights",
                "must be one .weights.h5 (or .trees.json) file: sharded weights "
                "(.weights.json and shards) are not read, since every file must be hashed",
            )
        if weights != os.path.basename(weights) or weights in (".", "..") or "\\" in weights:
            refuse(
                f"members[{member['name']}].weights",
                f"must be a file name inside the package, not a path ({weights!r})",
            )
    calibration = manifest.get("calibration")
    if (
        isinstance(calibration, dict)
        and calibration.get("method") == "platt"
        and not all(number(calibration.get(key)) for key in ("slope", "intercept"))
    ):
        refuse("calibration", "must hold a numeric slope and intercept for Platt scaling")
    _check_stacking(manifest, refuse, number)


def _check_stacking(
    manifest: dict[str, Any], refuse: Callable[[str, str], NoReturn], number: Callable[[Any], bool]
) -> None:
    """A stacking record names each candidate once (every member and the baseline, which it
    needs) and holds one non-negative number per candidate and a numeric intercept."""
    from .stacking import BASELINE, is_stacked

    stacked = manifest.get("stacking")
    if stacked is None or (isinstance(stacked, dict) and stacked.get("method") == "none"):
        return
    if not (isinstance(stacked, dict) and is_stacked(stacked)):
        refuse("stacking", "has an unknown method")
    names = stacked.get("candidates")
    weights = stacked.get("weights")
    known = {member.get("name") for member in manifest["members"]} | {BASELINE}
    if not (
        isinstance(names, list)
        and isinstance(weights, list)
        and len(names) == len(weights) == len(set(names))
        and set(names) <= known
    ):
        refuse("stacking", "must name distinct members or the baseline, one weight each")
    if not all(number(value) and value >= 0 for value in weights):
        refuse("stacking.weights", "must be non-negative numbers")
    if not number(stacked.get("intercept")):
        refuse("stacking.intercept", "must be a number")
    if BASELINE in names and not isinstance(manifest.get("baseline"), dict):
        refuse("stacking", "uses the baseline, but the package has none")


def missing_parts(manifest: Mapping[str, Any]) -> list[str]:
    """Sentences naming what an older package lacks (no calibration, no baseline); [] for a 1.1 package."""
    missing = []
    if not manifest.get("manifest_sha256"):
        missing.append(
            "the model package has no manifest_sha256 (made before povmap-qgis 0.2.0): an "
            "edit to its manifest cannot be detected"
        )
    if not manifest.get("calibration"):
        missing.append(
            f"the model package (format {manifest.get('format_version')}) has no calibration: "
            "prob_mean is the members' uncalibrated mean (prob_mean = prob_raw)"
        )
    if not manifest.get("baseline"):
        missing.append(
            "the model package has no baseline: prob_baseline and out_of_range are not "
            "written; retrain it to get them"
        )
    return missing


def _short(error: BaseException | str, limit: int = 200) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_inputs_match(
    manifest: Mapping[str, Any], store_manifest: Mapping[str, Any], parameter: str = "CHIPS"
) -> None:
    """The chip store must hold the inputs, bands and chip size the model was trained on."""
    store_inputs = {spec["name"]: spec for spec in store_manifest["inputs"]}
    for spec in manifest["inputs"]:
        found = store_inputs.get(spec["name"])
        if found is None:
            raise PovmapInputError(
                parameter,
                f"the chip store has no '{spec['name']}' input, which the model needs (model inputs: {', '.join(s['name'] for s in manifest['inputs'])}); sample it with the same inputs.",
            )
        if list(found["bands"]) != list(spec["bands"]):
            raise PovmapInputError(
                parameter,
                f"the chip store's '{spec['name']}' has bands {found['bands']}, the model was trained on bands {spec['bands']}.",
            )
    if int(store_manifest["chip_size"]) != int(manifest["chip_size"]) or float(
        store_manifest["settings"]["resolution"]
    ) != float(manifest["resolution"]):
        raise PovmapInputError(
            parameter,
            f"the chip store has {store_manifest['chip_size']} px chips at {store_manifest['settings']['resolution']} m; the model needs {manifest['chip_size']} px at {manifest['resolution']} m.",
        )


def _check_architecture_version(path: str, member: Mapping[str, Any], parameter: str) -> None:
    """A member rebuilt by other code than it was trained with would compute other
    probabilities from the same weights: refuse it (no version recorded: the first)."""
    architecture = member["architecture"]
    version = member.get("architecture_version", FIRST_ARCHITECTURE_VERSION)
    if version != ARCHITECTURE_VERSIONS[architecture]:
        from ..version import plugin_version

        recorded = (
            f"version {version}"
            if "architecture_version" in member
            else f"version {version} (it records none: packages from before versions were recorded)"
        )
        raise PovmapInputError(
            parameter,
            f"'{path}': member '{member.get('name')}' was trained with the {architecture} "
            f"architecture {recorded}; this povmap-qgis ({plugin_version()}) builds version "
            f"{ARCHITECTURE_VERSIONS[architecture]}, which would compute other probabilities from "
            "its weights, so it is refused. Predict with the povmap-qgis version that trained it, "
            "or train the model again.",
        )


def load_members(manifest: Mapping[str, Any], parameter: str = "MODEL") -> list[Any]:
    """Keras models of every member with their weights (architecture rebuilt from code)."""
    from .models import build_member
    from .statistics_member import StatisticsMember, is_statistics_member

    models = []
    for member in manifest["members"]:
        if is_statistics_member(member["architecture"]):
            path = os.path.join(manifest["path"], os.path.basename(member["weights"]))
            try:
                models.append(StatisticsMember.load(path, [i["name"] for i in manifest["inputs"]]))
            except (OSError, ValueError) as error:
                raise PovmapInputError(
                    parameter,
                    f"'{manifest['path']}': the trees of member '{member.get('name')}' cannot be "
                    f"loaded ({error}); train the model again or use an intact copy.",
                ) from None
            continue
        model = build_member(
            member["architecture"],
            manifest["inputs"],
            dense_units=member.get("dense_units"),
            dropout=member.get("dropout"),
        )
        weights = os.path.join(manifest["path"], os.path.basename(member["weights"]))
        try:
            model.load_weights(weights)
        except (OSError, ValueError) as error:  # not HDF5, truncated, other layers
            raise PovmapInputError(
                parameter,
                f"'{manifest['path']}': the weights file '{os.path.basename(weights)}' of member "
                f"'{member.get('name')}' cannot be loaded ({_short(error)}); it is damaged or "
                "not from this member: train the model again or use an intact copy.",
            ) from None
        models.append(model)
    return models
