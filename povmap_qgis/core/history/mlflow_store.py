"""The MLflow store of the run history: where it is, a client on it, and its model registry.

``POVMAP_MLFLOW_TRACKING_URI``, else ``MLFLOW_TRACKING_URI``, names the store
(``POVMAP_TRACKING=off`` switches it off); ``models:/`` references are resolved here
and the registered package's digest checked (``resolve_model_uri``); the sidecar
``mlflow.json`` links a package to its run. What ``tracking.py`` records into and
``run_history.py`` reads. MLflow is imported inside functions, in the worker only.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote, urlparse

from ..atomic import atomic_output
from ..errors import PovmapCanceledError, PovmapInputError

URI_VARIABLE = "POVMAP_MLFLOW_TRACKING_URI"
SWITCH_VARIABLE = "POVMAP_TRACKING"
SIDECAR = "mlflow.json"
PID_TAG, HOST_TAG = "povmap.pid", "povmap.host"  # the worker that records a run
DIGEST_TAG = "povmap.manifest_sha256"  # the registered package's digest, checked on models:/ loads
MODEL_URI_PREFIX = "models:/"
FINGERPRINT_TAG = "povmap.training_fingerprint"  # on a model version: what it was trained on
OFF_VALUES = frozenset({"off", "0", "false", "no", "none"})
LOCKED = "the SQLite database is locked by another process"
INCOMPLETE_TAG = "povmap.history_incomplete"  # why a run's record stopped early
# MLflow's REST client retries for minutes by default; a run must not wait that long.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
}
_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>[^/@]+))$")


def tracking_uri(environ: Mapping[str, str] | None = None) -> str | None:
    """The tracking URI in force, or None (switched off or not configured)."""
    environ = os.environ if environ is None else environ
    if environ.get(SWITCH_VARIABLE, "").strip().lower() in OFF_VALUES:
        return None
    return (environ.get(URI_VARIABLE) or environ.get("MLFLOW_TRACKING_URI") or "").strip() or None


def is_model_uri(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(MODEL_URI_PREFIX)


def client_for(uri: str, environ: Mapping[str, str] | None = None) -> Any:
    """An MlflowClient on ``uri`` (tracking and registry), its SQLite folder made."""
    environ = os.environ if environ is None else environ
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    from mlflow import MlflowClient

    database = sqlite_path(uri)
    if database:
        os.makedirs(os.path.dirname(database) or ".", exist_ok=True)
    return MlflowClient(tracking_uri=uri, registry_uri=environ.get("MLFLOW_REGISTRY_URI") or uri)


def sqlite_path(uri: str) -> str | None:
    """The database file of a ``sqlite:///`` URI, else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return unquote(uri[len("sqlite:///") :].split("?")[0])


