"""The plugin's version from metadata.txt, without importing the plugin package above core."""

import configparser
import os

# povmap_qgis/ in the source tree; the plugin folder itself once built (metadata.txt inside).
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def plugin_version() -> str:
    """The version in the built plugin's metadata.txt, else the source tree's; "unknown" if none."""
    for base in (_PACKAGE_DIR, os.path.dirname(_PACKAGE_DIR)):
        path = os.path.join(base, "metadata.txt")
        if os.path.isfile(path):
            metadata = configparser.ConfigParser()
            metadata.read(path, encoding="utf-8")
            return metadata.get("general", "version", fallback="unknown")
    return "unknown"
