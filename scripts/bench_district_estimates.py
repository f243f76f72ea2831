#!/usr/bin/env python3
"""Benchmark: povmap:districtestimates' core, 1,000 districts over 1,000,000 predicted cells (issue 25).

Writes (in another process) the prediction layer of bench_targeting.py (1000 × 1000 cells of
1 km, EPSG:32642) and its population raster (EPSG:4326, 30"), 1,000 districts (40 × 25
rectangles of 25 × 40 km) and a clustered survey (3–5 clusters of 10 households in most
districts, none in some; weights; strata = districts). Then measures, each in a fresh process
(time and peak memory = max RSS):
  1. reading the inputs alone: the prediction layer with its geometries, the districts, the survey;
  2. districtestimates without the population raster (cell means);
  3. districtestimates with it (population summed per cell, population-weighted means).
Run with the setup venv:  .venv/bin/python scripts/bench_district_estimates.py [--side 1000]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)
X0, Y0, CELL = 300000.0, 2500000.0, 1000.0
DISTRICT_COLUMNS, DISTRICT_ROWS = 40, 25


def make_inputs(folder, side, arcsec):
    import geopandas
    import numpy as np
    import shapely
    from bench_targeting import make_inputs as make_predictions

    predictions, population, pixels = make_predictions(folder, side, arcsec)
    width, height = side * CELL / DISTRICT_COLUMNS, side * CELL / DISTRICT_ROWS
    rows, columns = np.divmod(np.arange(DISTRICT_COLUMNS * DISTRICT_ROWS), DISTRICT_COLUMNS)
    districts = geopandas.GeoDataFrame(
        {"name": [f"D{index:04d}" for index in range(len(rows))]},
        geometry=shapely.box(
            X0 + columns * width,
            Y0 + rows * height,
            X0 + (columns + 1) * width,
            Y0 + (rows + 1) * height,
        ),
        crs="EPSG:32642",
    )
    districts_path = os.path.join(folder, "districts.gpkg")
    districts.to_file(districts_path, engine="pyogrio")
    rng = np.random.default_rng(1)
    records = {"x": [], "y": [], "score": [], "weight": [], "ea": [], "stratum": []}
    rate = rng.uniform(0.1, 0.7, len(rows))
    for index in range(len(rows)):
        clusters = int(rng.choice([0, 1, 3, 4, 5], p=[0.1, 0.1, 0.3, 0.3, 0.2]))
        for cluster in range(clusters):
            cx = X0 + (columns[index] + rng.uniform(0.1, 0.9)) * width
            cy = Y0 + (rows[index] + rng.uniform(0.1, 0.9)) * height
            share = float(np.clip(rate[index] + rng.normal(0, 0.1), 0, 1))
            poor = rng.random(10) < share
            records["x"] += list(cx + rng.normal(0, 100, 10))
            records["y"] += list(cy + rng.normal(0, 100, 10))
            records["score"] += list(
                np.where(poor, rng.integers(3, 19, 10), rng.integers(19, 60, 10))
            )
            records["weight"] += [float(rng.uniform(50, 500))] * 10
            records["ea"] += [f"{index}-{cluster}"] * 10
            records["stratum"] += [f"D{index:04d}"] * 10
    survey = geopandas.GeoDataFrame(
        {key: records[key] for key in ("score", "weight", "ea", "stratum")},
        geometry=geopandas.points_from_xy(records["x"], records["y"]),
        crs="EPSG:32642",
    )
    survey_path = os.path.join(folder, "survey.gpkg")
    survey.to_file(survey_path, engine="pyogrio")
    return {
        "predictions": predictions,
        "population": population,
        "pixels": pixels,
        "districts": districts_path,
        "survey": survey_path,
        "households": len(survey),
    }


def child(kind, inputs, folder):
    """One measurement in this (fresh) process, libraries imported first; prints JSON."""
    import geopandas
    import pyogrio  # noqa: F401
    import rasterio  # noqa: F401
    import scipy.stats  # noqa: F401

    inputs = json.loads(inputs)
    started = time.perf_counter()
    result = {}
    if kind == "read":
        for key in ("predictions", "districts", "survey"):
            geopandas.read_file(inputs[key], engine="pyogrio")
    else:
        from povmap_qgis.core.estimation.district_estimates import (
            DistrictEstimatesOptions,
            district_estimates,
        )

        summary = district_estimates(
            DistrictEstimatesOptions(
                survey_path=inputs["survey"],
                score_field="score",
                weight_field="weight",
                cluster_field="ea",
                stratum_field="stratum",
                districts_path=inputs["districts"],
                district_field="name",
                predictions_path=inputs["predictions"],
                population_path=inputs["population"] if kind == "estimates_people" else None,
                output_path=os.path.join(folder, f"{kind}.gpkg"),
                table_path=os.path.join(folder, f"{kind}.csv"),
            )
        )
        result = {
            "districts": summary["districts"],
            "sampled": summary["sampled_districts"],
            "median_cv_direct": summary["median_cv_direct"],
            "median_cv_estimate": summary["median_cv_estimate"],
        }
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, **result}))


def measure(kind, inputs, folder):
    completed = subprocess.run(
        [sys.executable, __file__, "--child", kind, json.dumps(inputs), folder],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=1000, help="cells per side (1000: a million)")
    parser.add_argument("--population-arcsec", type=float, default=30.0)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--make", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    if args.make:
        print(json.dumps(make_inputs(args.make, args.side, args.population_arcsec)))
        return 0
    with tempfile.TemporaryDirectory(prefix="povmap-bench-districts-") as folder:
        started = time.perf_counter()
        made = subprocess.run(  # another process: the children's peak memory starts clean
            [sys.executable, __file__, "--make", folder, "--side", str(args.side)]
            + ["--population-arcsec", str(args.population_arcsec)],
            capture_output=True,
            text=True,
            check=True,
        )
        inputs = json.loads(made.stdout.strip().splitlines()[-1])
        print(
            f"inputs: {args.side**2:,} cells, {DISTRICT_COLUMNS * DISTRICT_ROWS:,} districts, "
            f"{inputs['households']:,} households, population raster {inputs['pixels']:,} pixels "
            f"({time.perf_counter() - started:.0f} s to write)"
        )
        results = {}
        for kind in ("read", "estimates", "estimates_people"):
            results[kind] = measure(kind, inputs, folder)
            print(
                f"  {kind:<17} {results[kind]['seconds']:7.1f} s  peak {results[kind]['peak_mb']:7.0f} MB"
            )
        for kind in ("estimates", "estimates_people"):
            print(
                f"{kind}: {results[kind]['seconds'] / results['read']['seconds']:.1f} x the time and "
                f"{results[kind]['peak_mb'] / results['read']['peak_mb']:.1f} x the peak memory of "
                f"reading the inputs; {results[kind]['sampled']} of {results[kind]['districts']} "
                f"districts surveyed, median CV {results[kind]['median_cv_direct']:.2f} direct, "
                f"{results[kind]['median_cv_estimate']:.2f} estimate"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
