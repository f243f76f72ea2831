#!/usr/bin/env python3
"""Install the built plugin into a QGIS profile and enable it (for development and tests).

Also records the worker Python (the venv made by scripts/setup) inside the
installed plugin, so the Processing algorithms find their environment in the
desktop and in qgis_process without further configuration.
"""

import argparse
import configparser
import json
import os
import shutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "povmap_qgis"


def default_profile_dir():
    config_root = os.environ.get("QGIS_CUSTOM_CONFIG_PATH") or os.path.expanduser(
        "~/.local/share/QGIS/QGIS3"
    )
    return os.path.join(config_root, "profiles", "default")


def install(build_dir, profile_dir, worker_python):
    source = os.path.join(build_dir, PACKAGE)
    if not os.path.isfile(os.path.join(source, "metadata.txt")):
        raise SystemExit(f"{source} is not a built plugin; run scripts/build_plugin.py first.")
    plugins = os.path.join(profile_dir, "python", "plugins")
    target = os.path.join(plugins, PACKAGE)
    os.makedirs(plugins, exist_ok=True)
    # Copy beside, then swap: a QGIS starting meanwhile never sees half a plugin.
    staging = os.path.join(plugins, f".{PACKAGE}.installing-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    with open(os.path.join(staging, "worker_env.json"), "w", encoding="utf-8") as handle:
        json.dump({"python": worker_python}, handle, indent=2)
    old = os.path.join(plugins, f".{PACKAGE}.old-{os.getpid()}")
    if os.path.islink(target) or os.path.isfile(target):
        os.remove(target)
    elif os.path.isdir(target):
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)
    _enable(profile_dir)
    return target


def _enable(profile_dir):
    """Mark the plugin enabled in the profile's QGIS3.ini (qgis_process loads enabled plugins)."""
    ini_path = os.path.join(profile_dir, "QGIS", "QGIS3.ini")
    os.makedirs(os.path.dirname(ini_path), exist_ok=True)
    settings = configparser.RawConfigParser()
    settings.optionxform = str
    if os.path.exists(ini_path):
        settings.read(ini_path, encoding="utf-8")
    if not settings.has_section("PythonPlugins"):
        settings.add_section("PythonPlugins")
    settings.set("PythonPlugins", PACKAGE, "true")
    with open(ini_path, "w", encoding="utf-8") as handle:
        settings.write(handle, space_around_delimiters=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    parser.add_argument("--profile-dir", default=default_profile_dir())
    parser.add_argument("--worker-python", default=os.path.join(ROOT, ".venv", "bin", "python"))
    arguments = parser.parse_args()
    arguments.worker_python = os.path.abspath(
        arguments.worker_python
    )  # QGIS starts the worker from any directory
    target = install(arguments.build_dir, arguments.profile_dir, arguments.worker_python)
    print(f"Installed {target} (worker Python: {arguments.worker_python})")


if __name__ == "__main__":
    main()
