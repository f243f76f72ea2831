"""The plugin's modules import each other in one direction: no import cycles, not even through
an import inside a function (docs/style.md: engines above the steps they run, shared code below
its users)."""

import ast
import os

from conftest import ROOT

PACKAGE = "povmap_qgis"


def _modules():
    """{dotted module name: source path} of every module of the package in the source tree."""
    modules = {}
    for folder, _, files in os.walk(os.path.join(ROOT, PACKAGE)):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                modules[".".join(parts)] = path
    return modules


def _imported(module, path, modules):
    """The package's modules that ``module`` imports anywhere in its source (functions too).

    Imports under ``if TYPE_CHECKING:`` are left out: they name types for annotations and never
    run (a step's helper module may annotate with the step's options dataclass)."""
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), path)
    package = module.split(".") if path.endswith("__init__.py") else module.split(".")[:-1]
    type_only = {
        id(child)
        for node in ast.walk(tree)
        if isinstance(node, ast.If)
        and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
        for statement in node.body
        for child in ast.walk(statement)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                child = f"{target}.{alias.name}"
                found.add(child if child in modules else target)
    return {name for name in found if name in modules and name != module}


def import_cycles(graph):
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def _graph():
    modules = _modules()
    return {module: _imported(module, path, modules) for module, path in modules.items()}


def test_the_import_graph_is_read_from_every_module_including_imports_inside_functions():
    graph = _graph()
    assert len(graph) > 70
    # an import at module level, and one inside a function (evaluate's report module)
    assert "povmap_qgis.core.errors" in graph["povmap_qgis.core.chips.sampling"]
    assert (
        "povmap_qgis.core.report.figures" in graph["povmap_qgis.core.validation.evaluation_report"]
    )
    # an import for annotations only (under TYPE_CHECKING) is no edge: it never runs
    assert (
        "povmap_qgis.core.decision.targeting"
        not in graph["povmap_qgis.core.decision.targeting_outputs"]
    )
    assert (
        "povmap_qgis.core.decision.targeting_outputs"
        in graph["povmap_qgis.core.decision.targeting"]
    )
    # the cycle finder finds a cycle hidden in a function when there is one
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_of_the_plugin_imports_itself_back_through_others():
    cycles = import_cycles(_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(group) for group in cycles)
