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
history. MLflow is imported in this folder only, and only in the worker process.

The store, its client and the registry's ``models:/`` references: ``mlflow_store.py``;
what a run holds (params, fingerprints, metrics, artifacts): ``run_contents.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from ..errors import PovmapCanceledError
from ..progress import Reporter
from .mlflow_store import (
    DIGEST_TAG,
    FINGERPRINT_TAG,
    HOST_TAG,
    INCOMPLETE_TAG,
    PID_TAG,
    SIDECAR,
    client_for,
    close_dead_runs,
    default_model_name,
    experiment_id,
    failure_text,
    is_model_uri,
    package_digest,
    read_sidecar,
    resolve_model_uri,
    short_text,
    tracking_uri,
    write_sidecar,
)
from .run_contents import (
    ARTIFACT_FOLDERS,
    ROC_ARTIFACT,
    artifact_files,
    data_digest,
    input_fingerprints,
    is_number,
    metric_key,
    numeric_leaves,
    option_params,
    roc_curves_of,
    software_versions,
)

TRACKED_STEPS = frozenset({"train", "predict", "evaluate", "crossvalidate", "target"})
ALGORITHM_VARIABLE = "POVMAP_ALGORITHM"
QGIS_VERSION_VARIABLE = "POVMAP_QGIS_VERSION"
MODEL_NAME_VARIABLE = "POVMAP_MODEL_NAME"
EXPERIMENT_VARIABLE = "POVMAP_MLFLOW_EXPERIMENT"
DEFAULT_EXPERIMENT = "povmap"
DEVICE_STEPS = frozenset({"train", "crossvalidate", "predict"})  # steps that run TensorFlow
NO_DEVICE = "none: TensorFlow did not run in the worker process (e.g. ENGINE=spark)"
VERSION_TAG_METRICS = ("n", "recall", "precision", "accuracy", "auc", "brier", "ece")


def attach_artifacts(
    run_id: str, paths: Iterable[str], reporter: Reporter | None = None
) -> dict[str, Any]:
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
            f"{run_id}: {short_text(error)}. The outputs are written all the same."
        )
    return {"attached": attached}


# --- one tracked step ----------------------------------------------------------------------------


class _TrackingReporter(Reporter):
    """Passes everything on to the worker's reporter; metrics also go to the run."""

    def __init__(self, inner: Reporter, run: StepRun) -> None:
        self._inner, self._run = inner, run

    def progress(self, percent: float) -> None:
        self._inner.progress(percent)

    def info(self, message: str) -> None:
        self._inner.info(message)

    def warning(self, message: str) -> None:
        self._inner.warning(message)

    def canceled(self) -> bool:
        return self._inner.canceled()

    def metric(self, name: str, value: float, step: int | None = None) -> None:
        self._run.log_metric(name, value, step)

    def final_metrics(self, values: Mapping[str, Any]) -> None:
        self._run.record_result(values)

    @contextlib.contextmanager
    def nested_run(self, name: str, params: Mapping[str, Any] | None = None) -> Iterator[Reporter]:
        with self._run.nested(name, params) as child:
            yield self if child is None else _TrackingReporter(self._inner, child)


class _Untracked:
    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self.run_id = None

    def record_result(self, result: Mapping[str, Any]) -> None:
        pass


