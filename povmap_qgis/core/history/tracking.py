"""Run history and model registry in MLflow (docs/run-history.md).

The worker runs every tracked step (train, predict, evaluate, crossvalidate,
target) inside :func:`tracked_step`, which records one MLflow run:

- params: the step's options dataclass (style files left out);
- input fingerprints: sha256 of grid files and of the manifests of chip stores
  and model packages, size and modification time of rasters; their digest as
  the tag ``povmap.data_fingerprint`` (two runs on the same data share it);
- metrics: per epoch (``Reporter.metric``, e.g. ``compact_cnn/val_loss``) and
  the numbers of the step's result dict (``metrics.ensemble.auc``...);
- artifacts: the model package manifest, HTML reports, metrics CSV/JSON and
  figures, never household data, grids or chips;
- tags: the algorithm id and QGIS version (set by the Processing adapter), the
  povmap version, package versions.

After ``train`` the package is registered as a new version of a named model
(``POVMAP_MODEL_NAME``, or the package's folder name and the training data
fingerprint: :func:`default_model_name`) with its holdout metrics and that
fingerprint as tags; the run id goes into a sidecar ``mlflow.json`` in the package, not
into ``manifest.json``, so that the manifest stays exactly what training wrote
and hashed. The sidecar is not hashed: its run is credited
(``povmap.training_run_id``) only when this registry holds that version, of that
run, with the package's digest; otherwise it is tagged
``povmap.training_run_id_unverified``. Registration records the package's
``manifest_sha256`` (which covers every weights file's sha256) as the version tag
``povmap.manifest_sha256``, and a ``models:/`` load refuses a package whose
digest differs: the registry, not the file, says where a package came from (a
hash inside the file it protects proves integrity, never origin). ``models:/<name>/<version>``, ``models:/<name>@<alias>`` and
``models:/<name>/latest`` are accepted wherever a step takes ``model_path``;
``latest`` of a model whose versions were trained on different data is refused
(it could be another project's package).

Where: ``POVMAP_MLFLOW_TRACKING_URI``, else ``MLFLOW_TRACKING_URI`` (the
Processing adapter sets the first from the plugin setting, by default a SQLite
database in the QGIS profile); neither: nothing is recorded.
``POVMAP_TRACKING=off`` switches tracking off. A tracking failure never fails
the step: the first one is reported as a warning and the run goes on without
history. MLflow is imported here only, and only in the worker process.
"""

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import re
import socket
import time
from urllib.parse import unquote, urlparse

from ..atomic import atomic_output
from ..errors import PovmapCanceledError, PovmapInputError
from ..model.model_package import sha256_of
from ..progress import Reporter

TRACKED_STEPS = frozenset({"train", "predict", "evaluate", "crossvalidate", "target"})
URI_VARIABLE = "POVMAP_MLFLOW_TRACKING_URI"
SWITCH_VARIABLE = "POVMAP_TRACKING"
ALGORITHM_VARIABLE = "POVMAP_ALGORITHM"
QGIS_VERSION_VARIABLE = "POVMAP_QGIS_VERSION"
MODEL_NAME_VARIABLE = "POVMAP_MODEL_NAME"
EXPERIMENT_VARIABLE = "POVMAP_MLFLOW_EXPERIMENT"
DEFAULT_EXPERIMENT = "povmap"
SIDECAR = "mlflow.json"
PID_TAG, HOST_TAG = "povmap.pid", "povmap.host"  # the worker that records a run
DIGEST_TAG = "povmap.manifest_sha256"  # the registered package's digest, checked on models:/ loads
MODEL_URI_PREFIX = "models:/"
FINGERPRINT_TAG = "povmap.training_fingerprint"  # on a model version: what it was trained on
OFF_VALUES = frozenset({"off", "0", "false", "no", "none"})
ARTIFACT_FOLDERS = {".html": "reports", ".csv": "metrics", ".json": "metrics", ".png": "figures"}
RASTER_EXTENSIONS = (".tif", ".tiff", ".vrt", ".img", ".jp2", ".nc", ".asc")
LOCKED = "the SQLite database is locked by another process"
INCOMPLETE_TAG = "povmap.history_incomplete"  # why a run's record stopped early
DEVICE_STEPS = frozenset({"train", "crossvalidate", "predict"})  # steps that run TensorFlow
NO_DEVICE = "none: TensorFlow did not run in the worker process (e.g. ENGINE=spark)"
ROC_ARTIFACT = "roc/roc.json"  # {"format": "povmap-roc", "curves": {model: {fpr, tpr, auc}}}
HASHED_FILE_LIMIT = 2 << 30  # bigger files are fingerprinted by size and time
OUTPUT_KEYS = frozenset({"hitmiss_path", "metrics_path", "report_path", "table_path"})
VERSION_TAG_METRICS = ("n", "recall", "precision", "accuracy", "auc", "brier", "ece")
SOFTWARE = ("numpy", "pandas", "tensorflow-cpu", "tensorflow", "keras", "mlflow-skinny")
# MLflow's REST client retries for minutes by default; a run must not wait that long.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
}
_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>[^/@]+))$")


