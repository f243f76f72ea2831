#!/usr/bin/env python3
"""Render layers to a PNG with QGIS's map renderer, each with its saved style.

    render_map.py OUT.png LAYER [LAYER ...] [--project QGZ [--project-layers TEXT ...]]
                  [--width 1600] [--extent-of LAYER] [--title TEXT]

LAYER is a file path, optionally `path|layername=name`; the first is drawn on
top. GeoPackage layers show the style saved inside them (povmap outputs do).
With --project, the project's visible layers (those whose names contain one
of --project-layers, if given) are drawn below, styled as in the project.
The drawing itself is povmap_qgis/processing/rendering.py (also used for the
maps of the evaluation report).
"""

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("output")
    parser.add_argument("layers", nargs="+")
    parser.add_argument("--project", help="a .qgz whose visible layers are drawn below LAYERs")
    parser.add_argument(
        "--project-layers", nargs="*", help="only project layers whose names contain one of these"
    )
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--extent-of")
    parser.add_argument("--title")
    arguments = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    sys.path.insert(0, ROOT)
    from qgis.core import QgsApplication

    from povmap_qgis.processing.rendering import RenderError, render

    app = QgsApplication([], False)
    app.initQgis()
    try:
        render(
            arguments.output,
            arguments.layers,
            arguments.width,
            arguments.extent_of,
            arguments.title,
            arguments.project,
            arguments.project_layers,
        )
    except RenderError as error:
        raise SystemExit(f"render_map: {error}") from None
    finally:
        app.exitQgis()
    print(f"Rendered {arguments.output}")


if __name__ == "__main__":
    sys.exit(main())
