"""Where the plugin's files are, in the built plugin and in the source tree."""

import os

PLUGIN_DIR = os.path.dirname(os.path.abspath(__file__))


def resource_path(*parts):
    """A file under ``resources/``: inside the built plugin, else the source tree's top level."""
    for base in (os.path.join(PLUGIN_DIR, "resources"), os.path.join(os.path.dirname(PLUGIN_DIR), "resources")):
        candidate = os.path.join(base, *parts)
        if os.path.exists(candidate):
            return candidate
    return os.path.join(PLUGIN_DIR, "resources", *parts)


def style_path(name):
    return resource_path("styles", f"{name}.qml")
