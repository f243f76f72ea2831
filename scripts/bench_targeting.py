#!/usr/bin/env python3
"""Benchmark: povmap:target's core on 1,000,000 cells with a population raster (issue 11).

Writes a prediction layer of 1000 × 1000 cells of 1 km (EPSG:32642, with
districts and prob_mean) and a population raster in EPSG:4326 (30 arc-seconds
like GHS-POP, or --population-arcsec 3 for WorldPop's grid), then measures, each
in a fresh process (time and peak memory = max RSS):
  1. baseline: read the layer's table (no geometries) and sort it with pandas;
  2. baseline: read the layer with its geometries and write it back (the I/O floor);
  3. target, budget 30 % of the cells, ranked by probability (no raster);
  4. target, budget 30 % of the people, ranked by expected poor (population summed per cell);
  5. the population summed per cell alone (``cell_population``, the cells already read) against
     its floor, every block of the population raster read once (target <= 2x, issue 27).
Ratios are against the baselines of the same run.
Run with the setup venv:  .venv/bin/python scripts/bench_targeting.py [--side 1000] [--population-arcsec 3]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
X0, Y0, CELL = 300000.0, 2500000.0, 1000.0


def make_inputs(folder, side, arcsec):
    """The prediction layer (side² cells) and the population raster; their paths."""
    import geopandas
    import numpy as np
    import rasterio
    import shapely
    from pyproj import Transformer

    rng = np.random.default_rng(0)
    rows, columns = np.divmod(np.arange(side * side), side)
    latent = rng.normal(0, 1, side * side) + 0.002 * (columns - side / 2)
    cells = geopandas.GeoDataFrame(
        {
            "cell_id": (rows + 2500) * 10**9 + (columns + 300),
            "district": np.char.add("district_", ((rows // 100) * 10 + columns // 100).astype(str)),
            "prob_mean": np.round(1 / (1 + np.exp(-latent)), 5),
            "pred": (latent > 0).astype("int32"),
        },
        geometry=shapely.box(
            X0 + columns * CELL, Y0 + rows * CELL, X0 + (columns + 1) * CELL, Y0 + (rows + 1) * CELL
        ),
        crs="EPSG:32642",
    )
    predictions = os.path.join(folder, "predictions.gpkg")
    cells.to_file(predictions, engine="pyogrio")
    step = arcsec / 3600.0
    to_lonlat = Transformer.from_crs("EPSG:32642", "EPSG:4326", always_xy=True)
    edge = np.linspace(0, side * CELL, 200)
    xs = np.concatenate([X0 + edge, np.full(200, X0 + side * CELL), X0 + edge, np.full(200, X0)])
    ys = np.concatenate([np.full(200, Y0), Y0 + edge, np.full(200, Y0 + side * CELL), Y0 + edge])
    lon, lat = to_lonlat.transform(xs, ys)
    west, north = np.floor(lon.min()) - step, np.ceil(lat.max()) + step
    width = int((lon.max() - west) / step) + 2
    height = int((north - lat.min()) / step) + 2
    population = os.path.join(folder, "population.tif")
    with rasterio.open(
        population,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=1,
        dtype="float32",
        crs="EPSG:4326",
        transform=rasterio.transform.from_origin(west, north, step, step),
        tiled=True,
        compress="deflate",
    ) as target:
        for row0 in range(0, height, 1024):
            rows_here = min(1024, height - row0)
            block = rng.gamma(0.8, 60.0 * (arcsec / 30.0) ** 2, (rows_here, width)).astype(
                "float32"
            )
            target.write(block, 1, window=rasterio.windows.Window(0, row0, width, rows_here))
    return predictions, population, width * height


def child(kind, predictions, population, folder):
    """One measurement in this (fresh) process, libraries already imported; prints JSON."""
    import geopandas
    import pandas  # noqa: F401
    import pyogrio
    import rasterio
    import rasterio.features

    started = time.perf_counter()
    if kind == "read_population":  # the floor: every block of the raster read once
        with rasterio.open(population) as raster:
            for _, window in raster.block_windows(1):
                raster.read(1, window=window)
        result = {}
    elif kind == "population":  # people per cell alone, the cells already read
        from povmap_qgis.core.grid.population import cell_population

        cells = geopandas.read_file(predictions, engine="pyogrio", columns=[]).geometry
        started = time.perf_counter()
        people, _ = cell_population(cells, population)
        result = {"people": float(people.sum())}
    elif kind == "sort":
        import pyogrio

        table = pyogrio.read_dataframe(predictions, read_geometry=False)
        table.sort_values(["prob_mean", "cell_id"], ascending=[False, True]).reset_index(drop=True)
        result = {}
    elif kind == "io":
        import geopandas

        frame = geopandas.read_file(predictions, engine="pyogrio")
        frame.to_file(os.path.join(folder, "copy.gpkg"), engine="pyogrio")
        result = {}
    else:
        from povmap_qgis.core.decision.targeting import TargetOptions, target

        people = kind == "target_people"
        summary = target(
            TargetOptions(
                predictions_path=predictions,
                output_path=os.path.join(folder, f"{kind}.gpkg"),
                allocation_path=os.path.join(folder, f"{kind}.csv"),
                budget=0.3,
                budget_unit="share_of_people" if people else "share_of_cells",
                rank_by="expected_poor" if people else "probability",
                population_path=population if people else None,
            )
        )
        result = {
            "selected_cells": summary["selected_cells"],
            "coverage": summary["expected"]["coverage"],
        }
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, **result}))


def measure(kind, predictions, population, folder):
    completed = subprocess.run(
        [sys.executable, __file__, "--child", kind, predictions, population, folder],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=1000, help="cells per side (1000: a million)")
    parser.add_argument("--population-arcsec", type=float, default=30.0)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--make", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    if args.make:
        print(json.dumps(make_inputs(args.make, args.side, args.population_arcsec)))
        return 0
    with tempfile.TemporaryDirectory(prefix="povmap-bench-targeting-") as folder:
        started = time.perf_counter()
        # made in another process: Linux keeps a process's peak memory across exec, so the
        # measuring children must be started from a parent that never held the data
        made = subprocess.run(
            [sys.executable, __file__, "--make", folder, "--side", str(args.side)]
            + ["--population-arcsec", str(args.population_arcsec)],
            capture_output=True,
            text=True,
            check=True,
        )
        predictions, population, pixels = json.loads(made.stdout.strip().splitlines()[-1])
        print(
            f"inputs: {args.side**2:,} cells, population raster {pixels:,} pixels at "
            f'{args.population_arcsec:g}" ({time.perf_counter() - started:.0f} s to write)'
        )
        results = {}
        for kind in (
            "sort",
            "io",
            "read_population",
            "population",
            "target_cells",
            "target_people",
        ):
            results[kind] = measure(kind, predictions, population, folder)
            print(
                f"  {kind:<14} {results[kind]['seconds']:7.1f} s  peak {results[kind]['peak_mb']:7.0f} MB"
            )
        for kind in ("target_cells", "target_people"):
            print(
                f"{kind}: {results[kind]['seconds'] / results['sort']['seconds']:.1f} x the pandas sort, "
                f"{results[kind]['seconds'] / results['io']['seconds']:.1f} x reading + writing the layer; "
                f"peak memory {results[kind]['peak_mb'] / results['io']['peak_mb']:.1f} x that of reading + "
                "writing it"
            )
        print(
            f"population per cell: {results['population']['seconds'] / results['read_population']['seconds']:.1f} x "
            "reading the raster once (target <= 2x, issue 27)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
