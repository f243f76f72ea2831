"""The model package: ``NAME.povmodel/`` (DESIGN.md data contract, format 1.1; reads 1.0).

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
                                with the training cells' statistic range)
      <member>.weights.h5       Keras weights of each member
      stats_gbm.trees.json      the statistics member's trees as plain numbers
                                (core/statistics_member.py), hashed like weights

A 1.0 package still loads: it has no transform (linear normalisation, as it
was trained), no calibration (``prob_mean`` = ``prob_raw``, and ``missing_parts``
says so for the log and the reports) and no baseline.

Loading rebuilds each member's architecture from code (``core.models``) and
reads weights only — no pickles, no stored code. A package whose files are
missing or altered, of an unknown format version, or whose inputs do not
match the chip store is refused with a message saying what is wrong.
"""

import hashlib
import json
import os

from . import strict_json
from .errors import PovmapInputError
from .models import ARCHITECTURES

FORMAT = "povmap-model"
FORMAT_VERSION = "1.1"
SUPPORTED_VERSIONS = ("1.0", "1.1")
MANIFEST = "manifest.json"


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_package_path(path, parameter="OUTPUT"):
    if not path or not path.rstrip("/").endswith(".povmodel"):
        raise PovmapInputError(parameter, f"'{path}' must be a folder name ending in .povmodel.")


def write_manifest(folder, manifest):
    """Record each member's weights hash and write the manifest (folder not yet published)."""
    for member in manifest["members"]:
        member["sha256"] = sha256_of(os.path.join(folder, member["weights"]))
    text = strict_json.dumps(manifest, None, "the model manifest", indent=2, sort_keys=True)
    with open(os.path.join(folder, MANIFEST), "w", encoding="utf-8") as handle:
        handle.write(text)


def read_package(path, parameter="MODEL"):
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
    for member in manifest["members"]:
        if member.get("architecture") not in ARCHITECTURES:
            raise PovmapInputError(
                parameter,
                f"'{path}': member '{member.get('name')}' has unknown architecture '{member.get('architecture')}'.",
            )
        weights = os.path.join(path, os.path.basename(member.get("weights", "")))
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


def missing_parts(manifest):
    """Sentences naming what an older package lacks (no calibration, no baseline); [] for a 1.1 package."""
    missing = []
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


def _short(error, limit=200):
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_inputs_match(manifest, store_manifest, parameter="CHIPS"):
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


def load_members(manifest, parameter="MODEL"):
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
