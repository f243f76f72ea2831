#!/usr/bin/env python3
"""Build the installable plugin: build/povmap_qgis/ and dist/povmap_qgis-VERSION.zip.

QGIS reads metadata.txt, the icon, styles and bundled models from inside the
plugin folder, so the top-level files are copied in beside the package.

The build records a digest of everything it copied (``.source-sha256``);
``ensure_current`` rebuilds only when that digest no longer matches the source
tree, so tests can never run against a stale build.
"""

import argparse
import configparser
import contextlib
import fcntl
import hashlib
import os
import shutil
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "povmap_qgis"
TOP_LEVEL = ["metadata.txt", "resources", "models", "README.md", "LICENSE"]
IGNORED_NAMES = ("__pycache__", ".pytest_cache", "worker_env.json")
IGNORED = shutil.ignore_patterns(*IGNORED_NAMES, "*.pyc")
DIGEST_FILE = ".source-sha256"


def plugin_version():
    metadata = configparser.ConfigParser()
    metadata.read(os.path.join(ROOT, "metadata.txt"), encoding="utf-8")
    return metadata["general"]["version"]


def _source_files():
    for name in [PACKAGE, *TOP_LEVEL]:
        path = os.path.join(ROOT, name)
        if os.path.isfile(path):
            yield name
            continue
        for folder, folders, files in os.walk(path):
            folders[:] = sorted(f for f in folders if f not in IGNORED_NAMES)
            for file_name in sorted(files):
                if file_name in IGNORED_NAMES or file_name.endswith(".pyc"):
                    continue
                yield os.path.relpath(os.path.join(folder, file_name), ROOT)


def source_digest():
    """sha256 over the names and contents of every file the build copies."""
    digest = hashlib.sha256()
    for relative in _source_files():
        digest.update(relative.encode() + b"\0")
        with open(os.path.join(ROOT, relative), "rb") as handle:
            digest.update(hashlib.sha256(handle.read()).digest())
    return digest.hexdigest()


def build(build_dir, dist_dir):
    """Build into a temporary folder, then swap it in (a concurrent reader never sees half)."""
    os.makedirs(build_dir, exist_ok=True)
    target = os.path.join(build_dir, PACKAGE)
    staging = os.path.join(build_dir, f".{PACKAGE}.building-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    digest = source_digest()
    shutil.copytree(os.path.join(ROOT, PACKAGE), staging, ignore=IGNORED)
    for name in TOP_LEVEL:
        source = os.path.join(ROOT, name)
        if os.path.isdir(source):
            shutil.copytree(source, os.path.join(staging, name), ignore=IGNORED)
        elif os.path.isfile(source):
            shutil.copy2(source, staging)
    with open(os.path.join(staging, DIGEST_FILE), "w", encoding="utf-8") as handle:
        handle.write(digest + "\n")
    old = None
    if os.path.exists(target):
        old = os.path.join(build_dir, f".{PACKAGE}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(staging, target)
    if old:
        shutil.rmtree(old, ignore_errors=True)
    os.makedirs(dist_dir, exist_ok=True)
    archive = os.path.join(dist_dir, f"{PACKAGE}-{plugin_version()}.zip")
    partial = archive + f".partial-{os.getpid()}"
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as bundle:
        for folder, _, files in os.walk(target):
            for name in sorted(files):
                if name == DIGEST_FILE:
                    continue
                path = os.path.join(folder, name)
                bundle.write(path, os.path.relpath(path, build_dir))
    os.replace(partial, archive)
    return target, archive


def built_digest(build_dir):
    try:
        with open(os.path.join(build_dir, PACKAGE, DIGEST_FILE), encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        return None


@contextlib.contextmanager
def build_lock(build_dir):
    """One build at a time (parallel test runs share build/)."""
    os.makedirs(build_dir, exist_ok=True)
    with open(os.path.join(build_dir, ".build.lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def ensure_current(build_dir, dist_dir):
    """Rebuild when the source tree differs from the build; return True when it rebuilt."""
    with build_lock(build_dir):
        if built_digest(build_dir) == source_digest():
            return False
        build(build_dir, dist_dir)
        return True


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    parser.add_argument("--dist-dir", default=os.path.join(ROOT, "dist"))
    arguments = parser.parse_args()
    with build_lock(arguments.build_dir):
        target, archive = build(arguments.build_dir, arguments.dist_dir)
    print(f"Built {target}\nZipped {archive}")


if __name__ == "__main__":
    main()