def tracking_uri(environ=None):
    """The tracking URI in force, or None (switched off or not configured)."""
    environ = os.environ if environ is None else environ
    if environ.get(SWITCH_VARIABLE, "").strip().lower() in OFF_VALUES:
        return None
    return (environ.get(URI_VARIABLE) or environ.get("MLFLOW_TRACKING_URI") or "").strip() or None


def is_model_uri(value):
    return isinstance(value, str) and value.startswith(MODEL_URI_PREFIX)


def client_for(uri, environ=None):
    """An MlflowClient on ``uri`` (tracking and registry), its SQLite folder made."""
    environ = os.environ if environ is None else environ
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    from mlflow import MlflowClient

    database = sqlite_path(uri)
    if database:
        os.makedirs(os.path.dirname(database) or ".", exist_ok=True)
    return MlflowClient(tracking_uri=uri, registry_uri=environ.get("MLFLOW_REGISTRY_URI") or uri)


def sqlite_path(uri):
    """The database file of a ``sqlite:///`` URI, else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return unquote(uri[len("sqlite:///") :].split("?")[0])


def experiment_id(client, uri, name):
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


# --- resolving models:/ ---------------------------------------------------------------------------


def resolve_model_uri(uri, parameter="MODEL", environ=None):
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


def package_digest(folder):
    """The ``manifest_sha256`` a package's manifest records (it covers every weights file's
    sha256; ``model_package.read_package`` checks it against the files), or None."""
    try:
        with open(os.path.join(folder, "manifest.json"), encoding="utf-8") as handle:
            digest = json.load(handle).get("manifest_sha256")
    except (OSError, ValueError, AttributeError, RecursionError):
        return None
    return digest if isinstance(digest, str) else None


def _refuse_mixed_training_data(uri, name, versions, parameter):
    """``latest`` of a model whose versions were trained on different data (a MODEL_NAME two
    projects share) could be another project's package: refused, naming the versions."""
    groups = {}
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


def close_dead_runs(client, experiment_ids):
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


def local_folder(source):
    """A registry source as a local path (plain path or file: URI), else None."""
    if not source:
        return None
    parsed = urlparse(source)
    if parsed.scheme == "file":
        return unquote(parsed.path)
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
        return source
    return None


def attach_artifacts(run_id, paths, reporter=None):
    """Add files written after the worker ended (the HTML report QGIS renders) to run ``run_id``.

    The worker step ``attach_to_run``; a failure warns, never fails the algorithm.
    """
    reporter = reporter or Reporter()
    uri = tracking_uri()
    attached = 0
    if uri is None or not run_id:
        return {"attached": attached}
    try:
        client = client_for(uri)
        for path in paths:
            folder = ARTIFACT_FOLDERS.get(os.path.splitext(path)[1].lower())
            if folder and os.path.isfile(path):
                client.log_artifact(run_id, path, folder)
                attached += 1
    except PovmapCanceledError:
        raise
    except Exception as error:
        reporter.warning(
            f"Run history (MLflow at {uri}): could not store {', '.join(paths)} with run "
            f"{run_id}: {_short(error)}. The outputs are written all the same."
        )
    return {"attached": attached}


# --- one tracked step ----------------------------------------------------------------------------


class _TrackingReporter(Reporter):
    """Passes everything on to the worker's reporter; metrics also go to the run."""

    def __init__(self, inner, run):
        self._inner, self._run = inner, run

    def progress(self, percent):
        self._inner.progress(percent)

    def info(self, message):
        self._inner.info(message)

    def warning(self, message):
        self._inner.warning(message)

    def canceled(self):
        return self._inner.canceled()

    def metric(self, name, value, step=None):
        self._run.log_metric(name, value, step)

    def final_metrics(self, values):
        self._run.record_result(values)

    @contextlib.contextmanager
    def nested_run(self, name, params=None):
        with self._run.nested(name, params) as child:
            yield self if child is None else _TrackingReporter(self._inner, child)


