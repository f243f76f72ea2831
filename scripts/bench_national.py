#!/usr/bin/env python3
"""Benchmark: a whole synthetic country at 1 km, from its rasters to its map, targeting and districts.

Builds, at low cost, a country of about ``--cells`` km² (default 500,000, Kenya's
size) in UTM 42N: ``--districts`` district rectangles (default 324), the three input
rasters at realistic resolutions — night lights at 15″ and accessibility at 30″
(EPSG:4326), daytime as a coarser stand-in (``--daytime-m``, default 100 m, 3 bands,
UTM; the model's chips are still 100 × 100 px at 10 m, warped from it), a population
raster at 3″ (WorldPop's grid) — and a household survey in a third of the districts.
Then runs, each step in a fresh process of its own:

  grid            Build prediction grid (core) over the districts
  sample_local    Sample image chips into a store, local engine
  predict_store   Predict from that store, local engine
  predict_rasters Predict from the rasters (no store), local engine
  sample_spark, predict_store_spark, predict_rasters_spark   the same with ENGINE=spark, local[2]
  target          Target 30 % of the people, ranked by expected poor (3″ population)
  districts       District estimates (survey + map + population), when the algorithm exists

and, as floors measured in the same run (fresh processes too): reading the district
polygons (grid), reading every input raster once (sampling), the model's own
throughput on in-memory chips plus loading it (predict), reading the 3″ population
raster once (target), reading the prediction layer and the survey (districts).

Per step: time, cells/s, the step's floor and its ratio, peak memory of the step's
process (the driver), of its Java descendant (Spark's JVM: in local mode the driver's and
the executors' heap) and of its other descendants together (Spark's Python workers),
sampled from /proc every 0.2 s, and the bytes the step leaves on disk. The bundled
demonstration model (compact preset) predicts. Run with the setup venv:
    .venv/bin/python scripts/bench_national.py [--cells 500000] [--skip-spark] [--skip-store] [--keep]
State the machine (cores, load) beside the numbers: this script prints both.
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UTM = "EPSG:32642"
X0, Y0 = 400_000.0, 2_600_000.0  # the country's south-west corner in UTM 42N (Sindh's zone)
SPARK_MASTER = "local[2]"


# --- the synthetic country ------------------------------------------------------------------


def side_km(cells):
    return int(math.ceil(math.sqrt(cells)))


def lonlat_bounds(side):
    """The country's box in EPSG:4326, a little wider (the rasters cover every chip)."""
    import numpy as np
    from pyproj import Transformer

    to_lonlat = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
    edge = np.linspace(-2000.0, side * 1000.0 + 2000.0, 100)
    xs = np.concatenate(
        [X0 + edge, np.full(100, X0 + edge[-1]), X0 + edge, np.full(100, X0 - 2000)]
    )
    ys = np.concatenate(
        [np.full(100, Y0 - 2000), Y0 + edge, np.full(100, Y0 + edge[-1]), Y0 + edge]
    )
    lon, lat = to_lonlat.transform(xs, ys)
    return float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max())


