"""Where the plugin's files are, in the built plugin and in the source tree."""

import os

from .core.version import plugin_version  # noqa: F401  (one home: core/version.py)

PLUGIN_DIR = os.path.dirname(os.path.abspath(__file__))


def resource_path(*parts):
    """A file under ``resources/``: inside the built plugin, else the source tree's top level."""
    for base in (
        os.path.join(PLUGIN_DIR, "resources"),
        os.path.join(os.path.dirname(PLUGIN_DIR), "resources"),
    ):
        candidate = os.path.join(base, *parts)
        if os.path.exists(candidate):
            return candidate
    return os.path.join(PLUGIN_DIR, "resources", *parts)


def style_path(name):
    return resource_path("styles", f"{name}.qml")


def top_level_path(name):
    """A top-level file or folder (metadata.txt, models/): the built plugin's, else the source tree's."""
    for base in (PLUGIN_DIR, os.path.dirname(PLUGIN_DIR)):
        if os.path.exists(os.path.join(base, name)):
            return os.path.join(base, name)
    return os.path.join(PLUGIN_DIR, name)


def bundled_model_path():
    """The demonstration ensemble shipped in models/."""
    return top_level_path(os.path.join("models", "demo_compact.povmodel"))