class _Untracked:
    def __init__(self, reporter):
        self.reporter = reporter
        self.run_id = None

    def record_result(self, result):
        pass


@contextlib.contextmanager
def tracked_step(step, options, reporter, environ=None):
    """Record ``step`` run with ``options`` (a dataclass) as an MLflow run.

    Resolves a ``models:/`` ``model_path`` first (an input error when it
    cannot be). Yields an object with ``reporter`` (pass it to the step) and
    ``record_result(result)``; the run ends FINISHED, FAILED or KILLED.
    """
    environ = os.environ if environ is None else environ
    model_version = None
    if is_model_uri(getattr(options, "model_path", None)):
        uri = options.model_path
        options.model_path, model_version = resolve_model_uri(uri, "MODEL", environ)
        reporter.info(f"Model {uri}: version {model_version.version} at {options.model_path}")
        if not (model_version.tags or {}).get(DIGEST_TAG):
            reporter.warning(
                f"MODEL: {uri} was registered without {DIGEST_TAG} (by an earlier povmap-qgis): "
                "that the package at its path is the one registered cannot be checked."
            )
    location = tracking_uri(environ)
    if step not in TRACKED_STEPS or location is None:
        yield _Untracked(reporter)
        return
    run = StepRun(step, location, reporter, environ)
    run.start(options, model_version)
    try:
        yield run
    except PovmapCanceledError:
        run.end("KILLED")
        raise
    except BaseException:
        run.end("FAILED")
        raise
    run.end("FINISHED")


class _Guard:
    """What the runs of one step share: the first tracking failure warns and stops them all."""

    def __init__(self, uri, reporter):
        self.uri, self.reporter = uri, reporter
        self.failure = None  # the first error's text, once tracking stopped
        self.closing_failed = False  # a run could not be closed after it: do not wait again

    def call(self, what, action):
        if self.failure is not None:
            return None
        try:
            return action()
        except PovmapCanceledError:
            raise
        except Exception as error:
            self.failure = failure_text(error)
            hint = ""
            if isinstance(error, ModuleNotFoundError):
                hint = " (install it in the worker: pip install -r requirements.txt -c constraints.txt)"
            self.reporter.warning(
                f"Run history (MLflow at {self.uri}): could not {what}: {self.failure}{hint}. "
                "The step goes on without it."
            )
            return None