def smooth_field(rng, shape, scale_px):
    """A smooth random surface of ``shape`` (coarse noise, bilinearly enlarged), 0–1."""
    from scipy import ndimage

    coarse = rng.random((max(2, shape[0] // scale_px + 2), max(2, shape[1] // scale_px + 2)))
    zoom = (shape[0] / (coarse.shape[0] - 1), shape[1] / (coarse.shape[1] - 1))
    return ndimage.zoom(coarse, zoom, order=1)[: shape[0], : shape[1]].astype("float32")


def write_raster(path, crs, transform, shape, bands, dtype, make_rows, nodata=None):
    """A tiled, compressed GeoTIFF written in strips of rows (``make_rows(row0, row1)``)."""
    import rasterio

    profile = {
        "driver": "GTiff",
        "height": shape[0],
        "width": shape[1],
        "count": bands,
        "dtype": dtype,
        "crs": crs,
        "transform": transform,
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
        "predictor": 2 if dtype.startswith(("uint", "int")) else 3,
        "BIGTIFF": "IF_SAFER",
    }
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dataset:
        for row0 in range(0, shape[0], 2048):
            row1 = min(shape[0], row0 + 2048)
            values = make_rows(row0, row1)  # [bands, rows, cols]
            dataset.write(values, window=((row0, row1), (0, shape[1])))


def generate_country(folder, cells, districts, daytime_m, seed=7):
    """Districts, rasters and survey of the synthetic country; their paths."""
    import geopandas
    import numpy as np
    import rasterio.transform
    import shapely
    from pyproj import Transformer

    rng = np.random.default_rng(seed)
    side = side_km(cells)
    paths = {
        name: os.path.join(folder, name)
        for name in (
            "districts.gpkg",
            "daytime.tif",
            "nightlights.tif",
            "accessibility.tif",
            "population.tif",
            "survey.gpkg",
        )
    }
    # districts: a near-square lattice of rectangles with whole-km edges
    per_row = int(math.ceil(math.sqrt(districts)))
    edges = np.linspace(0, side, per_row + 1).round().astype(int) * 1000.0
    boxes, names = [], []
    for row in range(per_row):
        for column in range(per_row):
            boxes.append(
                shapely.box(
                    X0 + edges[column], Y0 + edges[row], X0 + edges[column + 1], Y0 + edges[row + 1]
                )
            )
            names.append(f"D{row:02d}{column:02d}")
    geopandas.GeoDataFrame({"name": names}, geometry=boxes, crs=UTM).to_file(
        paths["districts.gpkg"], engine="pyogrio"
    )
    # daytime stand-in in UTM, 3 bands of reflectance-like uint16
    margin = 2000.0
    day_px = int(math.ceil((side * 1000.0 + 2 * margin) / daytime_m))
    day_transform = rasterio.transform.from_origin(
        X0 - margin, Y0 + side * 1000.0 + margin, daytime_m, daytime_m
    )
    base = smooth_field(rng, (day_px, day_px), max(4, int(20_000 / daytime_m)))

    def daytime_rows(row0, row1):
        part = base[row0:row1]
        noise = rng.normal(0, 0.03, (3, *part.shape))
        return np.clip((part[None] * 0.6 + 0.2 + noise) * 3000, 0, 10000).astype("uint16")

    write_raster(
        paths["daytime.tif"], UTM, day_transform, (day_px, day_px), 3, "uint16", daytime_rows, 0
    )
    west, south, east, north = lonlat_bounds(side)
    for name, arcsec, scale, make in (
        ("nightlights.tif", 15, 40, lambda v: (np.exp(v * 4) - 1).astype("float32")),
        ("accessibility.tif", 30, 20, lambda v: (v * 600).astype("float32")),
        ("population.tif", 3, 200, lambda v: (v**3 * 40).astype("float32")),
    ):
        step = arcsec / 3600.0
        width, height = int(math.ceil((east - west) / step)), int(math.ceil((north - south) / step))
        transform = rasterio.transform.from_origin(west, north, step, step)
        field = smooth_field(rng, (height, width), scale)
        write_raster(
            paths[name],
            "EPSG:4326",
            transform,
            (height, width),
            1,
            "float32",
            lambda row0, row1, field=field, make=make: make(field[row0:row1])[None],
            -9999.0,
        )
        del field
    # a survey: 12 households in each of 30 clusters per surveyed district (a third of them)
    surveyed = rng.choice(len(boxes), size=max(1, len(boxes) // 3), replace=False)
    xs, ys, scores, clusters = [], [], [], []
    for district in surveyed:
        minx, miny, maxx, maxy = boxes[district].bounds
        poor_share = rng.uniform(0.1, 0.7)
        for cluster in range(30):
            cx, cy = rng.uniform(minx + 500, maxx - 500), rng.uniform(miny + 500, maxy - 500)
            xs.append(cx + rng.normal(0, 150, 12))
            ys.append(cy + rng.normal(0, 150, 12))
            poor = rng.random(12) < poor_share
            scores.append(np.where(poor, rng.integers(1, 19, 12), rng.integers(19, 100, 12)))
            clusters.append(np.full(12, district * 100 + cluster))
    lon, lat = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True).transform(
        np.concatenate(xs), np.concatenate(ys)
    )
    geopandas.GeoDataFrame(
        {"score": np.concatenate(scores).astype("int32"), "cluster": np.concatenate(clusters)},
        geometry=geopandas.points_from_xy(lon, lat),
        crs="EPSG:4326",
    ).to_file(paths["survey.gpkg"], engine="pyogrio")
    return {name.split(".")[0]: path for name, path in paths.items()}


# --- the steps and floors (each run in a fresh process: ``--step NAME FOLDER``) -------------------


def inputs_of(folder):
    from povmap_qgis.core.chips.sampling import ChipInput

    return [
        ChipInput("daytime", os.path.join(folder, "daytime.tif"), [1, 2, 3]),
        ChipInput("nightlights", os.path.join(folder, "nightlights.tif"), [1]),
        ChipInput("accessibility", os.path.join(folder, "accessibility.tif"), [1]),
    ]


def read_raster_once(path):
    """Every pixel of every band, block by block (the decode floor)."""
    import rasterio

    pixels = 0
    with rasterio.open(path) as dataset:
        for _, window in dataset.block_windows(1):
            pixels += dataset.read(window=window).size
    return pixels


def run_step(name, folder):
    """One step or floor in this process; returns (cells, extra numbers)."""
    sys.path.insert(0, ROOT)
    path = lambda *parts: os.path.join(folder, *parts)  # noqa: E731
    grid = path("grid.gpkg")
    if name == "floor_grid":
        from povmap_qgis.core import vectors

        return len(vectors.read_polygons(path("districts.gpkg"), None, "AREA", field="name")), {}
    if name == "grid":
        from povmap_qgis.core.grid.prediction_grid import (
            PredictionGridOptions,
            build_prediction_grid,
        )

        counts = build_prediction_grid(
            PredictionGridOptions(path("districts.gpkg"), grid, district_field="name", crs=UTM)
        )
        return counts["cells_kept"], {}
    cells = _grid_cells(grid)
    if name == "floor_inputs":
        pixels = sum(read_raster_once(spec.path) for spec in inputs_of(folder))
        return cells, {"pixels": pixels}
    if name in ("sample_local", "sample_spark"):
        from povmap_qgis.core.engines.steps import ChipOptions, sample_chips

        engine = "spark" if name.endswith("spark") else "local"
        summary = sample_chips(
            ChipOptions(
                grid,
                inputs_of(folder),
                path(f"{name}.chips"),
                engine=engine,
                spark_master=SPARK_MASTER,
            )
        )
        return summary["cells"], {}
    if name == "floor_model":
        return cells, model_floor(cells)
    if name.startswith("predict_"):
        from povmap_qgis.core.engines.steps import PredictOptions, predict
        from povmap_qgis.paths import bundled_model_path

        engine = "spark" if name.endswith("spark") else "local"
        source = "rasters" if "rasters" in name else "chips"
        store = path("sample_spark.chips" if engine == "spark" else "sample_local.chips")
        summary = predict(
            PredictOptions(
                bundled_model_path(),
                store if source == "chips" else None,
                grid,
                path(f"{name}.gpkg"),
                source=source,
                inputs=inputs_of(folder) if source == "rasters" else None,
                engine=engine,
                spark_master=SPARK_MASTER,
            )
        )
        return summary["cells"], {}
    if name == "floor_population":
        return cells, {"pixels": read_raster_once(path("population.tif"))}
    if name == "target":
        from povmap_qgis.core.decision.targeting import TargetOptions, target

        target(
            TargetOptions(
                predictions_path=path("predict_rasters.gpkg"),
                output_path=path("target.gpkg"),
                allocation_path=path("allocation.csv"),
                budget=0.3,
                budget_unit="share_of_people",
                rank_by="expected_poor",
                population_path=path("population.tif"),
            )
        )
        return cells, {}
    if name == "floor_districts":
        import pyogrio

        pyogrio.read_dataframe(path("predict_rasters.gpkg"))
        pyogrio.read_dataframe(path("survey.gpkg"))
        return cells, {}
    if name == "districts":
        from povmap_qgis.core.estimation.district_estimates import (
            DistrictEstimatesOptions,
            district_estimates,
        )

        district_estimates(
            DistrictEstimatesOptions(
                survey_path=path("survey.gpkg"),
                score_field="score",
                districts_path=path("districts.gpkg"),
                district_field="name",
                predictions_path=path("predict_rasters.gpkg"),
                output_path=path("districts_out.gpkg"),
                table_path=path("districts.csv"),
                cluster_field="cluster",
                population_path=path("population.tif"),
            )
        )
        return cells, {}
    raise ValueError(name)


def _grid_cells(grid):
    import pyogrio

    return int(pyogrio.read_info(grid)["features"]) if os.path.exists(grid) else 0


def model_floor(cells, sample=1024):
    """The bundled model's own throughput on in-memory chips (random values, its batches)."""
    import numpy as np

    from povmap_qgis.core.model import learning_data, model_package
    from povmap_qgis.paths import bundled_model_path

    started = time.perf_counter()
    manifest = model_package.read_package(bundled_model_path())
    models = model_package.load_members(manifest)
    load_s = time.perf_counter() - started
    rng = np.random.default_rng(0)
    size = int(manifest["chip_size"])
    chips = {
        spec["name"]: rng.random((64, size, size, len(spec["bands"]))).astype("float16")
        for spec in manifest["inputs"]
    }
    learning_data.predict_batch(models, chips, manifest["normalisation"])  # traced once
    started = time.perf_counter()
    for _ in range(sample // 64):
        learning_data.predict_batch(models, chips, manifest["normalisation"])
    rate = sample / (time.perf_counter() - started)
    return {"model_load_s": load_s, "model_cells_per_s": rate, "floor_s": load_s + cells / rate}


# --- measuring a step from outside: time, memory of the process tree, disk ---------------------


def tree_rss(pid):
    """(resident bytes of ``pid``, of its Java descendants — Spark's JVM —, of its other
    descendants — Spark's Python workers), from /proc."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as handle:
                parent = int(handle.read().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry))
    page = os.sysconf("SC_PAGE_SIZE")

    def rss(process):
        try:
            with open(f"/proc/{process}/statm", encoding="utf-8") as handle:
                return int(handle.read().split()[1]) * page
        except (OSError, ValueError, IndexError):
            return 0

    def is_java(process):
        try:
            with open(f"/proc/{process}/comm", encoding="utf-8") as handle:
                return handle.read().strip() == "java"
        except OSError:
            return False

    jvm = workers = 0
    stack = list(children.get(pid, []))
    while stack:
        process = stack.pop()
        if is_java(process):
            jvm += rss(process)
        else:
            workers += rss(process)
        stack.extend(children.get(process, []))
    return rss(pid), jvm, workers


def folder_bytes(folder):
    total = 0
    for parent, _, names in os.walk(folder):
        for name in names:
            try:
                total += os.path.getsize(os.path.join(parent, name))
            except OSError:
                pass
    return total


def measure(name, folder):
    before = folder_bytes(folder)
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--step", name, folder],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", TF_CPP_MIN_LOG_LEVEL="2"),
    )
    peaks = [0, 0, 0]
    stop = threading.Event()

    def poll():
        while not stop.wait(0.2):
            peaks[:] = [
                max(peak, now) for peak, now in zip(peaks, tree_rss(process.pid), strict=True)
            ]

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    out, err = process.communicate()
    stop.set()
    poller.join()
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"step {name} failed:\n{err[-4000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    result.update(
        wall_s=seconds,
        driver_peak_mb=peaks[0] / 2**20,
        jvm_peak_mb=peaks[1] / 2**20,
        workers_peak_mb=peaks[2] / 2**20,
        disk_mb=(folder_bytes(folder) - before) / 2**20,
    )
    return result


STEPS = [  # (step, its floor)
    ("grid", "floor_grid"),
    ("sample_local", "floor_inputs"),
    ("predict_store", "floor_model"),
    ("predict_rasters", "floor_model"),
    ("sample_spark", "floor_inputs"),
    ("predict_store_spark", "floor_model"),
    ("predict_rasters_spark", "floor_model"),
    ("target", "floor_population"),
    ("districts", "floor_districts"),
]


def machine():
    with open("/proc/loadavg", encoding="utf-8") as handle:
        load = " ".join(handle.read().split()[:3])
    with open("/proc/meminfo", encoding="utf-8") as handle:
        memory = int(handle.readline().split()[1]) / 2**20
    return f"{os.cpu_count()} cores, {memory:.0f} GiB memory, load average {load}"


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cells", type=int, default=500_000, help="the country's km² (1 km cells)")
    parser.add_argument("--districts", type=int, default=324)
    parser.add_argument("--daytime-m", type=float, default=100.0, help="daytime stand-in pixel (m)")
    parser.add_argument("--skip-spark", action="store_true")
    parser.add_argument(
        "--skip-store",
        action="store_true",
        help="no chip store: predict from the rasters only (a 500,000-cell store is ~48 GB)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated folder")
    parser.add_argument("--step", nargs=2, metavar=("NAME", "FOLDER"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.step:
        started = time.perf_counter()
        cells, extra = run_step(*arguments.step)
        print(json.dumps({"cells": cells, "seconds": time.perf_counter() - started, **extra}))
        return
    sys.path.insert(0, ROOT)
    folder = tempfile.mkdtemp(prefix="povmap-national-")
    try:
        print(f"machine at the start: {machine()}", flush=True)
        started = time.perf_counter()
        generate_country(folder, arguments.cells, arguments.districts, arguments.daytime_m)
        sizes = {
            name: os.path.getsize(os.path.join(folder, name)) / 2**20
            for name in sorted(os.listdir(folder))
        }
        print(
            f"generated in {time.perf_counter() - started:.0f} s: "
            + ", ".join(f"{name} {size:.0f} MB" for name, size in sizes.items()),
            flush=True,
        )
        floors = {}
        has_districts = os.path.exists(
            os.path.join(ROOT, "povmap_qgis", "core", "estimation", "district_estimates.py")
        )
        print(
            f"{'step':<22}{'cells':>9}{'time s':>9}{'cells/s':>9}{'floor s':>9}{'ratio':>7}"
            f"{'driver MB':>10}{'JVM MB':>8}{'workers MB':>11}{'disk MB':>9}",
            flush=True,
        )
        for step, floor in STEPS:
            if arguments.skip_spark and step.endswith("spark"):
                continue
            if arguments.skip_store and ("sample" in step or "store" in step):
                continue
            if step == "districts" and not has_districts:
                print("districts: povmap:districtestimates is not in this checkout; skipped")
                continue
            if floor not in floors:
                floors[floor] = measure(floor, folder)
            result = measure(step, folder)
            floor_s = floors[floor].get("floor_s", floors[floor]["seconds"])
            print(
                f"{step:<22}{result['cells']:>9,}{result['seconds']:>9.1f}"
                f"{result['cells'] / result['seconds']:>9,.0f}{floor_s:>9.1f}"
                f"{result['seconds'] / floor_s:>7.2f}{result['driver_peak_mb']:>10.0f}"
                f"{result['jvm_peak_mb']:>8.0f}{result['workers_peak_mb']:>11.0f}"
                f"{result['disk_mb']:>9.0f}",
                flush=True,
            )
        for floor, result in floors.items():
            extra = {k: round(v, 2) for k, v in result.items() if k not in ("cells",)}
            print(f"floor {floor}: {json.dumps(extra)}")
        print(f"machine at the end: {machine()}")
    finally:
        if arguments.keep:
            print(f"kept: {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
