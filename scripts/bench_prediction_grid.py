#!/usr/bin/env python3
"""Benchmark: memory and time of the prediction grid on a large area (issue 14 item 10).

Generates a round area of about ``--cells`` cells of 1 km (twelve district sectors with
many vertices each) and measures, each in a fresh process of its own (peak RSS from
``resource.getrusage``):
  1. baseline: importing the core and reading the area polygons, nothing else;
  2. the prediction grid on a quarter of the area (same shape, half the radius);
  3. the prediction grid on the whole area.
Peak memory above the baseline should grow with the kept cells' compact arrays only
(tens of bytes per cell), not with whole-area geometry arrays (the unblocked version
needed about 1.2 GB for 1 M cells). Run with the setup venv:
    .venv/bin/python scripts/bench_prediction_grid.py [--cells 1000000]
"""

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UTM = "EPSG:32642"


def generate_area(path, cells, seed=3):
    """Twelve sectors of a disc of ``cells`` km² around (1000 km E, 3000 km N), jagged edge."""
    import geopandas
    import numpy as np
    import shapely

    rng = np.random.default_rng(seed)
    radius = math.sqrt(cells / math.pi) * 1000.0
    centre_x, centre_y = 1_000_000.0, 3_000_000.0
    sectors, names = [], []
    for sector in range(12):
        angles = np.linspace(sector * math.pi / 6, (sector + 1) * math.pi / 6, 400)
        edge = radius * (1 + rng.uniform(-0.01, 0.01, len(angles)))
        ring = [(centre_x, centre_y)] + list(
            zip(centre_x + edge * np.cos(angles), centre_y + edge * np.sin(angles), strict=True)
        )
        sectors.append(shapely.Polygon(ring))
        names.append(f"District {sector + 1}")
    geopandas.GeoDataFrame({"name": names}, geometry=sectors, crs=UTM).to_file(
        path, layer="districts", engine="pyogrio"
    )


def measure(mode, area, output):
    """Run one measurement in this process; print a JSON line with peak RSS and time."""
    sys.path.insert(0, ROOT)
    from povmap_qgis.core import vectors
    from povmap_qgis.core.grid import prediction_grid

    started = time.perf_counter()
    if mode == "baseline":
        areas = vectors.read_polygons(area, None, "AREA", field="name")
        cells = len(areas)
    else:
        counts = prediction_grid.build_prediction_grid(
            prediction_grid.PredictionGridOptions(
                area_path=area, output_path=output, district_field="name", crs=UTM
            )
        )
        cells = counts["cells_kept"]
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"mode": mode, "cells": cells, "seconds": seconds, "peak_mb": peak_mb}))


def run_child(mode, area, output):
    completed = subprocess.run(
        [sys.executable, __file__, "--measure", mode, area, output],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=1_000_000)
    parser.add_argument("--measure", nargs=3, metavar=("MODE", "AREA", "OUTPUT"))
    arguments = parser.parse_args()
    if arguments.measure:
        measure(*arguments.measure)
        return
    folder = tempfile.mkdtemp(prefix="povmap-bench-grid-")
    try:
        whole, quarter = os.path.join(folder, "whole.gpkg"), os.path.join(folder, "quarter.gpkg")
        generate_area(whole, arguments.cells)
        generate_area(quarter, arguments.cells // 4)
        baseline = run_child("baseline", whole, "")
        small = run_child("grid", quarter, os.path.join(folder, "quarter_grid.gpkg"))
        large = run_child("grid", whole, os.path.join(folder, "whole_grid.gpkg"))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"baseline (imports + read AREA): peak {baseline['peak_mb']:.0f} MB")
    for result in (small, large):
        above = result["peak_mb"] - baseline["peak_mb"]
        print(
            f"prediction grid, {result['cells']:,} cells: {result['seconds']:.1f} s, "
            f"peak {result['peak_mb']:.0f} MB ({above:.0f} MB above baseline, "
            f"{above * 1024**2 / result['cells']:.0f} B/cell)"
        )
    growth = (large["peak_mb"] - small["peak_mb"]) * 1024**2 / (large["cells"] - small["cells"])
    print(f"growth from the quarter to the whole area: {growth:.0f} B per extra cell")


if __name__ == "__main__":
    main()