class StepRun:
    """One MLflow run; every call is guarded (the first failure warns, then tracking stops).

    A part of the step (a cross-validation fold) is a child StepRun made by
    :meth:`nested`, tagged ``mlflow.parentRunId`` as MLflow's own nested runs
    are, sharing the parent's guard.
    """

    def __init__(self, step, uri, reporter, environ, guard=None):
        self.step, self.uri, self.environ = step, uri, environ
        self._outer = reporter
        self._guard = guard or _Guard(uri, reporter)
        self.reporter = _TrackingReporter(reporter, self)
        self.client = None
        self.run_id = None
        self.options = None
        self.tags = {}
        self.experiment_id = None

    def _guarded(self, what, action):
        return self._guard.call(what, action)

    # life cycle

    def start(self, options, model_version=None):
        self.options = options
        self._guarded("start a run", lambda: self._start(options, model_version))

    def _start(self, options, model_version):
        client = client_for(self.uri, self.environ)
        experiment = self.environ.get(EXPERIMENT_VARIABLE) or DEFAULT_EXPERIMENT
        params = option_params(options)
        fingerprints = input_fingerprints(options)
        params.update({f"input.{key}": value for key, value in fingerprints.items()})
        tags = self._tags(fingerprints, model_version)
        run = client.create_run(
            experiment_id(client, self.uri, experiment),
            run_name=f"{self.step} {time.strftime('%Y-%m-%d %H:%M:%S')}",
            tags=tags,
        )
        self.client, self.run_id, self.tags = client, run.info.run_id, tags
        self.experiment_id = run.info.experiment_id
        self._log_params(params)
        try:
            closed = close_dead_runs(client, [self.experiment_id])
        except Exception as error:  # tidying others' runs must not stop this one's record
            closed = []
            self._outer.info(f"Run history: killed runs were not checked ({_short(error)}).")
        if closed:
            self._outer.info(
                f"Run history: {len(closed)} run(s) of processes that were killed marked KILLED."
            )

    def _log_params(self, params):
        from mlflow.entities import Param

        items = [Param(key, value) for key, value in sorted(params.items())]
        for start in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    @contextlib.contextmanager
    def nested(self, name, params=None):
        """A child run for one part of the step (``name``, e.g. ``fold 2``), or None untracked.

        It ends FINISHED, FAILED or KILLED with the block, like the step's run.
        """
        if self.client is None:
            yield None
            return
        child = StepRun(self.step, self.uri, self._outer, self.environ, self._guard)
        child.options = self.options
        self._guarded("start a nested run", lambda: child._start_nested(self, name, params))
        if child.client is None:
            yield None
            return
        try:
            yield child
        except PovmapCanceledError:
            child.end("KILLED")
            raise
        except BaseException:
            child.end("FAILED")
            raise
        child.end("FINISHED")

    def _start_nested(self, parent, name, params):
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        kind = str(name).split()[0] if str(name).split() else "part"
        tags = {key: value for key, value in parent.tags.items() if not key.startswith("mlflow.")}
        tags.update(
            {
                MLFLOW_PARENT_RUN_ID: parent.run_id,
                "mlflow.source.name": parent.tags.get("mlflow.source.name", ""),
                "povmap.step": f"{parent.step}.{metric_key(kind)}",
                "povmap.part": str(name),
            }
        )
        run = parent.client.create_run(
            parent.experiment_id, run_name=f"{parent.step} {name}", tags=tags
        )
        self.client, self.run_id, self.tags = parent.client, run.info.run_id, tags
        self.experiment_id = parent.experiment_id
        self._log_params(option_params(params or {}))

    def _tags(self, fingerprints, model_version):
        from ..version import plugin_version

        tags = {
            "povmap.step": self.step,
            "povmap.algorithm": self.environ.get(ALGORITHM_VARIABLE) or f"worker:{self.step}",
            "povmap.version": plugin_version(),
            "qgis.version": self.environ.get(QGIS_VERSION_VARIABLE) or "none",
            "povmap.data_fingerprint": _digest(sorted(fingerprints.items())),
            "mlflow.source.name": "povmap_qgis.worker",
            PID_TAG: str(os.getpid()),  # whose run it is: close_dead_runs
            HOST_TAG: socket.gethostname(),
        }
        tags.update({f"software.{name}": version for name, version in _software().items()})
        if model_version is not None:
            tags["povmap.model"] = f"models:/{model_version.name}/{model_version.version}"
            if model_version.run_id:  # from the registry, whose digest resolve_model_uri checked
                tags["povmap.training_run_id"] = str(model_version.run_id)
            return tags
        model_path = getattr(self.options, "model_path", None)
        sidecar = read_sidecar(model_path) if model_path else {}
        if sidecar.get("run_id"):
            # mlflow.json is not covered by the package's hash: anyone can edit it. Its run is
            # credited only when this run history registered that run with this package's digest.
            verified = self._sidecar_verified(sidecar, package_digest(model_path))
            key = "povmap.training_run_id" if verified else "povmap.training_run_id_unverified"
            tags[key] = str(sidecar["run_id"])
        return tags

    def _sidecar_verified(self, sidecar, digest):
        """Whether this registry holds the sidecar's model version, of its run, with ``digest``."""
        if not digest or not sidecar.get("registered_model") or not sidecar.get("version"):
            return False
        try:
            version = client_for(self.uri, self.environ).get_model_version(
                str(sidecar["registered_model"]), str(sidecar["version"])
            )
        except Exception:  # another registry, deleted version: not verified, not an error
            return False
        return (
            version.run_id == str(sidecar["run_id"])
            and (version.tags or {}).get(DIGEST_TAG) == digest
        )

    def log_metric(self, name, value, step=None):
        if self.client is None or not _is_number(value):
            return
        self._guarded(
            "record a metric",
            lambda: self.client.log_metric(
                self.run_id, metric_key(name), float(value), step=int(step or 0)
            ),
        )

    def record_result(self, result):
        """Final metrics, artifacts and (after train) the registered model version."""
        if self.client is None or not isinstance(result, dict):
            return
        self._guarded("record the metrics", lambda: self._log_metrics(result))
        self._guarded("store the artifacts", lambda: self._log_artifacts(result))
        self._guarded("store the ROC curves", lambda: self._log_roc(result))
        if self.step == "train":
            self._guarded("register the model", lambda: self._register(result))
        if self.step == "predict":
            self._guarded("record the drift check", lambda: self._drift(result))

    def end(self, status):
        if self.client is None:
            return
        if self._guard.failure is not None:
            self._close_incomplete(status)
            return
        self._guarded("record the device", self._log_device)
        self._guarded("close the run", lambda: self.client.set_terminated(self.run_id, status))
        if status == "FINISHED" and self._guard.failure is None:
            self._outer.info(f"Run history: run {self.run_id} recorded in {self.uri}")

    def _close_incomplete(self, status):
        """After a tracking failure (a locked store, a server gone): one quiet try to end the run,
        so that it is not left RUNNING, and to say it is incomplete. A store that is still locked
        fails the first call (after MLflow's wait) and nothing more is tried."""
        if self._guard.closing_failed:
            return
        try:
            self.client.set_terminated(self.run_id, status)
            self.client.set_tag(self.run_id, INCOMPLETE_TAG, self._guard.failure)
        except Exception:  # already warned once; the step's outcome does not depend on it
            self._guard.closing_failed = True

    def _log_device(self):
        """``device``: what TensorFlow computed on, when the step used it (train, predict...)."""
        from ..model.environment import tensorflow_device

        if self.step in DEVICE_STEPS:
            self._log_params({"device": tensorflow_device() or NO_DEVICE})

    # what is recorded

    def _log_metrics(self, result):
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        items = [Metric(metric_key(key), value, stamp, 0) for key, value in numeric_leaves(result)]
        for start in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[start : start + 1000])

    def _log_artifacts(self, result):
        for path, folder in artifact_files(self.options, result):
            self.client.log_artifact(self.run_id, path, folder)

    def _log_roc(self, result):
        """``roc/roc.json``: the result's ROC curves by model, for overlaying runs (povmap:runs)."""
        import tempfile

        curves = roc_curves_of(result)
        if not curves:
            return
        with tempfile.TemporaryDirectory(prefix="povmap-roc-") as folder:
            path = os.path.join(folder, ROC_ARTIFACT.rsplit("/", 1)[1])
            with open(path, "w", encoding="utf-8") as handle:
                json.dump({"format": "povmap-roc", "curves": curves}, handle)
            self.client.log_artifact(self.run_id, path, ROC_ARTIFACT.rsplit("/", 1)[0])

    def _register(self, result):
        from mlflow.exceptions import MlflowException

        package = os.path.abspath(str(result.get("output", "")).rstrip("/"))
        if not os.path.isdir(package):
            return
        fingerprint = result.get("training_fingerprint")
        name = self.environ.get(MODEL_NAME_VARIABLE) or default_model_name(package, fingerprint)
        try:
            self.client.create_registered_model(
                name, description="povmap-qgis poverty model packages (.povmodel)"
            )
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        tags = {"povmap.package": package}
        digest = package_digest(package)
        if digest:
            tags[DIGEST_TAG] = digest
        if fingerprint:
            tags[FINGERPRINT_TAG] = str(fingerprint)
        for model, values in (result.get("metrics") or {}).items():
            for key, value in (values or {}).items():
                if key in VERSION_TAG_METRICS and _is_number(value):
                    tags[f"holdout.{model}.{key}"] = f"{float(value):.4g}"
        version = self.client.create_model_version(
            name, source=package, run_id=self.run_id, tags=tags
        )
        self.client.set_tag(self.run_id, "povmap.registered_model", f"{name}/{version.version}")
        write_sidecar(
            package,
            {
                "run_id": self.run_id,
                "tracking_uri": self.uri,
                "registered_model": name,
                "version": int(version.version),
                "model_uri": f"models:/{name}/{version.version}",
                "manifest_sha256": digest,
            },
        )
        self.client.log_artifact(self.run_id, os.path.join(package, SIDECAR), "model")
        self._outer.info(f"Registered as models:/{name}/{version.version} (run {self.run_id})")

    def _drift(self, result):
        """PSI per input as ``drift/<input>``: the scores ``predict`` computed and warned about."""
        from . import drift

        model_path = getattr(self.options, "model_path", None)
        chips_path = getattr(self.options, "chips_path", None)
        if not model_path or not chips_path:
            return
        scores = result.get("drift")
        if isinstance(scores, dict) and scores:
            note = drift.sentence(scores)
        else:  # a result without scores: a sample of the chips, warned about here
            scores, note = drift.drift_scores(model_path, chips_path)
            for sentence in drift.warnings(scores):
                self._outer.warning(sentence)
        self.client.set_tag(self.run_id, "povmap.drift", note)
        for name, value in scores.items():
            self.client.log_metric(self.run_id, metric_key(f"drift/{name}"), value)


