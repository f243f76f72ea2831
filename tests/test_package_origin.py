"""Where a package came from (issue 24 item 2): a hash inside the file it protects proves
integrity, never origin, so the registry records the package's digest and a ``models:/`` load
checks it; the unhashed ``mlflow.json`` sidecar credits a training run only when this registry
confirms it. A real MLflow registry in a SQLite file, copies of the bundled package."""

import dataclasses
import json
import shutil

import pytest

from povmap_qgis.core.errors import PovmapInputError
from povmap_qgis.core.history import mlflow_store, tracking
from povmap_qgis.core.model import model_package
from povmap_qgis.core.progress import Reporter
from povmap_qgis.paths import bundled_model_path


@dataclasses.dataclass
class PredictLike:
    model_path: str


@pytest.fixture()
def registry(tmp_path):
    environ = {"POVMAP_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlruns.db'}"}
    package = tmp_path / "origin.povmodel"
    shutil.copytree(bundled_model_path(), package)
    client = mlflow_store.client_for(environ["POVMAP_MLFLOW_TRACKING_URI"], environ)
    experiment = mlflow_store.experiment_id(client, environ["POVMAP_MLFLOW_TRACKING_URI"], "povmap")
    run = client.create_run(experiment)
    client.create_registered_model("origin")
    digest = mlflow_store.package_digest(str(package))
    client.create_model_version(
        "origin",
        source=str(package),
        run_id=run.info.run_id,
        tags={"povmap.package": str(package), mlflow_store.DIGEST_TAG: digest},
    )
    return {"environ": environ, "package": package, "client": client, "run": run.info.run_id}


def rewrite(package, change):
    """Edit the manifest and recompute its hash: a package that verifies on its own."""
    path = package / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    change(manifest)
    manifest["manifest_sha256"] = model_package.manifest_digest(manifest)
    path.write_text(json.dumps(manifest), encoding="utf-8")


def test_a_registered_package_resolves_and_its_digest_is_its_manifest_hash(registry):
    folder, version = mlflow_store.resolve_model_uri(
        "models:/origin/1", environ=registry["environ"]
    )
    assert folder == str(registry["package"])
    manifest = model_package.read_package(folder)
    assert version.tags[mlflow_store.DIGEST_TAG] == manifest["manifest_sha256"]


def test_a_package_edited_and_rehashed_after_registration_is_refused_on_models_load(registry):
    rewrite(registry["package"], lambda manifest: manifest.update(decision_threshold=0.01))
    model_package.read_package(str(registry["package"]))  # the file alone cannot tell
    with pytest.raises(PovmapInputError) as caught:
        mlflow_store.resolve_model_uri("models:/origin/1", environ=registry["environ"])
    assert caught.value.parameter == "MODEL"
    assert "replaced or edited after it was registered" in str(caught.value)


def sidecar_tags(registry, sidecar):
    (registry["package"] / mlflow_store.SIDECAR).write_text(json.dumps(sidecar), encoding="utf-8")
    run = tracking.StepRun(
        "predict",
        registry["environ"]["POVMAP_MLFLOW_TRACKING_URI"],
        Reporter(),
        registry["environ"],
    )
    run.options = PredictLike(str(registry["package"]))
    return run._tags({}, None)


def test_the_sidecar_credits_a_run_only_when_the_registry_confirms_it(registry):
    honest = {"run_id": registry["run"], "registered_model": "origin", "version": 1}
    assert sidecar_tags(registry, honest)["povmap.training_run_id"] == registry["run"]
    forged = dict(honest, run_id="0123456789abcdef0123456789abcdef")
    tags = sidecar_tags(registry, forged)
    assert "povmap.training_run_id" not in tags
    assert tags["povmap.training_run_id_unverified"] == forged["run_id"]
    # The honest sidecar on a package edited since registration is not credited either.
    rewrite(registry["package"], lambda manifest: manifest.update(decision_threshold=0.02))
    tags = sidecar_tags(registry, honest)
    assert "povmap.training_run_id" not in tags and "povmap.training_run_id_unverified" in tags
