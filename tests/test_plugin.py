"""The built plugin: metadata, package contents, loading in QGIS, light imports."""

import configparser
import json
import os
import subprocess
import zipfile

from conftest import BUILD_DIR, INSTALLED_PLUGIN, ROOT

import povmap_qgis


def test_tests_import_the_built_plugin():
    assert os.path.dirname(povmap_qgis.__file__) == os.path.join(BUILD_DIR, "povmap_qgis")


def test_metadata_is_complete_for_qgis_and_qgis_process():
    metadata = configparser.ConfigParser()
    metadata.read(os.path.join(BUILD_DIR, "povmap_qgis", "metadata.txt"), encoding="utf-8")
    general = metadata["general"]
    assert general["qgisMinimumVersion"] == "3.22"
    assert general["hasProcessingProvider"] == "yes"
    for key in (
        "name",
        "description",
        "about",
        "version",
        "author",
        "email",
        "repository",
        "tracker",
        "tags",
        "icon",
    ):
        assert general[key].strip(), key
    assert os.path.isfile(os.path.join(BUILD_DIR, "povmap_qgis", general["icon"]))


def test_build_carries_top_level_files_into_plugin_folder_and_zip():
    plugin = os.path.join(BUILD_DIR, "povmap_qgis")
    for relative in (
        "metadata.txt",
        "resources/icon.svg",
        "resources/styles/training_grid.qml",
        "models",
        "LICENSE",
        "core/grid/training_grid.py",
    ):
        assert os.path.exists(os.path.join(plugin, relative)), relative
    version = configparser.ConfigParser()
    version.read(os.path.join(plugin, "metadata.txt"))
    archive = os.path.join(ROOT, "dist", f"povmap_qgis-{version['general']['version']}.zip")
    with zipfile.ZipFile(archive) as bundle:
        names = bundle.namelist()
    assert "povmap_qgis/metadata.txt" in names and "povmap_qgis/__init__.py" in names
    assert not [name for name in names if "__pycache__" in name or name.endswith("worker_env.json")]


def test_loading_the_plugin_imports_nothing_heavy():
    """QGIS's own Python loads the plugin and provider without TensorFlow, rasterio, geopandas..."""
    script = (
        f"import sys; sys.path.insert(0, {BUILD_DIR!r})\n"
        "from qgis.core import QgsApplication\n"
        "app = QgsApplication([], False); app.initQgis()\n"
        "import povmap_qgis\n"
        "plugin = povmap_qgis.classFactory(None)\n"
        "from povmap_qgis.processing.provider import PovmapProvider\n"
        "provider = PovmapProvider(); provider.loadAlgorithms()\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'rasterio', 'geopandas', 'pyogrio', 'shapely', 'pandas', 'sklearn', 'pyproj', 'mlflow', 'sqlalchemy', 'pyspark', 'py4j') if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    completed = subprocess.run(
        ["/usr/bin/python3", "-c", script],
        capture_output=True,
        text=True,
        env=dict(os.environ, QT_QPA_PLATFORM="offscreen"),
        timeout=120,
    )
    assert "HEAVY=\n" in completed.stdout, completed.stdout + completed.stderr


def test_plugin_registers_and_removes_its_provider(qgis_app, qgis_iface, qgis_processing):
    from qgis.core import QgsApplication

    registry = QgsApplication.processingRegistry()
    existing = registry.providerById("povmap")
    if existing is not None:
        registry.removeProvider(existing)
    plugin = povmap_qgis.classFactory(qgis_iface)
    plugin.initGui()
    provider = registry.providerById("povmap")
    assert provider is not None and provider.name() == "Poverty mapping"
    assert not provider.icon().isNull()
    assert {algorithm.id() for algorithm in provider.algorithms()} >= {
        "povmap:buildtraininggrid",
        "povmap:buildpredictiongrid",
    }
    plugin.unload()
    assert registry.providerById("povmap") is None


def test_a_too_old_python_gets_a_message_not_a_traceback(
    qgis_app, qgis_iface, qgis_processing, monkeypatch
):
    """QGIS builds whose Python is older than the plugin's modules need (3.22 on Windows runs
    3.9) load a stand-in that logs why and registers no provider, instead of failing at import."""
    import sys

    from qgis.core import Qgis, QgsApplication

    registry = QgsApplication.processingRegistry()
    existing = registry.providerById("povmap")
    if existing is not None:
        registry.removeProvider(existing)
    logged = []

    def collect(message, tag, level):
        logged.append((message, tag, level))

    QgsApplication.messageLog().messageReceived.connect(collect)
    monkeypatch.setattr(sys, "version_info", (3, 9, 18, "final", 0))
    try:
        plugin = povmap_qgis.classFactory(qgis_iface)
        plugin.initGui()
        plugin.unload()
    finally:
        monkeypatch.undo()
        QgsApplication.messageLog().messageReceived.disconnect(collect)
    assert registry.providerById("povmap") is None
    (message,) = [entry for entry in logged if entry[1] == "povmap-qgis"]
    assert message[2] == Qgis.Critical
    assert "Python 3.11 or newer" in message[0] and "runs Python 3.9.18" in message[0]


