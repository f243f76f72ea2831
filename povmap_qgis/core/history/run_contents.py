"""What goes into a tracked step's MLflow run: params, input fingerprints, metrics, artifacts.

Plain functions of a step's options dataclass and result dict (``tracking.StepRun``
records what they return): options as params, a fingerprint per input file or
folder, every finite number of the result as a metric, the reports, metrics and
model manifests as artifacts (never household data, grids or chips), the ROC curves.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import time
from collections.abc import Iterator, Mapping
from typing import Any

from ..model.model_package import sha256_of

ARTIFACT_FOLDERS = {".html": "reports", ".csv": "metrics", ".json": "metrics", ".png": "figures"}
RASTER_EXTENSIONS = (".tif", ".tiff", ".vrt", ".img", ".jp2", ".nc", ".asc")
ROC_ARTIFACT = "roc/roc.json"  # {"format": "povmap-roc", "curves": {model: {fpr, tpr, auc}}}
HASHED_FILE_LIMIT = 2 << 30  # bigger files are fingerprinted by size and time
OUTPUT_KEYS = frozenset({"hitmiss_path", "metrics_path", "report_path", "table_path"})
SOFTWARE = ("numpy", "pandas", "tensorflow-cpu", "tensorflow", "keras", "mlflow-skinny")


def option_params(options: Any) -> dict[str, str]:
    """{name: text} of the options dataclass (style files left out; long values cut)."""
    values = dataclasses.asdict(options) if dataclasses.is_dataclass(options) else dict(options)  # type: ignore[arg-type]  # an instance
    params = {}
    for key, value in values.items():
        if "style" in key:
            continue
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        params[metric_key(key)] = text[:6000]
    return params


def input_fingerprints(options: Any) -> dict[str, str]:
    """{option name: fingerprint} of every existing input file or folder the options name."""
    values = dataclasses.asdict(options) if dataclasses.is_dataclass(options) else dict(options)  # type: ignore[arg-type]  # an instance
    found = {}
    for key, value in string_leaves(values):
        leaf = key.rsplit(".", 1)[-1]
        if leaf.startswith("output") or leaf in OUTPUT_KEYS or "style" in key:
            continue
        if leaf.endswith("_folder") or not os.path.exists(value):
            continue
        fingerprint = fingerprint_of(value)
        if fingerprint:
            found[metric_key(key)] = fingerprint
    return found


def fingerprint_of(path: str) -> str | None:
    """sha256 of a file (or of a chip store's / model package's manifest); size and time of rasters."""
    if os.path.isdir(path):
        manifest = os.path.join(path, "manifest.json")
        return f"sha256:{sha256_of(manifest)}" if os.path.isfile(manifest) else None
    status = os.stat(path)
    if path.lower().endswith(RASTER_EXTENSIONS) or status.st_size > HASHED_FILE_LIMIT:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(status.st_mtime))
        return f"size={status.st_size};mtime={stamp}"
    return f"sha256:{sha256_of(path)}"


def numeric_leaves(value: Any, prefix: str = "") -> Iterator[tuple[str, float]]:
    """(dotted key, number) of every finite number in nested dicts (lists are left out)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from numeric_leaves(item, f"{prefix}.{key}" if prefix else str(key))
    elif is_number(value):
        yield prefix, float(value)


def artifact_files(options: Any, result: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(file, artifact folder) of the reports, metrics, figures and model manifests named."""
    values = dataclasses.asdict(options) if dataclasses.is_dataclass(options) else {}  # type: ignore[arg-type]  # an instance
    candidates = [path for _, path in string_leaves(result)]
    candidates += [path for key, path in string_leaves(values) if "style" not in key]
    seen, found = set(), []
    for path in candidates:
        path = os.path.abspath(path.rstrip("/"))
        if path in seen or ".chips" in path:
            continue
        seen.add(path)
        if path.endswith(".povmodel") and os.path.isdir(path):
            if os.path.isfile(os.path.join(path, "manifest.json")):
                found.append((os.path.join(path, "manifest.json"), "model"))
            continue
        folder = ARTIFACT_FOLDERS.get(os.path.splitext(path)[1].lower())
        if folder and os.path.isfile(path):
            found.append((path, folder))
    return found


def roc_curves_of(result: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """{model: {fpr, tpr, auc}} of a step's result: ``roc`` by model (train, evaluate, a fold)
    or ``roc.pooled`` (cross-validation: the out-of-fold curves); AUC by the trapezoid rule,
    as scikit-learn's roc_auc_score computes it from the same points."""
    roc = result.get("roc") if isinstance(result, dict) else None
    if isinstance(roc, dict) and isinstance(roc.get("pooled"), dict):
        roc = roc["pooled"]
    if not isinstance(roc, dict):
        return {}
    curves = {}
    for name, curve in roc.items():
        if isinstance(curve, dict) and curve.get("fpr") and curve.get("tpr"):
            fpr, tpr = [float(v) for v in curve["fpr"]], [float(v) for v in curve["tpr"]]
            area = sum(
                (fpr[i] - fpr[i - 1]) * (tpr[i] + tpr[i - 1]) / 2 for i in range(1, len(fpr))
            )
            curves[str(name)] = {"fpr": fpr, "tpr": tpr, "auc": area}
    return curves


def metric_key(name: Any) -> str:
    """A name MLflow accepts (letters, digits, _ - . / and spaces)."""
    return re.sub(r"[^0-9A-Za-z_\-. /]", "_", str(name))[:250]


def string_leaves(value: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from string_leaves(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from string_leaves(item, f"{prefix}.{index}")
    elif isinstance(value, str) and value:
        yield prefix, value


def is_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    ) or (hasattr(value, "dtype") and getattr(value, "ndim", 1) == 0 and is_number(value.item()))


def data_digest(items: Any) -> str:
    return hashlib.sha256(json.dumps(items).encode("utf-8")).hexdigest()


def software_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {}
    for name in SOFTWARE:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions
