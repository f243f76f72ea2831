#!/usr/bin/env python3
"""What stacking costs and gives: povmap:crossvalidate with STACKING=nested, validation and off.

On the sample generator's dim-lights case (900 cells, night lights only, 3 district folds) or
any labelled grid and chip store: for each mode, the wall time (and the inner folds' share),
the pooled out-of-fold AUC of each member, the baseline and the map, each fold's stacking
weights, and the verdict's sentence on what the image members add.
    .venv/bin/python scripts/bench_stacking.py [--members compact_cnn,stats_gbm] [--epochs 15]
        [--modes nested,validation,off] [--grid G --chips C] [--out /tmp/bench-stacking]
"""

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "scripts"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def dim_lights(folder):
    """The dim-lights case and its night-lights chip store (as tests/test_trust.py makes it)."""
    from sample_project.dim_lights import write_dim_lights_case

    from povmap_qgis.core.chips.sampling import ChipInput, ChipOptions, sample_chips

    case = write_dim_lights_case(folder)
    chips = os.path.join(folder, "dim.chips")
    if not os.path.isdir(chips):
        sample_chips(
            ChipOptions(
                grid_path=case["grid"],
                inputs=[ChipInput("nightlights", case["nightlights"], [1])],
                output_path=chips,
                resolution=100.0,
            )
        )
    return case["grid"], chips


def add_case_arguments(parser, members, out):
    """The cross-validation case a benchmark runs: --members, --epochs, --folds, --grid and
    --chips (default: the dim-lights case), --out (its folder)."""
    parser.add_argument("--members", default=members)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--grid")
    parser.add_argument("--chips")
    parser.add_argument("--out", default=out)


def case_files(arguments):
    """(grid, chip store) of the case: --grid and --chips, or the dim-lights case made in --out."""
    os.makedirs(arguments.out, exist_ok=True)
    if arguments.grid:
        return arguments.grid, arguments.chips
    return dim_lights(arguments.out)


def case_outputs(arguments, name):
    """(metrics JSON, output grid) of the case's run NAME: OUT/cv-NAME.json, OUT/cv-NAME.gpkg."""
    return (
        os.path.join(arguments.out, f"cv-{name}.json"),
        os.path.join(arguments.out, f"cv-{name}.gpkg"),
    )


def crossvalidate_case(arguments, files, name, **settings):
    """povmap:crossvalidate's core step on the case (``files``: grid, chip store), writing
    OUT/cv-NAME.json and OUT/cv-NAME.gpkg; ``settings``: seed, stacking, ... Returns its summary."""
    from povmap_qgis.core.progress import Reporter
    from povmap_qgis.core.validation.crossvalidation import CrossValidateOptions, crossvalidate

    grid, chips = files
    metrics, output_grid = case_outputs(arguments, name)
    return crossvalidate(
        CrossValidateOptions(
            chips_path=chips,
            grid_path=grid,
            metrics_path=metrics,
            output_grid_path=output_grid,
            members=arguments.members.split(","),
            folds=arguments.folds,
            epochs=arguments.epochs,
            **settings,
        ),
        Reporter(),
    )


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_case_arguments(parser, "compact_cnn,stats_gbm", "/tmp/bench-stacking")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--modes", default="nested,validation,off")
    arguments = parser.parse_args()

    files = case_files(arguments)
    for mode in arguments.modes.split(","):
        started = time.monotonic()
        summary = crossvalidate_case(arguments, files, mode, seed=arguments.seed, stacking=mode)
        pooled = summary["pooled"]
        stacking = summary["stacking"]
        print(
            json.dumps(
                {
                    "mode": mode,
                    "seconds": round(time.monotonic() - started, 1),
                    "inner_seconds": stacking["seconds"]["inner_folds"],
                    "auc": {name: round(values["auc"], 4) for name, values in pooled.items()},
                    "verdict": summary["verdict"]["judgement"],
                    "difference_interval": summary["verdict"]["difference_interval"],
                    "weights": {
                        fold: dict(
                            zip(
                                record["candidates"],
                                [round(w, 3) for w in record["weights"]],
                                strict=True,
                            )
                        )
                        for fold, record in stacking["folds"].items()
                        if "weights" in record
                    },
                    "images": stacking["images"] and stacking["images"]["sentence"],
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
