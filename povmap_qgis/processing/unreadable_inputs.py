"""Say what is wrong with an input file QGIS cannot load, instead of "not found".

QGIS's own check reports any layer it cannot load as "Could not load source layer
for AREA: /path/file.gpkg not found", also when the file is there but damaged,
truncated or of another kind. When the file exists, the message says so and
gives GDAL's reason; a ``/vsizip/`` (or other ``/vsi…``) path says that QGIS does not
load such paths and what to do instead.
"""

import os
import re

NOT_FOUND = re.compile(r"Could not load source layer for (?P<name>\w+): (?P<value>.*) not found")


def explain_unreadable_input(definitions, message):
    """``message`` with QGIS's "not found" replaced by what is wrong, when the file exists."""
    match = NOT_FOUND.search(message or "")
    if not match:
        return message
    name, value = match.group("name"), match.group("value").strip()
    path, _, options = value.partition("|")
    definition = next((item for item in definitions if item.name() == name), None)
    if path.startswith("/vsi"):
        label = f"{definition.description()} — {name}" if definition is not None else name
        return (
            f"{label}: '{path}' is a file inside an archive or a remote location (a GDAL "
            "/vsi… path), which QGIS does not load as a layer given as a path. Extract the "
            "file (or download it) and choose the extracted file, or add it to the project "
            "first (Layer ▸ Add Layer) and choose the layer. Nothing was written."
        )
    if not path or not os.path.exists(path):
        return message
    kind = "raster" if definition is not None and definition.type() == "raster" else "vector"
    layer = dict(option.split("=", 1) for option in options.split("|") if "=" in option).get(
        "layername"
    )
    label = f"{definition.description()} ({name})" if definition is not None else name
    return (
        f"{label}: the file '{path}' exists but cannot be read as a {kind} layer: "
        f"{_problem(path, kind, layer)}. It may be damaged or truncated (e.g. an interrupted "
        "copy or download): export or copy it again, or choose another file."
    )


def _problem(path, kind, layer):
    if os.path.isdir(path):
        return "it is a folder, not a file"
    size = os.path.getsize(path)
    if size == 0:
        return "it is empty (0 bytes)"
    from osgeo import gdal

    gdal.PushErrorHandler("CPLQuietErrorHandler")
    gdal.ErrorReset()
    try:
        flags = gdal.OF_RASTER if kind == "raster" else gdal.OF_VECTOR
        try:
            dataset = gdal.OpenEx(path, flags)
        except RuntimeError:  # GDAL set to raise exceptions
            dataset = None
        error = gdal.GetLastErrorMsg().strip()
        if dataset is None:
            reason = f"GDAL does not recognise its {size:,} bytes as a {kind} format"
            return f"{reason} ({error})" if error else reason
        if kind == "vector" and layer:
            names = [dataset.GetLayer(index).GetName() for index in range(dataset.GetLayerCount())]
            if layer not in names:
                return f"it has no layer '{layer}' (its layers: {', '.join(names) or 'none'})"
        return f"GDAL opens it but QGIS cannot use it as a layer{f' ({error})' if error else ''}"
    finally:
        gdal.PopErrorHandler()
