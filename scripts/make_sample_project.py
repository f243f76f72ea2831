#!/usr/bin/env python3
"""Generate the SYNTHETIC sample project of povmap-qgis.

    python scripts/make_sample_project.py --size tiny --out /tmp/sample [--seed 42] [--render]

Writes an invented rural region of an irrigated river plain (UTM zone 42N,
like the Indus plain in Sindh) with everything the pipeline needs: districts,
a Sentinel-2-like daytime image, VIIRS-like night lights, a travel-time
surface, a household poverty survey with the survey errors of the paper, a
later ground-truth survey of the unsurveyed district, urban centres, a
metadata file and a styled QGIS project. Nothing in it describes real places
or real households. The output is deterministic for a given seed and size.

The data and the project are made in two processes: this one (numpy,
rasterio, geopandas) and ``sample_project_qgz.py`` (PyQGIS), run with the same
interpreter, because GDAL bindings from pip and from QGIS must not meet.
See scripts/SAMPLE_PROJECT.md for what is realistic and what is not.

The code lives in the ``sample_project`` package beside this script, one module
per part (settings, tools, landscape, daytime, lights, population, surveys,
vectors, the dim-lights case, checks, project, cli).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sample_project.cli import main
from sample_project.dim_lights import write_dim_lights_case  # noqa: F401  (tests load it here)

if __name__ == "__main__":
    sys.exit(main())
