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
~10 s) is reported apart: on a cluster it is paid once per job. Each Spark step
runs twice: cold (Python workers start, TensorFlow loads in each) and warm
(workers reused), which is what a long job sees after its first tasks.
Run with the setup venv:
    .venv/bin/python scripts/bench_spark.py [--sample output/demo/sample_project] [--keep]
"""

import argparse
import filecmp
import os
import shutil
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
    from povmap_qgis.core import spark_engine

    os.environ.setdefault(spark_engine.EXTRA_CONF_VARIABLE, "spark.ui.enabled=false")
    seconds, (session, _) = timed(spark_engine.spark_session, master, "povmap-bench")
    session.sparkContext.setLogLevel("ERROR")
    return seconds, session


def bench_sampling(grid, sample, folder):
    from bench_chips import chip_inputs

    from povmap_qgis.core.chips import ChipOptions, sample_chips

    def run(name, **engine):
        output = os.path.join(folder, f"{name}.chips")
        return timed(
            sample_chips,
            ChipOptions(grid_path=grid, inputs=chip_inputs(sample), output_path=output, **engine),
        )

    seconds, summary = run("local")
    cells = summary["cells"]
    print(
        f"sample chips  local engine   {cells:6,} cells  {seconds:6.2f} s  {cells / seconds:6.0f} cells/s"
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
    from povmap_qgis.core.prediction import PredictOptions, predict
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

    seconds, _ = run("local")
    print(
        f"predict       local engine   {cells:6,} cells  {seconds:6.2f} s  {cells / seconds:6.0f} cells/s"
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


def main():
    from bench_chips import ensure_demo_sample, make_grids

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sample", default=os.path.join(ROOT, "output", "demo", "sample_project"))
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--no-predict", action="store_true")
    arguments = parser.parse_args()
    ensure_demo_sample(arguments.sample)
    folder = tempfile.mkdtemp(prefix="povmap-bench-spark-")
    try:
        training, _ = make_grids(arguments.sample, folder)
        store, cells, _ = bench_sampling(training, arguments.sample, folder)
        if not arguments.no_predict:
            bench_predict(store, training, folder, cells)
    finally:
        if not arguments.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
