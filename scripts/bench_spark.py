#!/usr/bin/env python3
"""Benchmark: the Spark engine against the local one (issue 16), on the demo sample project.

In one run, on the demo's training grid with all three inputs at 100 px:
  1. sampling chips: the local engine (one process, a thread per input), then
     ENGINE=spark on local[1] and local[2] — cells/s and Spark's overhead
     (Spark time / local time); every Spark store is checked byte-identical
     to the local one;
  2. predicting with the bundled demo ensemble on that store: local, then
     Spark local[1] and local[2].
The Spark session is started before each timed step and its start-up (the JVM,
~10 s) is reported apart: on a cluster it is paid once per job. Each step runs
twice: cold (first reads of the rasters; for Spark, Python workers start and
TensorFlow loads in each) and warm (page cache filled, workers reused), which is
what a long job sees after its first tasks; Spark's overhead is its time over the
warm local run.
With --synthetic-cells N (e.g. 200000), also: the demo districts cut into about N
small cells (chips of a few px, so that the store stays small), sampled by the local
engine and by Spark local[2], each in a fresh process whose peak memory (max RSS of
the Python driver; Spark's JVM is bounded by spark.driver.memory) is reported at N/10
and N cells: it should stay flat. Run with the setup venv:
    .venv/bin/python scripts/bench_spark.py [--sample output/demo/sample_project] [--keep]
        [--synthetic-cells 200000] [--no-predict]
"""

import argparse
import filecmp
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
sys.path.insert(0, os.path.join(ROOT, "scripts"))

MASTERS = ("local[1]", "local[2]")


def same_store(first, second):
    names = sorted(os.listdir(first))
    return names == sorted(os.listdir(second)) and all(
        filecmp.cmp(os.path.join(first, name), os.path.join(second, name), shallow=False)
        for name in names
        if name != "manifest.json"  # holds the output-independent settings, compared below
    )


def timed(function, *arguments, **keywords):
    started = time.perf_counter()
    result = function(*arguments, **keywords)
    return time.perf_counter() - started, result


def start_session(master):
    from povmap_qgis.core.model import spark_engine

    os.environ.setdefault(spark_engine.EXTRA_CONF_VARIABLE, "spark.ui.enabled=false")
    seconds, (session, _) = timed(spark_engine.spark_session, master, "povmap-bench")
    session.sparkContext.setLogLevel("ERROR")
    return seconds, session


def bench_sampling(grid, sample, folder):
    from bench_chips import chip_inputs

    from povmap_qgis.core.chips.sampling import ChipOptions, sample_chips

    def run(name, **engine):
        output = os.path.join(folder, f"{name}.chips")
        return timed(
            sample_chips,
            ChipOptions(grid_path=grid, inputs=chip_inputs(sample), output_path=output, **engine),
        )

    for run_number in (1, 2):  # the second run finds the rasters in the page cache, as Spark's do
        seconds, summary = run(f"local-{run_number}")
        cells = summary["cells"]
        print(
            f"sample chips  local engine   {cells:6,} cells  {seconds:6.2f} s  "
            f"{cells / seconds:6.0f} cells/s  ({'cold' if run_number == 1 else 'warm'})"
        )
    rows = {"local": seconds}
    for master in MASTERS:
        startup, session = start_session(master)
        for run_number in (1, 2):
            spark_seconds, spark_summary = run(
                f"{master.strip('[]*')}-{run_number}", engine="spark", spark_master=master
            )
            identical = same_store(summary["output"], spark_summary["output"])
            rows[master] = spark_seconds
            print(
                f"sample chips  spark {master:8s} {cells:6,} cells  {spark_seconds:6.2f} s  "
                f"{cells / spark_seconds:6.0f} cells/s  overhead {spark_seconds / seconds:4.2f}x  "
                f"({'cold' if run_number == 1 else 'warm'}; +{startup:.1f} s session start; "
                f"store identical: {identical})"
            )
        session.stop()
    return summary["output"], cells, rows


