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
With --predict-cells N (e.g. 200000): predicting at scale on the demo districts cut into
about N small cells (chips of 16 px or more), with a model trained for that cell size on the
demo survey (a compact CNN and the statistics member, a few epochs: a model for timing,
not for maps). Each run in a fresh process: (a) the local engine's two steps, sample
chips into a store then predict from it; (b) the local engine predicting from the rasters
(SOURCE=rasters, no store); (c) Spark local[2] predicting from the rasters (session start
reported apart). Printed: times, cells/s, the driver's peak memory, the ratios of the
three measured in this run, and the largest difference of prob_mean from (a).
With --synthetic-cells N (e.g. 200000), also: the demo districts cut into about N
small cells (chips of a few px, so that the store stays small), sampled by the local
engine and by Spark local[2], each in a fresh process whose peak memory (max RSS of
the Python driver; Spark's JVM is bounded by spark.driver.memory) is reported at N/10
and N cells: it should stay flat. Run with the setup venv:
    .venv/bin/python scripts/bench_spark.py [--sample output/demo/sample_project] [--keep]
        [--synthetic-cells 200000] [--predict-cells 200000] [--no-predict] [--no-demo]
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
    from povmap_qgis.core.engines import spark_session

    os.environ.setdefault(spark_session.EXTRA_CONF_VARIABLE, "spark.ui.enabled=false")
    seconds, (session, _) = timed(spark_session.spark_session, master, "povmap-bench")
    session.sparkContext.setLogLevel("ERROR")
    return seconds, session


def bench_sampling(grid, sample, folder):
    from bench_chips import chip_inputs

    from povmap_qgis.core.engines.steps import ChipOptions, sample_chips

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
    from povmap_qgis.core.engines.steps import PredictOptions, predict
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

    from povmap_qgis.core.engines.steps import ChipOptions, sample_chips

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


SCALE_MIN_CHIP_PX = 16  # the compact CNN's stem and three poolings need 16 px at least


def scale_resolution(cell_size):
    """10 m, or finer where a cell would be under SCALE_MIN_CHIP_PX pixels (120 m cells: 7.5 m)."""
    return cell_size / max(SCALE_MIN_CHIP_PX, round(cell_size / 10.0))


def scale_model(sample, folder, cell_size):
    """A small package for cells of ``cell_size`` m (compact CNN + statistics member)."""
    from bench_chips import chip_inputs

    from povmap_qgis.core.engines.steps import ChipOptions, sample_chips
    from povmap_qgis.core.grid.training_grid import TrainingGridOptions, build_training_grid
    from povmap_qgis.core.model.training import TrainOptions, train

    grid = os.path.join(folder, f"training_{cell_size:g}m.gpkg")
    build_training_grid(
        TrainingGridOptions(
            points_path=os.path.join(sample, "synthetic_survey.gpkg"),
            score_field="score",
            output_path=grid,
            cell_size=cell_size,
            min_obs=3,
            crs="EPSG:32642",
            districts_path=os.path.join(sample, "synthetic_districts.gpkg"),
            district_field="name",
        )
    )
    store = os.path.join(folder, f"training_{cell_size:g}m.chips")
    sample_chips(
        ChipOptions(
            grid_path=grid,
            inputs=chip_inputs(sample),
            output_path=store,
            resolution=scale_resolution(cell_size),
        )
    )
    model = os.path.join(folder, f"scale_{cell_size:g}m.povmodel")
    train(
        TrainOptions(
            chips_path=store,
            grid_path=grid,
            output_path=model,
            members=["compact_cnn", "stats_gbm"],
            epochs=2,
        )
    )
    return model


def measure_predict(kind, grid, sample, model, output, master):
    """One prediction run in this (fresh) process; prints its figures as JSON."""
    from bench_chips import chip_inputs

    from povmap_qgis.core.engines.steps import ChipOptions, PredictOptions, predict, sample_chips

    figures = {}
    started = time.perf_counter()
    if kind == "store":
        store = output.replace(".gpkg", ".chips")
        with open(os.path.join(model, "manifest.json"), encoding="utf-8") as handle:
            resolution = json.load(handle)["resolution"]  # the store the model needs
        figures["sample_seconds"], _ = timed(
            sample_chips,
            ChipOptions(
                grid_path=grid,
                inputs=chip_inputs(sample),
                output_path=store,
                resolution=resolution,
            ),
        )
        options = PredictOptions(model, store, grid, output)
    else:
        engine = "spark" if kind == "spark" else "local"
        if engine == "spark":
            figures["session_seconds"], _ = start_session(master)
        options = PredictOptions(
            model,
            None,
            grid,
            output,
            source="rasters",
            inputs=chip_inputs(sample),
            engine=engine,
            spark_master=master,
        )
    figures["predict_seconds"], summary = timed(predict, options)
    figures["seconds"] = time.perf_counter() - started - figures.get("session_seconds", 0.0)
    figures["cells"] = summary["cells"]
    figures["peak_mb"] = peak_resident_mb()
    if kind == "store":
        figures["store_bytes"] = sum(
            os.path.getsize(os.path.join(store, name)) for name in os.listdir(store)
        )
        shutil.rmtree(store)
    print(json.dumps(figures))


def bench_predict_at_scale(sample, folder, cells):
    import pyogrio

    grid = synthetic_grid(sample, folder, cells)
    info = pyogrio.read_dataframe(grid, max_features=1)
    cell_size = float(info.geometry.iloc[0].bounds[2] - info.geometry.iloc[0].bounds[0])
    started = time.perf_counter()
    model = scale_model(sample, folder, cell_size)
    print(
        f"predict at scale: {cell_size:g} m cells ({cell_size / scale_resolution(cell_size):g} px "
        f"chips at {scale_resolution(cell_size):g} m, three inputs), "
        f"model trained in {time.perf_counter() - started:.0f} s (compact_cnn + stats_gbm)",
        flush=True,
    )
    runs, outputs = {}, {}
    for kind, label in (
        ("store", "local: chips then predict"),
        ("rasters", "local: from rasters"),
        ("spark", "spark local[2]: rasters"),
    ):
        outputs[kind] = os.path.join(folder, f"scale-{kind}.gpkg")
        completed = subprocess.run(
            [
                sys.executable,
                __file__,
                "--measure-predict",
                kind,
                grid,
                sample,
                model,
                outputs[kind],
                "local[2]",
            ],
            capture_output=True,
            text=True,
        )
        if completed.returncode:
            raise SystemExit(completed.stderr[-3000:])
        figures = runs[kind] = json.loads(completed.stdout.strip().splitlines()[-1])
        detail = (
            f" (sampling {figures['sample_seconds']:.1f} s into a {figures['store_bytes'] / 1e6:,.0f} MB "
            f"store, predicting {figures['predict_seconds']:.1f} s)"
            if kind == "store"
            else (
                f" (+{figures['session_seconds']:.1f} s session start)" if kind == "spark" else ""
            )
        )
        print(
            f"predict       {label:26s} {figures['cells']:7,} cells  {figures['seconds']:7.2f} s  "
            f"{figures['cells'] / figures['seconds']:6.0f} cells/s  "
            f"driver peak {figures['peak_mb']:5.0f} MB{detail}",
            flush=True,
        )
    reference = pyogrio.read_dataframe(outputs["store"], read_geometry=False)
    for kind in ("rasters", "spark"):
        found = pyogrio.read_dataframe(outputs[kind], read_geometry=False)
        differences = {
            name: float((found[name] - reference[name]).abs().max())
            for name in reference.columns
            if name.startswith("prob_")
        }
        listed = ", ".join(f"{name} {value:.2g}" for name, value in differences.items())
        print(f"largest difference from the store's predictions, {kind}: {listed}")
    local, rasters, spark = (runs[kind]["seconds"] for kind in ("store", "rasters", "spark"))
    print(
        f"ratios (time): spark rasters / local chips+predict = {spark / local:.2f}; "
        f"spark rasters / local rasters = {spark / rasters:.2f}; "
        f"local rasters / local chips+predict = {rasters / local:.2f}"
    )


def main():
    from bench_chips import ensure_demo_sample, make_grids

    if sys.argv[1:2] == ["--measure"]:
        measure(*sys.argv[2:7])
        return
    if sys.argv[1:2] == ["--measure-predict"]:
        measure_predict(*sys.argv[2:8])
        return

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sample", default=os.path.join(ROOT, "output", "demo", "sample_project"))
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--no-predict", action="store_true")
    parser.add_argument("--no-demo", action="store_true", help="only the synthetic grid")
    parser.add_argument("--synthetic-cells", type=int, default=0)
    parser.add_argument("--predict-cells", type=int, default=0)
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
        if arguments.predict_cells:
            bench_predict_at_scale(arguments.sample, folder, arguments.predict_cells)
    finally:
        if not arguments.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
