#!/usr/bin/env python3
"""Build the installable plugin: build/povmap_qgis/ and dist/povmap_qgis-VERSION.zip.

QGIS reads metadata.txt, the icon, styles and bundled models from inside the
plugin folder, so the top-level files are copied in beside the package.
"""

import argparse
import configparser
import os
import shutil
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "povmap_qgis"
TOP_LEVEL = ["metadata.txt", "resources", "models", "README.md", "LICENSE"]
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", "worker_env.json")


def plugin_version():
    metadata = configparser.ConfigParser()
    metadata.read(os.path.join(ROOT, "metadata.txt"), encoding="utf-8")
    return metadata["general"]["version"]


def build(build_dir, dist_dir):
    target = os.path.join(build_dir, PACKAGE)
    if os.path.exists(target):
        shutil.rmtree(target)
    shutil.copytree(os.path.join(ROOT, PACKAGE), target, ignore=IGNORED)
    for name in TOP_LEVEL:
        source = os.path.join(ROOT, name)
        if os.path.isdir(source):
            shutil.copytree(source, os.path.join(target, name), ignore=IGNORED)
        elif os.path.isfile(source):
            shutil.copy2(source, target)
    os.makedirs(dist_dir, exist_ok=True)
    archive = os.path.join(dist_dir, f"{PACKAGE}-{plugin_version()}.zip")
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        for folder, _, files in os.walk(target):
            for name in sorted(files):
                path = os.path.join(folder, name)
                bundle.write(path, os.path.relpath(path, build_dir))
    return target, archive


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    parser.add_argument("--dist-dir", default=os.path.join(ROOT, "dist"))
    arguments = parser.parse_args()
    target, archive = build(arguments.build_dir, arguments.dist_dir)
    print(f"Built {target}\nZipped {archive}")


if __name__ == "__main__":
    main()
