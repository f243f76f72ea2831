#!/usr/bin/env python3
"""Benchmark: chip sampling on the demo sample project (issue 3's targets).

In one run, on the demo's training grid with all three inputs at 100 px:
  1. povmap's sampler (core step, as the worker runs it), cells per second;
  2. the naive way a user would write it: one warped window read per cell and
     raster (rasterio.warp.reproject of the cell's 100 × 100 px), same cells;
  3. what bounds the speed: decoding the daytime image alone, and each input's
     warps alone, with no store;
  4. peak memory (max RSS of a fresh process) at two grid sizes: the training
     grid and the prediction grid of every district.
Targets: >= 500 cells/s and >= 10x the naive way on 2 cores; peak memory flat in
the number of cells; the sampler at <= 1.2x its decode floor (the slowest input's
blocks decoded or warped alone, or all inputs' work over the cores if more: the inputs
run on one thread each). ``--floor-only``
measures that ratio alone, ``--profile`` adds a cProfile of the sampler. Run with the setup venv:
    .venv/bin/python scripts/bench_chips.py [--sample output/demo/sample_project] [--naive-cells N]
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

INPUTS = [
    ("daytime", "synthetic_daytime_s2l2a_10m.tif", [1, 2, 3]),
    ("nightlights", "synthetic_viirs_15arcsec.tif", [1]),
    ("accessibility", "synthetic_accessibility_30arcsec.tif", [1]),
]


def chip_inputs(sample):
    from povmap_qgis.core.chips.sampling import ChipInput

    return [
        ChipInput(name, os.path.join(sample, file_name), bands) for name, file_name, bands in INPUTS
    ]


def make_grids(sample, folder):
    from povmap_qgis.core.grid.prediction_grid import PredictionGridOptions, build_prediction_grid
    from povmap_qgis.core.grid.training_grid import TrainingGridOptions, build_training_grid

    training = os.path.join(folder, "training_grid.gpkg")
    build_training_grid(
        TrainingGridOptions(
            points_path=os.path.join(sample, "synthetic_survey.gpkg"),
            score_field="score",
            output_path=training,
            districts_path=os.path.join(sample, "synthetic_districts.gpkg"),
            district_field="name",
        )
    )
    everywhere = os.path.join(folder, "prediction_grid.gpkg")
    build_prediction_grid(
        PredictionGridOptions(
            area_path=os.path.join(sample, "synthetic_districts.gpkg"),
            district_field="name",
            output_path=everywhere,
            crs="EPSG:32642",
        )
    )
    return training, everywhere


def time_ours(grid, sample, output):
    from povmap_qgis.core.chips.sampling import ChipOptions, sample_chips

    started = time.perf_counter()
    summary = sample_chips(
        ChipOptions(grid_path=grid, inputs=chip_inputs(sample), output_path=output)
    )
    return time.perf_counter() - started, summary["cells"]


def time_naive(grid, sample, limit, how):
    """One warped read per cell and raster, as a user's script would do it.

    ``reproject``: rasterio.warp.reproject of the cell's 100 × 100 px from the
    open dataset (GDAL's block cache keeps decoded tiles between cells);
    ``warpedvrt``: a rasterio WarpedVRT in the grid CRS per cell and raster,
    read whole (the idiom of rasterio's documentation).
    """
    import numpy as np
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT
    from rasterio.warp import reproject

    from povmap_qgis.core.chips.grid_cells import read_grid_cells

    cells = read_grid_cells(grid)
    cell_ids, crs = cells.ids, cells.crs
    count = min(limit or len(cell_ids), len(cell_ids))
    picked = (
        np.linspace(0, len(cell_ids) - 1, count).round().astype(int)
    )  # spread over the grid, not one corner
    crs_wkt = crs.to_wkt()
    datasets = [(rasterio.open(spec.path), spec.bands) for spec in chip_inputs(sample)]
    started = time.perf_counter()
    for index in picked:
        transform = rasterio.Affine(10, 0, cells.lefts[index], 0, -10, cells.tops[index])
        for dataset, bands in datasets:
            if how == "reproject":
                chip = np.full((len(bands), 100, 100), np.nan, dtype="float32")
                reproject(
                    rasterio.band(dataset, bands),
                    chip,
                    dst_transform=transform,
                    dst_crs=crs_wkt,
                    dst_nodata=np.nan,
                    resampling=Resampling.bilinear,
                )
            else:
                with WarpedVRT(
                    dataset,
                    crs=crs_wkt,
                    transform=transform,
                    width=100,
                    height=100,
                    resampling=Resampling.bilinear,
                    nodata=np.nan,
                    dtype="float32",
                ) as vrt:
                    chip = vrt.read(bands)
    seconds = time.perf_counter() - started
    for dataset, _ in datasets:
        dataset.close()
    return seconds, count


def time_bounds(grid, sample):
    """Per input: decode/warp every block alone (no store, no statistics), one thread."""
    from povmap_qgis.core.chips.grid_cells import group_blocks, read_grid_cells
    from povmap_qgis.core.chips.raster_sampler import InputSampler

    cells = read_grid_cells(grid)
    blocks = group_blocks(range(len(cells.ids)), cells)
    figures = {}
    for spec in chip_inputs(sample):
        sampler = InputSampler(spec, cells.crs, 10.0, 100, "float16")
        started = time.perf_counter()
        for members in blocks:
            left, top = cells.lefts[members].min(), cells.tops[members].max()
            height = int(round((top - cells.tops[members].min()) / 10)) + 100
            width = int(round((cells.lefts[members].max() - left) / 10)) + 100
            if sampler.aligned:
                sampler._read_aligned(left, top, height, width)
            else:
                sampler._warp(left, top, height, width)
        figures[spec.name] = (
            time.perf_counter() - started,
            "read (aligned)" if sampler.aligned else "warp",
        )
        sampler.close()
    return figures


def peak_memory(grid, sample, output):
    """Max RSS (MB) of a fresh process that samples the grid."""
    code = (
        "import json, resource, sys, time; sys.path.insert(0, sys.argv[1]); sys.argv = sys.argv[1:]; "
        "import scripts.bench_chips as bench; seconds, cells = bench.time_ours(sys.argv[1], sys.argv[2], sys.argv[3]); "
        "print(json.dumps({'cells': cells, 'seconds': seconds, 'max_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code, ROOT, grid, sample, output],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def ensure_demo_sample(path):
    if not os.path.isfile(os.path.join(path, "synthetic_sample_metadata.json")):
        print(f"generating the demo sample project in {path} …", flush=True)
        subprocess.run(
            [
                sys.executable,
                os.path.join(ROOT, "scripts", "make_sample_project.py"),
                "--size",
                "demo",
                "--out",
                path,
                "--no-project",
                "--quiet",
            ],
            check=True,
        )


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sample", default=os.path.join(ROOT, "output", "demo", "sample_project"))
    parser.add_argument(
        "--naive-cells", type=int, default=0, help="cells for the naive way (0: all)"
    )
    parser.add_argument("--keep", action="store_true")
    parser.add_argument(
        "--floor-only",
        action="store_true",
        help="only the sampler against its decode floor (no naive ways, no peak memory)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="cProfile of the sampler: where the time goes"
    )
    arguments = parser.parse_args()
    ensure_demo_sample(arguments.sample)
    folder = tempfile.mkdtemp(prefix="povmap-bench-chips-")
    try:
        training, everywhere = make_grids(arguments.sample, folder)
        seconds, cells = time_ours(training, arguments.sample, os.path.join(folder, "train.chips"))
        size_mb = (
            sum(
                os.path.getsize(os.path.join(folder, "train.chips", name))
                for name in os.listdir(os.path.join(folder, "train.chips"))
            )
            / 1e6
        )
        print(
            f"povmap sampler              {cells:6,} cells  {seconds:6.2f} s  {cells / seconds:7.0f} cells/s  (store {size_mb:.0f} MB)",
            flush=True,
        )
        bounds = time_bounds(training, arguments.sample)
        for name, (input_seconds, how) in bounds.items():
            print(
                f"  bound: {name:13s} {how:15s} alone {input_seconds:5.2f} s  ({cells / input_seconds:5.0f} cells/s on one core)",
                flush=True,
            )
        # One thread per input: no sampler beats the slowest input alone, nor the inputs'
        # total work shared by the machine's cores.
        alone = [input_seconds for input_seconds, _ in bounds.values()]
        cores = os.cpu_count() or 1
        floor_s = max(max(alone), sum(alone) / cores)
        print(
            f"decode floor {floor_s:.2f} s (the slowest input alone {max(alone):.2f} s, all "
            f"inputs' {sum(alone):.2f} s over {cores} cores {sum(alone) / cores:.2f} s): the "
            f"sampler takes {seconds / floor_s:.2f}x it (target <= 1.2x)",
            flush=True,
        )
        if arguments.profile:
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            profiler.enable()
            time_ours(training, arguments.sample, os.path.join(folder, "profiled.chips"))
            profiler.disable()
            pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(15)
        if arguments.floor_only:
            return
        for how in ("reproject", "warpedvrt"):
            naive_seconds, naive_cells = time_naive(
                training, arguments.sample, arguments.naive_cells, how
            )
            naive_rate = naive_cells / naive_seconds
            print(
                f"naive per cell ({how:9s}) {naive_cells:6,} cells  {naive_seconds:6.2f} s  {naive_rate:7.0f} cells/s"
                f"   povmap is {cells / seconds / naive_rate:5.1f}x",
                flush=True,
            )
        print("targets: >= 500 cells/s, >= 10x the naive way", flush=True)
        for label, grid in (
            ("training grid", training),
            ("prediction grid, all districts", everywhere),
        ):
            figures = peak_memory(
                grid, arguments.sample, os.path.join(folder, f"peak-{len(label)}.chips")
            )
            print(
                f"peak memory, {label:31s} {figures['cells']:6,} cells  max RSS {figures['max_rss_mb']:6.0f} MB  "
                f"({figures['cells'] / figures['seconds']:.0f} cells/s)",
                flush=True,
            )
    finally:
        if not arguments.keep:
            shutil.rmtree(folder, ignore_errors=True)
    print(
        f"(peak memory of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)"
    )


if __name__ == "__main__":
    main()
