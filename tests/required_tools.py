"""Tools some tests need (Chromium, a Java runtime, PySpark): a test without one is skipped
on a developer's machine, and fails under CI (``CI`` set, e.g. ``CI=true``), where
scripts/setup installs everything and a silent skip would hide an untested feature."""

import os
import shutil

import pytest

CHROMIUM = shutil.which("chromium")


def under_ci():
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing(what, allow_module_level=False):
    """Skip (developer machine) or fail (CI) a test that needs ``what``."""
    if under_ci():
        pytest.fail(f"CI must run this test, but {what}", pytrace=False)
    pytest.skip(what, allow_module_level=allow_module_level)


def need_chromium():
    if CHROMIUM is None:
        missing("Debian's chromium is not installed (scripts/setup installs it)")


def need_spark():
    """PySpark and a Java runtime (scripts/setup installs both unless --no-spark)."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        missing("PySpark is not installed (scripts/setup --no-spark)", allow_module_level=True)
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        missing("no Java runtime (scripts/setup --no-spark)", allow_module_level=True)


def xvfb_run(screen):
    """``xvfb-run`` with a free display number of its own: the search starts at 99, and 20 further
    for each parallel test process (pytest -n worker gwK), so that two QGIS desktops started at
    the same moment never pick the same display (``-a`` alone checks, then takes: a race)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    first = 99 + 20 * int(worker.removeprefix("gw") or 0)
    return ["xvfb-run", "-a", "-n", str(first), "-s", f"-screen 0 {screen}"]
