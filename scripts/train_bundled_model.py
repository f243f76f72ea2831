#!/usr/bin/env python3
"""Train the demonstration ensemble bundled in models/ (compact preset, demo sample project).

Needs the demo's training grid and chip store (run scripts/demo first). Writes
models/demo_compact.povmodel with a manifest that says plainly it is a
demonstration model trained on synthetic data, not for policy use. The compact preset's
members (three small CNNs and stats_gbm) are combined with the baseline by stacking
(STACKING=validation, train's default; --stacking off for the members' mean).
    .venv/bin/python scripts/train_bundled_model.py [--demo output/demo] [--seed 0]
"""

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

NOTICE = (
    "Demonstration model trained on the synthetic sample project of povmap-qgis (compact preset). "
    "It has never seen real imagery or a real survey: NOT FOR POLICY USE. Train a real model with "
    "Train poverty ensemble on your own survey and imagery (see the README)."
)


def main():
    from povmap_qgis.core.model.training import TRAIN_STACKING

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--demo", default=os.path.join(ROOT, "output", "demo"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--nominal",
        type=float,
        default=None,
        help="nominal coverage of prob_low/prob_high (default: train's NOMINAL default)",
    )
    parser.add_argument("--stacking", choices=TRAIN_STACKING, default=TRAIN_STACKING[0])
    parser.add_argument("--output", default=os.path.join(ROOT, "models", "demo_compact.povmodel"))
    arguments = parser.parse_args()

    from povmap_qgis.core.model import intervals, model_package, stacking
    from povmap_qgis.core.model.training import TrainOptions, train
    from povmap_qgis.core.model.training_settings import DEFAULT_NOMINAL
    from povmap_qgis.core.progress import ConsoleReporter

    summary = train(
        TrainOptions(
            chips_path=os.path.join(arguments.demo, "training_grid.chips"),
            grid_path=os.path.join(arguments.demo, "training_grid.gpkg"),
            output_path=arguments.output,
            preset="compact",
            seed=arguments.seed,
            nominal=DEFAULT_NOMINAL if arguments.nominal is None else arguments.nominal,
            stacking=arguments.stacking,
            demonstration_notice=NOTICE,
        ),
        ConsoleReporter(),
    )
    size = sum(
        os.path.getsize(os.path.join(summary["output"], name))
        for name in os.listdir(summary["output"])
    )
    print(f"{summary['output']}: {size / 1e6:.1f} MB, {summary['seconds']} s")
    # the package carries the interval rule (prob_low/prob_high, core/model/intervals.py)
    manifest = model_package.read_package(summary["output"])
    print(intervals.describe(manifest.get("interval")))
    # and how prob_raw combines the members and the baseline (core/model/stacking.py)
    print(stacking.describe(manifest.get("stacking")))


if __name__ == "__main__":
    main()