# --- what goes into a run -----------------------------------------------------------------------


def option_params(options):
    """{name: text} of the options dataclass (style files left out; long values cut)."""
    values = dataclasses.asdict(options) if dataclasses.is_dataclass(options) else dict(options)
    params = {}
    for key, value in values.items():
        if "style" in key:
            continue
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        params[metric_key(key)] = text[:6000]
    return params


def input_fingerprints(options):
    """{option name: fingerprint} of every existing input file or folder the options name."""
    values = dataclasses.asdict(options) if dataclasses.is_dataclass(options) else dict(options)
    found = {}
    for key, value in _string_leaves(values):
        leaf = key.rsplit(".", 1)[-1]
        if leaf.startswith("output") or leaf in OUTPUT_KEYS or "style" in key:
            continue
        if leaf.endswith("_folder") or not os.path.exists(value):
            continue
        fingerprint = fingerprint_of(value)
        if fingerprint:
            found[metric_key(key)] = fingerprint
    return found


def fingerprint_of(path):
    """sha256 of a file (or of a chip store's / model package's manifest); size and time of rasters."""
    if os.path.isdir(path):
        manifest = os.path.join(path, "manifest.json")
        return f"sha256:{sha256_of(manifest)}" if os.path.isfile(manifest) else None
    status = os.stat(path)
    if path.lower().endswith(RASTER_EXTENSIONS) or status.st_size > HASHED_FILE_LIMIT:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(status.st_mtime))
        return f"size={status.st_size};mtime={stamp}"
    return f"sha256:{sha256_of(path)}"


