"""The algorithms' pages, docs/algorithms/<id>.md, list what the algorithms really take and give."""

import importlib.util
import os
import re

from conftest import ROOT

COMMAND = ".venv/bin/python scripts/make_algorithm_docs.py"


def _generator():
    spec = importlib.util.spec_from_file_location(
        "make_algorithm_docs", os.path.join(ROOT, "scripts", "make_algorithm_docs.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_page_holds_the_parameters_section_the_generator_writes(povmap_provider):
    stale = _generator().pages_out_of_date(povmap_provider.algorithms())
    pages = [os.path.relpath(path, ROOT) for path, _ in stale]
    assert not pages, (
        f"{', '.join(pages)} differ from the algorithms' parameters, outputs or help "
        f"(povmap_qgis/processing/help/): run {COMMAND} and commit the pages"
    )


def test_every_algorithm_has_a_page_and_every_page_an_algorithm(povmap_provider):
    pages = {name[: -len(".md")] for name in os.listdir(os.path.join(ROOT, "docs", "algorithms"))}
    assert pages == {algorithm.name() for algorithm in povmap_provider.algorithms()}


def test_each_page_lists_the_dialog_parameters_in_order_with_their_labels(povmap_provider):
    """Read back from the files, checked against QGIS's own definitions (not the generator)."""
    for algorithm in povmap_provider.algorithms():
        with open(os.path.join(ROOT, "docs", "algorithms", f"{algorithm.name()}.md")) as handle:
            page = handle.read()
        listed = re.findall(r"^- `(\w+)` — \*\*(.+?)\*\*(?: \((.*)\)(?:<br>)?|: .*)$", page, re.M)
        definitions = algorithm.parameterDefinitions()
        destinations = {d.name() for d in definitions if d.isDestination()}
        others = [o for o in algorithm.outputDefinitions() if o.name() not in destinations]
        described = definitions + others
        assert [name for name, _, _ in listed] == [d.name() for d in described], algorithm.name()
        for index, (name, label, notes) in enumerate(listed):
            definition = described[index]
            assert label.replace("\\*", "*").replace("&lt;", "<") == definition.description()
            if index >= len(definitions):
                continue
            flags = definition.flags()
            advanced = bool(flags & definition.Flag.FlagAdvanced)
            optional = bool(flags & definition.Flag.FlagOptional)
            assert ("advanced" in notes.split("; ")) == advanced, (algorithm.name(), name)
            assert ("optional" in notes.split("; ")) == optional, (algorithm.name(), name)


def test_the_generated_section_replaces_only_itself_and_is_added_to_a_page_without_one(
    povmap_provider,
):
    generator = _generator()
    algorithm = povmap_provider.algorithm("buildtraininggrid")
    section = generator.parameters_section(algorithm)
    assert (
        "`MIN_OBS` — **Minimum households per cell (privacy)** (whole number ≥ 1; default `3`)"
        in (section)
    )
    assert "`HOUSEHOLD_FIELD` — **Household id field (privacy)** (field of `INPUT`; optional; " in (
        section
    )
    old = f"# page\nprose before\n\n{generator.BEGIN.format(algorithm_id='x')}\nstale\n{generator.END}\n\nprose after\n"
    updated = generator.updated_page(old, algorithm)
    assert updated == f"# page\nprose before\n\n{section}\n\nprose after\n"
    assert generator.updated_page("# page\nprose\n", algorithm) == f"# page\nprose\n\n{section}\n"
