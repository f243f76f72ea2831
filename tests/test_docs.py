"""The documentation in the repository: links that resolve, no citation of a missing document."""

import os
import re
import subprocess

from conftest import ROOT

LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~)")


def _tracked(*patterns):
    listed = subprocess.run(
        ["git", "ls-files", "--", *patterns], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return [os.path.join(ROOT, path) for path in listed.stdout.split()]


def _markdown_files():
    return [
        path
        for path in _tracked("*.md")
        if os.path.isfile(path) and not os.path.relpath(path, ROOT).startswith(("build", "output"))
    ]


def _anchor(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _headings_and_links(path):
    headings, links, in_fence = set(), [], False
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if FENCE.match(line):
                in_fence = not in_fence
                continue
            if in_fence:
                continue
            if line.startswith("#"):
                headings.add(_anchor(line.lstrip("#")))
            links.extend((number, target) for target in LINK.findall(line))
    return headings, links


def test_every_relative_link_in_the_documentation_resolves_to_a_file_and_heading():
    files = _markdown_files()
    assert os.path.join(ROOT, "README.md") in files and len(files) > 10
    headings = {path: _headings_and_links(path)[0] for path in files}
    broken = []
    for path in files:
        for number, target in _headings_and_links(path)[1]:
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            resolved = (
                os.path.normpath(os.path.join(os.path.dirname(path), file_part))
                if file_part
                else path
            )
            where = f"{os.path.relpath(path, ROOT)}:{number}: {target}"
            if not os.path.exists(resolved):
                broken.append(f"{where} (no such file)")
            elif anchor and anchor not in headings.get(resolved, set()):
                broken.append(f"{where} (no such heading)")
    assert not broken, "\n".join(broken)


def test_no_file_cites_a_document_the_repository_does_not_contain():
    """Every Markdown file named in code, scripts, tests or documentation is a file of the repository."""
    documents = {os.path.basename(path) for path in _tracked("*.md")}
    cited = re.compile(r"\b([A-Za-z][\w-]*\.md)\b")
    missing = []
    for path in _tracked("*.py", "*.md", "*.txt", "*.toml", "scripts/*", ".ci/*"):
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, 1):
                missing.extend(
                    f"{os.path.relpath(path, ROOT)}:{number}: {name}"
                    for name in cited.findall(line)
                    if name not in documents
                )
    assert not missing, "\n".join(missing)


def test_the_readme_is_a_front_page_with_the_two_commands_first():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    assert len(readme.splitlines()) < 250
    first_block = readme.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert [line.split()[0] for line in first_block] == ["scripts/demo", "scripts/test"]