def experiment_id(client: Any, uri: str, name: str) -> str:
    """The experiment's id, created on first use (artifacts beside a SQLite database)."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    database = sqlite_path(uri)
    location = os.path.join(os.path.dirname(database), "mlartifacts") if database else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:  # created meanwhile by another worker
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def close_dead_runs(client: Any, experiment_ids: Iterable[str]) -> list[str]:
    """Mark KILLED the RUNNING runs whose worker, on this machine, is gone; return their ids.

    A killed worker (SIGKILL, a crash of QGIS) cannot end its run: it stayed RUNNING for
    ever. The test is the one the partial files of killed runs use
    (``run_folders.process_alive``); runs of other machines, and of a process id now taken
    by a live process, are left as they are.
    """
    from ..run_folders import process_alive

    host, closed = socket.gethostname(), []
    runs = client.search_runs(
        list(experiment_ids),
        f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'",
        max_results=1000,
    )
    for run in runs:
        pid = run.data.tags.get(PID_TAG, "")
        if not pid.isdigit() or int(pid) == os.getpid() or process_alive(int(pid)):
            continue
        client.set_tag(
            run.info.run_id,
            INCOMPLETE_TAG,
            f"the worker process {pid} ended without closing the run (killed); marked KILLED "
            f"by process {os.getpid()}",
        )
        client.set_terminated(run.info.run_id, "KILLED")
        closed.append(run.info.run_id)
    return closed


def failure_text(error: BaseException) -> str:
    """What went wrong with the store, in short; a locked SQLite database said as such."""
    chain: BaseException | None = error
    texts: list[str] = []
    while chain is not None and len(texts) < 10:  # the error and its causes (SQLAlchemy, sqlite3)
        texts.append(str(chain))
        chain = chain.__cause__ or chain.__context__
    if any("database is locked" in text for text in texts):
        return f"{LOCKED} that holds a write transaction (sqlite3: database is locked)"
    return short_text(error)


def short_text(error: BaseException | str) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."


# --- resolving models:/ ---------------------------------------------------------------------------


def resolve_model_uri(
    uri: str, parameter: str = "MODEL", environ: Mapping[str, str] | None = None
) -> tuple[str, Any]:
    """(local package folder, model version) of ``models:/<name>/<version>`` or ``@<alias>``."""
    match = _MODEL_URI.match(uri)
    if not match:
        raise PovmapInputError(
            parameter,
            f"'{uri}' is not a registered model reference; write models:/<name>/<version> "
            "or models:/<name>@<alias>.",
        )
    location = tracking_uri(environ)
    if location is None:
        raise PovmapInputError(
            parameter,
            f"'{uri}' names a model in the run history, which is switched off or not configured "
            f"(set {URI_VARIABLE} or the plugin setting, and not {SWITCH_VARIABLE}=off); "
            "or choose the .povmodel folder itself.",
        )
    name, alias, number = match.group("name", "alias", "version")
    try:
        client = client_for(location, environ)
        if alias:
            version = client.get_model_version_by_alias(name, alias)
        elif number == "latest":
            versions = client.search_model_versions(f"name='{name}'")
            if not versions:
                raise LookupError(f"the model '{name}' has no versions")
            _refuse_mixed_training_data(uri, name, versions, parameter)
            version = max(versions, key=lambda item: int(item.version))
        else:
            version = client.get_model_version(name, number)
    except (PovmapCanceledError, PovmapInputError):
        raise
    except Exception as error:
        reason = failure_text(error)
        if reason.startswith(LOCKED):
            raise PovmapInputError(
                parameter,
                f"'{uri}' could not be looked up in the run history at {location}: {reason}. "
                "Run again when it is free, or choose the .povmodel folder itself.",
            ) from None
        raise PovmapInputError(
            parameter, f"'{uri}' was not found in the run history at {location} ({reason})."
        ) from None
    folder = local_folder(version.source) or (version.tags or {}).get("povmap.package")
    if not folder or not os.path.isdir(folder):
        raise PovmapInputError(
            parameter,
            f"'{uri}' is version {version.version} of '{name}', stored at '{version.source}', "
            "which is not a folder on this machine; copy the package here and choose its folder.",
        )
    registered = (version.tags or {}).get(DIGEST_TAG)
    found = package_digest(folder)
    if registered and found != registered:
        raise PovmapInputError(
            parameter,
            f"'{uri}' is version {version.version} of '{name}', registered with {DIGEST_TAG} "
            f"{registered[:12]}…, but the package at '{folder}' now has "
            f"{(found or 'none')[:12]}…: it was replaced or edited after it was registered; "
            "refusing to use it. Restore the registered package or train and register again.",
        )
    return os.path.abspath(folder), version


def package_digest(folder: str) -> str | None:
    """The ``manifest_sha256`` a package's manifest records (it covers every weights file's
    sha256; ``model_package.read_package`` checks it against the files), or None."""
    try:
        with open(os.path.join(folder, "manifest.json"), encoding="utf-8") as handle:
            digest = json.load(handle).get("manifest_sha256")
    except (OSError, ValueError, AttributeError, RecursionError):
        return None
    return digest if isinstance(digest, str) else None


def _refuse_mixed_training_data(uri: str, name: str, versions: list[Any], parameter: str) -> None:
    """``latest`` of a model whose versions were trained on different data (a MODEL_NAME two
    projects share) could be another project's package: refused, naming the versions."""
    groups: dict[str, list[int]] = {}
    for item in versions:
        fingerprint = (item.tags or {}).get(FINGERPRINT_TAG) or "not recorded"
        groups.setdefault(fingerprint, []).append(int(item.version))
    if len(groups) < 2:
        return
    listed = "; ".join(
        f"versions {', '.join(str(number) for number in sorted(numbers))} on data {fingerprint}"
        for fingerprint, numbers in sorted(groups.items(), key=lambda item: min(item[1]))
    )
    newest = max(int(item.version) for item in versions)
    raise PovmapInputError(
        parameter,
        f"'{uri}': the versions of '{name}' were trained on different data ({listed}), e.g. by "
        f"two projects sharing the name, so 'latest' could be another project's package. Name "
        f"the version (models:/{name}/{newest}) or an alias (models:/{name}@<alias>, "
        "Set model alias), or choose the .povmodel folder itself.",
    )


def local_folder(source: str | None) -> str | None:
    """A registry source as a local path (plain path or file: URI), else None."""
    if not source:
        return None
    parsed = urlparse(source)
    if parsed.scheme == "file":
        return unquote(parsed.path)
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
        return source
    return None


def default_model_name(package: str, fingerprint: str | None = None) -> str:
    """The registered model's name when Train's MODEL_NAME is empty: the package folder's
    name and the training data fingerprint (``model.povmodel`` trained on two surveys gives
    two models, ``model-3fa9c2d1e0b4`` and ``model-81c0…``; retrained on the same cells, a new
    version of the same one)."""
    stem = model_name_of(package)
    return f"{stem}-{fingerprint}" if fingerprint else stem


def model_name_of(package: str) -> str:
    stem = os.path.basename(package.rstrip("/"))
    return stem[: -len(".povmodel")] if stem.endswith(".povmodel") else stem


def read_sidecar(package: str) -> dict[str, Any]:
    try:
        with open(os.path.join(package, SIDECAR), encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError, TypeError):
        return {}


def write_sidecar(package: str, record: Mapping[str, Any]) -> None:
    """``mlflow.json`` beside the manifest, written whole or not at all."""
    with atomic_output(os.path.join(package, SIDECAR)) as partial:
        with open(partial, "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=2, sort_keys=True)