@contextlib.contextmanager
def tracked_step(
    step: str, options: Any, reporter: Reporter, environ: Mapping[str, str] | None = None
) -> Iterator[StepRun | _Untracked]:
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

    def __init__(self, uri: str, reporter: Reporter) -> None:
        self.uri, self.reporter = uri, reporter
        self.failure: str | None = None  # the first error's text, once tracking stopped
        self.closing_failed = False  # a run could not be closed after it: do not wait again

    def call(self, what: str, action: Callable[[], Any]) -> Any:
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

    def __init__(
        self,
        step: str,
        uri: str,
        reporter: Reporter,
        environ: Mapping[str, str],
        guard: _Guard | None = None,
    ) -> None:
        self.step, self.uri, self.environ = step, uri, environ
        self._outer = reporter
        self._guard = guard or _Guard(uri, reporter)
        self.reporter = _TrackingReporter(reporter, self)
        self.client: Any = None  # an MlflowClient once the run started
        self.run_id: str | None = None
        self.options: Any = None
        self.tags: dict[str, str] = {}
        self.experiment_id: Any = None

    def _guarded(self, what: str, action: Callable[[], Any]) -> Any:
        return self._guard.call(what, action)

    # life cycle

    def start(self, options: Any, model_version: Any = None) -> None:
        self.options = options
        self._guarded("start a run", lambda: self._start(options, model_version))

    def _start(self, options: Any, model_version: Any) -> None:
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
            self._outer.info(f"Run history: killed runs were not checked ({short_text(error)}).")
        if closed:
            self._outer.info(
                f"Run history: {len(closed)} run(s) of processes that were killed marked KILLED."
            )

    def _log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(key, value) for key, value in sorted(params.items())]
        for start in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    @contextlib.contextmanager
    def nested(
        self, name: str, params: Mapping[str, Any] | None = None
    ) -> Iterator[StepRun | None]:
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

    def _start_nested(self, parent: StepRun, name: str, params: Mapping[str, Any] | None) -> None:
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        kind = str(name).split()[0] if str(name).split() else "part"
        tags = {key: value for key, value in parent.tags.items() if not key.startswith("mlflow.")}
        tags.update(
            {
                MLFLOW_PARENT_RUN_ID: parent.run_id,  # type: ignore[dict-item]  # started
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

    def _tags(self, fingerprints: Mapping[str, str], model_version: Any) -> dict[str, str]:
        from ..version import plugin_version

        tags = {
            "povmap.step": self.step,
            "povmap.algorithm": self.environ.get(ALGORITHM_VARIABLE) or f"worker:{self.step}",
            "povmap.version": plugin_version(),
            "qgis.version": self.environ.get(QGIS_VERSION_VARIABLE) or "none",
            "povmap.data_fingerprint": data_digest(sorted(fingerprints.items())),
            "mlflow.source.name": "povmap_qgis.worker",
            PID_TAG: str(os.getpid()),  # whose run it is: close_dead_runs
            HOST_TAG: socket.gethostname(),
        }
        tags.update({f"software.{name}": version for name, version in software_versions().items()})
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
            verified = self._sidecar_verified(
                sidecar,
                package_digest(model_path),  # type: ignore[arg-type]  # a sidecar: a path
            )
            key = "povmap.training_run_id" if verified else "povmap.training_run_id_unverified"
            tags[key] = str(sidecar["run_id"])
        return tags

    def _sidecar_verified(self, sidecar: Mapping[str, Any], digest: str | None) -> bool:
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

    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        if self.client is None or not is_number(value):
            return
        self._guarded(
            "record a metric",
            lambda: self.client.log_metric(
                self.run_id, metric_key(name), float(value), step=int(step or 0)
            ),
        )

    def record_result(self, result: Mapping[str, Any]) -> None:
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

    def end(self, status: str) -> None:
        if self.client is None:
            return
        if self._guard.failure is not None:
            self._close_incomplete(status)
            return
        self._guarded("record the device", self._log_device)
        self._guarded("close the run", lambda: self.client.set_terminated(self.run_id, status))
        if status == "FINISHED" and self._guard.failure is None:
            self._outer.info(f"Run history: run {self.run_id} recorded in {self.uri}")

    def _close_incomplete(self, status: str) -> None:
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

    def _log_device(self) -> None:
        """``device``: what TensorFlow computed on, when the step used it (train, predict...)."""
        from ..model.environment import tensorflow_device

        if self.step in DEVICE_STEPS:
            self._log_params({"device": tensorflow_device() or NO_DEVICE})

    # what is recorded

    def _log_metrics(self, result: Mapping[str, Any]) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        items = [Metric(metric_key(key), value, stamp, 0) for key, value in numeric_leaves(result)]
        for start in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[start : start + 1000])

    def _log_artifacts(self, result: Mapping[str, Any]) -> None:
        for path, folder in artifact_files(self.options, result):
            self.client.log_artifact(self.run_id, path, folder)

    def _log_roc(self, result: Mapping[str, Any]) -> None:
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

    def _register(self, result: Mapping[str, Any]) -> None:
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
                if key in VERSION_TAG_METRICS and is_number(value):
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

    def _drift(self, result: Mapping[str, Any]) -> None:
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