def bench_predict(store, grid, folder, cells):
    from povmap_qgis.core.model.prediction import PredictOptions, predict
    from povmap_qgis.paths import bundled_model_path

    def run(name, **engine):
        return timed(
            predict,
            PredictOptions(
                model_path=bundled_model_path(),
                chips_path=store,
                grid_path=grid,
                output_path=os.path.join(folder, f"{name}.gpkg"),
                **engine,
            ),
        )

    for run_number in (1, 2):
        seconds, _ = run(f"local-{run_number}")
        print(
            f"predict       local engine   {cells:6,} cells  {seconds:6.2f} s  "
            f"{cells / seconds:6.0f} cells/s  ({'cold' if run_number == 1 else 'warm'})"
        )
    for master in MASTERS:
        startup, session = start_session(master)
        for run_number in (1, 2):  # the second run finds TensorFlow loaded in the workers
            spark_seconds, _ = run(
                f"{master.strip('[]*')}-{run_number}", engine="spark", spark_master=master
            )
            print(
                f"predict       spark {master:8s} {cells:6,} cells  {spark_seconds:6.2f} s  "
                f"{cells / spark_seconds:6.0f} cells/s  overhead {spark_seconds / seconds:4.2f}x  "
                f"({'cold' if run_number == 1 else 'warm'}; +{startup:.1f} s session start)"
            )
        session.stop()


def synthetic_grid(sample, folder, cells):
    """The demo districts in cells of (a multiple of 10 m) chosen for about ``cells`` cells."""
    from povmap_qgis.core.grid.prediction_grid import PredictionGridOptions, build_prediction_grid

    cell_size = max(20.0, round(1000.0 * (3000.0 / cells) ** 0.5 / 10.0) * 10.0)
    path = os.path.join(folder, f"synthetic_{cells}.gpkg")
    build_prediction_grid(
        PredictionGridOptions(
            area_path=os.path.join(sample, "synthetic_districts.gpkg"),
            output_path=path,
            cell_size=cell_size,
            crs="EPSG:32642",
        )
    )
    return path


def peak_resident_mb():
    """This process's peak resident memory (VmHWM; ru_maxrss would include the parent's at fork)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(grid, sample, output, engine, master):
    """One sampling run in this (fresh) process: seconds, cells and the process's peak memory."""
    from bench_chips import chip_inputs

    from povmap_qgis.core.chips.sampling import ChipOptions, sample_chips

    if engine == "spark":
        start_session(master)
    seconds, summary = timed(
        sample_chips,
        ChipOptions(
            grid_path=grid,
            inputs=chip_inputs(sample),
            output_path=output,
            engine=engine,
            spark_master=master,
        ),
    )
    peak_mb = peak_resident_mb()
    print(json.dumps({"seconds": seconds, "cells": summary["cells"], "peak_mb": peak_mb}))


def bench_synthetic(sample, folder, cells):
    for size in (cells // 10, cells):
        grid = synthetic_grid(sample, folder, size)
        for engine, master in (("local", "local[*]"), ("spark", "local[2]")):
            output = os.path.join(folder, f"synthetic-{size}-{engine}.chips")
            completed = subprocess.run(
                [sys.executable, __file__, "--measure", grid, sample, output, engine, master],
                capture_output=True,
                text=True,
                check=True,
            )
            figures = json.loads(completed.stdout.strip().splitlines()[-1])
            label = engine if engine == "local" else f"spark {master}"
            print(
                f"synthetic     {label:14s} {figures['cells']:7,} cells  "
                f"{figures['seconds']:6.2f} s  {figures['cells'] / figures['seconds']:6.0f} cells/s  "
                f"driver peak memory {figures['peak_mb']:5.0f} MB",
                flush=True,
            )
            shutil.rmtree(output, ignore_errors=True)


def main():
    from bench_chips import ensure_demo_sample, make_grids

    if sys.argv[1:2] == ["--measure"]:
        measure(*sys.argv[2:7])
        return

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sample", default=os.path.join(ROOT, "output", "demo", "sample_project"))
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--no-predict", action="store_true")
    parser.add_argument("--no-demo", action="store_true", help="only the synthetic grid")
    parser.add_argument("--synthetic-cells", type=int, default=0)
    arguments = parser.parse_args()
    ensure_demo_sample(arguments.sample)
    folder = tempfile.mkdtemp(prefix="povmap-bench-spark-")
    try:
        if not arguments.no_demo:
            training, _ = make_grids(arguments.sample, folder)
            store, cells, _ = bench_sampling(training, arguments.sample, folder)
            if not arguments.no_predict:
                bench_predict(store, training, folder, cells)
        if arguments.synthetic_cells:
            bench_synthetic(arguments.sample, folder, arguments.synthetic_cells)
    finally:
        if not arguments.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