def numeric_leaves(value, prefix=""):
    """(dotted key, number) of every finite number in nested dicts (lists are left out)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from numeric_leaves(item, f"{prefix}.{key}" if prefix else str(key))
    elif _is_number(value):
        yield prefix, float(value)


def artifact_files(options, result):
    """(file, artifact folder) of the reports, metrics, figures and model manifests named."""
    values = dataclasses.asdict(options) if dataclasses.is_dataclass(options) else {}
    candidates = [path for _, path in _string_leaves(result)]
    candidates += [path for key, path in _string_leaves(values) if "style" not in key]
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


def roc_curves_of(result):
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


def default_model_name(package, fingerprint=None):
    """The registered model's name when Train's MODEL_NAME is empty: the package folder's
    name and the training data fingerprint (``model.povmodel`` trained on two surveys gives
    two models, ``model-3fa9c2d1e0b4`` and ``model-81c0…``; retrained on the same cells, a new
    version of the same one)."""
    stem = model_name_of(package)
    return f"{stem}-{fingerprint}" if fingerprint else stem


def model_name_of(package):
    stem = os.path.basename(package.rstrip("/"))
    return stem[: -len(".povmodel")] if stem.endswith(".povmodel") else stem


def metric_key(name):
    """A name MLflow accepts (letters, digits, _ - . / and spaces)."""
    return re.sub(r"[^0-9A-Za-z_\-. /]", "_", str(name))[:250]


def read_sidecar(package):
    try:
        with open(os.path.join(package, SIDECAR), encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError, TypeError):
        return {}


def write_sidecar(package, record):
    """``mlflow.json`` beside the manifest, written whole or not at all."""
    with atomic_output(os.path.join(package, SIDECAR)) as partial:
        with open(partial, "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=2, sort_keys=True)


def _string_leaves(value, prefix=""):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _string_leaves(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _string_leaves(item, f"{prefix}.{index}")
    elif isinstance(value, str) and value:
        yield prefix, value


def _is_number(value):
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    ) or (hasattr(value, "dtype") and getattr(value, "ndim", 1) == 0 and _is_number(value.item()))


def _digest(items):
    return hashlib.sha256(json.dumps(items).encode("utf-8")).hexdigest()


def _software():
    from importlib import metadata

    versions = {}
    for name in SOFTWARE:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def failure_text(error):
    """What went wrong with the store, in short; a locked SQLite database said as such."""
    chain, texts = error, []
    while chain is not None and len(texts) < 10:  # the error and its causes (SQLAlchemy, sqlite3)
        texts.append(str(chain))
        chain = chain.__cause__ or chain.__context__
    if any("database is locked" in text for text in texts):
        return f"{LOCKED} that holds a write transaction (sqlite3: database is locked)"
    return _short(error)


def _short(error):
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."
