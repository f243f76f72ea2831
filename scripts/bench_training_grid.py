#!/usr/bin/env python3
"""Benchmark: training grid from survey points at the paper's scale (1.67 M households).

Times, on the same generated points in the same run:
  1. povmap:buildtraininggrid end to end through Processing (worker process included);
  2. QGIS's own chain: native:creategrid + qgis:joinbylocationsummary (count, median).
Prints both times and the ratio. Targets (issue 2): ours under 15 s on 2 cores and
at least 5x faster than the chain. Run with the setup venv:
    .venv/bin/python scripts/bench_training_grid.py [--points 1670000]
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UTM = "EPSG:32642"


def generate_households(path, count, seed=1):
    """Households clustered in villages over a Sindh-sized rural region (EPSG:4326 GPS)."""
    import geopandas
    import numpy as np
    from pyproj import Transformer

    rng = np.random.default_rng(seed)
    villages = 20_000
    centre_x = rng.uniform(450_000, 750_000, villages)
    centre_y = rng.uniform(2_700_000, 3_000_000, villages)
    village = rng.integers(0, villages, count)
    x = centre_x[village] + rng.normal(0, 250, count)
    y = centre_y[village] + rng.normal(0, 250, count)
    lon, lat = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True).transform(x, y)
    frame = geopandas.GeoDataFrame(
        {"score": rng.integers(1, 100, count).astype("int32")},
        geometry=geopandas.points_from_xy(lon, lat),
        crs="EPSG:4326",
    )
    frame.to_file(path, layer="households", engine="pyogrio")


def run_ours(processing, points, output):
    started = time.perf_counter()
    result = processing.run(
        "povmap:buildtraininggrid",
        {
            "INPUT": points,
            "SCORE_FIELD": "score",
            "CRS": UTM,
            "MIN_OBS": 3,
            "MAX_OBS": 0,
            "OUTPUT": output,
        },
    )
    return time.perf_counter() - started, result["CELLS_KEPT"]


def run_qgis_chain(processing, points, folder):
    from qgis.core import QgsVectorLayer

    started = time.perf_counter()
    projected = processing.run(
        "native:reprojectlayer",
        {"INPUT": points, "TARGET_CRS": UTM, "OUTPUT": os.path.join(folder, "projected.gpkg")},
    )["OUTPUT"]
    extent = QgsVectorLayer(projected, "p", "ogr").extent()
    bounds = [
        extent.xMinimum() // 1000 * 1000,
        -(-extent.xMaximum() // 1000) * 1000,
        extent.yMinimum() // 1000 * 1000,
        -(-extent.yMaximum() // 1000) * 1000,
    ]
    grid = processing.run(
        "native:creategrid",
        {
            "TYPE": 2,
            "EXTENT": "{},{},{},{} [{}]".format(*bounds, UTM),
            "HSPACING": 1000,
            "VSPACING": 1000,
            "CRS": UTM,
            "OUTPUT": os.path.join(folder, "grid.gpkg"),
        },
    )["OUTPUT"]
    joined = processing.run(
        "qgis:joinbylocationsummary",
        {
            "INPUT": grid,
            "JOIN": projected,
            "PREDICATE": [0],
            "JOIN_FIELDS": ["score"],
            "SUMMARIES": [0, 7],
            "DISCARD_NONMATCHING": True,
            "OUTPUT": os.path.join(folder, "summary.gpkg"),
        },
    )["OUTPUT"]
    return time.perf_counter() - started, QgsVectorLayer(joined, "s", "ogr").featureCount()


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", type=int, default=1_670_000)
    parser.add_argument(
        "--skip-qgis-chain", action="store_true", help="time only povmap (the chain takes minutes)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the generated files (printed folder)"
    )
    arguments = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="povmap-bench-")
    try:
        benchmark(arguments, folder)
    finally:
        if not arguments.keep:
            shutil.rmtree(folder, ignore_errors=True)


def benchmark(arguments, folder):

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("POVMAP_PYTHON", sys.executable)
    sys.path.insert(0, os.path.join(ROOT, "build"))
    points = os.path.join(folder, "households.gpkg")
    started = time.perf_counter()
    generate_households(points, arguments.points)
    print(
        f"generated {arguments.points:,} households in {time.perf_counter() - started:.1f} s ({points})",
        flush=True,
    )

    from qgis.core import QgsApplication

    app = QgsApplication([], False)
    app.initQgis()
    sys.path.append("/usr/share/qgis/python/plugins")
    import processing
    from processing.core.Processing import Processing

    Processing.initialize()
    from povmap_qgis.processing.provider import PovmapProvider

    provider = PovmapProvider()  # keep a reference: the registry does not own the Python object
    QgsApplication.processingRegistry().addProvider(provider)

    ours_s, ours_cells = run_ours(processing, points, os.path.join(folder, "povmap_grid.gpkg"))
    print(
        f"povmap:buildtraininggrid     {ours_s:8.2f} s  {ours_cells:,} cells  ({arguments.points / ours_s:,.0f} households/s)",
        flush=True,
    )
    if arguments.skip_qgis_chain:
        return
    chain_s, chain_cells = run_qgis_chain(processing, points, folder)
    print(
        f"QGIS creategrid+joinbylocationsummary {chain_s:8.2f} s  {chain_cells:,} cells", flush=True
    )
    print(
        f"ratio (QGIS chain / povmap)  {chain_s / ours_s:8.1f}x   target >= 5x; povmap target < 15 s",
        flush=True,
    )
    if chain_cells != ours_cells:
        print(
            f"note: cell counts differ ({chain_cells} vs {ours_cells}): points on shared cell edges count in both cells in the chain"
        )


if __name__ == "__main__":
    main()