def test_every_parameter_has_help_text_and_algorithms_are_grouped(povmap_provider):
    groups = {"buildtraininggrid": "grids", "buildpredictiongrid": "grids", "samplechips": "chips"}
    for algorithm in povmap_provider.algorithms():
        assert (
            algorithm.groupId() == groups.get(algorithm.name(), algorithm.groupId())
            and algorithm.group()
        )
        assert "<dl>" in algorithm.shortHelpString()
        for definition in algorithm.parameterDefinitions():
            assert len(definition.help()) > 20, f"{algorithm.id()} {definition.name()}"


def test_each_algorithms_help_module_holds_its_summary_and_its_parameters_help_only(
    povmap_provider,
):
    """processing/help/<algorithm id>.py: SUMMARY and one text per parameter id, none left over
    for a parameter that is gone or renamed (its help would silently go unused)."""
    import importlib

    for algorithm in povmap_provider.algorithms():
        module = importlib.import_module(f"povmap_qgis.processing.help.{algorithm.name()}")
        texts = {
            name
            for name, value in vars(module).items()
            if name.isupper() and isinstance(value, str)
        }
        parameters = {definition.name() for definition in algorithm.parameterDefinitions()}
        assert texts == {"SUMMARY", *parameters}, algorithm.name()


def test_every_algorithms_help_button_opens_its_page_in_the_repository(povmap_provider):
    """helpUrl is the algorithm's page under docs/algorithms/ on the repository's main branch."""
    from povmap_qgis.processing.base import REPOSITORY

    prefix = f"{REPOSITORY}/blob/main/"
    for algorithm in povmap_provider.algorithms():
        url = algorithm.helpUrl()
        assert url == f"{prefix}docs/algorithms/{algorithm.name()}.md", url
        assert os.path.isfile(os.path.join(ROOT, url[len(prefix) :])), url


def test_worker_python_setting_is_offered(povmap_provider):
    from processing.core.ProcessingConfig import ProcessingConfig

    assert "POVMAP_WORKER_PYTHON" in ProcessingConfig.settings


def test_installed_plugin_is_the_build_and_records_its_worker_python():
    assert os.path.isfile(os.path.join(INSTALLED_PLUGIN, "metadata.txt")), (
        "run scripts/setup (it installs the plugin)"
    )
    for relative in (
        "metadata.txt",
        "core/grid/training_grid.py",
        "processing/base.py",
        "resources/styles/training_grid.qml",
    ):
        with (
            open(os.path.join(INSTALLED_PLUGIN, relative), "rb") as installed,
            open(os.path.join(BUILD_DIR, "povmap_qgis", relative), "rb") as built,
        ):
            assert installed.read() == built.read(), (
                f"{relative}: the installed plugin is not the build; run scripts/setup"
            )
    with open(os.path.join(INSTALLED_PLUGIN, "worker_env.json"), encoding="utf-8") as handle:
        python = json.load(handle)["python"]
    assert os.path.isfile(python) and os.access(python, os.X_OK)


def test_the_build_under_test_is_the_source_tree():
    """conftest rebuilds when any copied file changed: the digest of the build is the source's."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "build_plugin", os.path.join(ROOT, "scripts", "build_plugin.py")
    )
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    assert builder.built_digest(BUILD_DIR) == builder.source_digest()
    with open(os.path.join(INSTALLED_PLUGIN, builder.DIGEST_FILE), encoding="utf-8") as handle:
        assert handle.read().strip() == builder.source_digest()


def test_tensorflow_and_keras_are_imported_only_in_core_model():
    """The layout rule of CONTRIBUTING.md: one package owns the heavy ML imports."""
    import ast

    package = os.path.join(ROOT, "povmap_qgis")
    offenders = []
    for folder, _, files in os.walk(package):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            with open(path, encoding="utf-8") as handle:
                tree = ast.parse(handle.read())
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level:
                    modules = [node.module or ""]
                else:
                    continue
                if any(m.split(".")[0] in ("tensorflow", "keras") for m in modules):
                    offenders.append(os.path.relpath(path, package))
    assert offenders, "the walk found no TensorFlow import at all: the check is not looking"
    assert {os.path.dirname(path) for path in offenders} == {os.path.join("core", "model")}, (
        offenders
    )


def test_every_import_of_the_plugin_package_resolves_to_a_module():
    """Function-level imports run only on their code path; a moved or misspelt module must not
    wait for that path to fail (mypy skips them as missing imports)."""
    import ast

    source = os.path.join(ROOT, "povmap_qgis")
    unresolved, checked = [], 0
    for folder, _, files in os.walk(source):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            package = os.path.relpath(folder, ROOT).split(os.sep)
            with open(path, encoding="utf-8") as handle:
                tree = ast.parse(handle.read())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.level:
                    base = package[: len(package) - node.level + 1]
                    module = [*base, *(node.module.split(".") if node.module else [])]
                    candidates = [module] + [[*module, alias.name] for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "povmap_qgis"
                ):
                    module = node.module.split(".")
                    candidates = [module] + [[*module, alias.name] for alias in node.names]
                else:
                    continue
                checked += 1
                module_path = os.path.join(ROOT, *candidates[0])
                if not (
                    os.path.isfile(module_path + ".py")
                    or os.path.isfile(os.path.join(module_path, "__init__.py"))
                ):
                    unresolved.append(f"{os.path.relpath(path, ROOT)}:{node.lineno}")
    assert checked > 100 and not unresolved, unresolved
