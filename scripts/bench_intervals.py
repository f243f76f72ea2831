#!/usr/bin/env python3
"""Do prob_low–prob_high hold their nominal coverage out of fold? povmap:crossvalidate over seeds.

One cross-validation run with three folds is three draws of a fold: its coverage moves by
10–30 points between seeds. This script runs the cross-validation with several seeds and
prints, for each run and over all of them, the checks of docs/trust.md ("Uncertainty
intervals") beside the members'-spread interval's:
- cells: share of cells whose interval holds its bin's observed share poor, bins of
  prob_mean made within each fold (and, for comparison, with every fold's cells together);
- fold-bins: each fold's reliability bin of 30+ cells on its own (the issue's "per bin
  where bins hold ≥ 30 cells"), recomputed here from the output grid with pandas;
- districts: share of districts whose mean interval holds their observed share poor;
- the mean width of the interval and of the members'-spread interval;
- how wide it would have to be: every cell's interval scaled about its calibrated logit by
  a factor (0.8–2), the fold-bins then held and the mean width — the issue's "no wider than
  it needs to be" as a curve (a factor below 1 that holds as many bins: wider than needed;
  bins held only well above 1: holding them costs that width everywhere).
A figure more than 5 points below nominal is marked SHORT; the cells' figure more than 5
above, WIDE (a fold-bin's coverage is nearly always 0 or 100 %: all its cells' intervals
hold its share poor or none do, so bins are judged by how many of them are held).

Cases: the sample generator's dim-lights case (default; two members, 15 epochs, stacking
off: tests/test_trust.py's settings) or any labelled grid and chip store, e.g. the demo's
quick cross-validation (scripts/demo's step 9):
    .venv/bin/python scripts/bench_intervals.py --seeds 1-7
    .venv/bin/python scripts/bench_intervals.py --grid DEMO/training_grid.gpkg \\
        --chips DEMO/training_grid.chips --members compact_cnn --epochs 10 \\
        --stacking validation --seeds 0-9
Each run takes 1–3 minutes on 2 cores. Results: one JSON line per run, then the summary;
everything also in OUT/intervals.json.
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

from bench_stacking import (  # noqa: E402 (after sys.path)
    add_case_arguments,
    case_files,
    case_outputs,
    crossvalidate_case,
)

MINIMUM_BIN = 30  # cells in a fold's bin for its coverage to be judged (the rule)
MARGIN = 0.05  # within 5 points of nominal
FACTORS = (0.8, 0.9, 1.0, 1.25, 1.5, 2.0)  # the widening curve's scalings of the logit half-widths


def seeds_of(text):
    """ "1-7" or "0,3,5" -> list of ints."""
    if "-" in text:
        first, last = text.split("-")
        return list(range(int(first), int(last) + 1))
    return [int(part) for part in text.split(",")]


def binned(cells):
    """The output grid's cells with their reliability bin of prob_mean (``bin``) and a float label."""
    import numpy as np

    from povmap_qgis.core.model.calibration import BINS

    bins = np.clip(np.floor(cells["prob_mean"].to_numpy() * BINS), 0, BINS - 1).astype(int)
    return cells.assign(bin=bins, label=cells["label"].astype(float))


def fold_bins(cells, minimum=MINIMUM_BIN):
    """Each (fold, reliability bin) of ``minimum``+ cells: its cells, observed share poor and the
    share of its cells whose prob_low–prob_high holds it (pandas, from the output grid)."""
    from povmap_qgis.core.model.calibration import BINS

    frame = binned(cells)
    rows = []
    for (fold, number), group in frame.groupby(["fold", "bin"]):
        if len(group) < minimum:
            continue
        observed = group["label"].mean()
        held = (group["prob_low"] <= observed) & (observed <= group["prob_high"])
        rows.append(
            {
                "fold": int(fold),
                "bin": f"{number / BINS:.1f}–{(number + 1) / BINS:.1f}",
                "cells": len(group),
                "observed": round(float(observed), 3),
                "covered": round(float(held.mean()), 3),
            }
        )
    return rows


def widening_curve(cells, nominal, factors=FACTORS, minimum=MINIMUM_BIN):
    """For each factor: the fold-bins of ``minimum``+ cells held within 5 points of nominal, and
    the mean width, with each cell's interval scaled about its calibrated logit by the factor
    (logit(prob_low), logit(prob_high) moved that many times their distance from
    logit(prob_mean); a bound at 0 or 1 stays there)."""
    import numpy as np
    from scipy.special import expit, logit

    with np.errstate(divide="ignore"):
        centre = logit(cells["prob_mean"].to_numpy(dtype="float64"))
        below = centre - logit(cells["prob_low"].to_numpy(dtype="float64"))
        above = logit(cells["prob_high"].to_numpy(dtype="float64")) - centre
    frame = binned(cells)
    labels = frame["label"].to_numpy()
    judged = [
        index for index in frame.groupby(["fold", "bin"]).indices.values() if len(index) >= minimum
    ]
    observed = [labels[index].mean() for index in judged]
    curve = []
    for factor in factors:
        low, high = expit(centre - factor * below), expit(centre + factor * above)
        held = 0
        for index, share in zip(judged, observed, strict=True):
            covered = ((low[index] <= share) & (share <= high[index])).mean()
            held += bool(covered >= nominal - MARGIN)
        curve.append(
            {
                "factor": factor,
                "fold_bins_within": held,
                "fold_bins": len(judged),
                "mean_width": float(np.mean(high - low)),
            }
        )
    return curve


def mark(value, nominal, wide=False):
    if value is None:
        return "–"
    if value < nominal - MARGIN:
        return f"{value:.1%} SHORT"
    if wide and value > nominal + MARGIN:
        return f"{value:.1%} WIDE"
    return f"{value:.1%}"


def one_run(arguments, files, seed):
    import pyogrio

    started = time.monotonic()
    summary = crossvalidate_case(
        arguments,
        files,
        str(seed),
        seed=seed,
        stacking=arguments.stacking,
        nominal=arguments.nominal,
    )
    _, output = case_outputs(arguments, str(seed))
    cells = pyogrio.read_dataframe(
        output,
        layer=pyogrio.list_layers(output)[0][0],
        columns=["fold", "label", "prob_mean", "prob_low", "prob_high"],
        read_geometry=False,
    )
    found = summary["interval_coverage"]
    bins = fold_bins(cells)
    return {
        "seed": seed,
        "seconds": round(time.monotonic() - started, 1),
        "cells": found["coverage"],
        "pooled": found.get("pooled_coverage"),
        "districts": found["districts"] and found["districts"]["coverage"],
        "district_count": found["districts"] and found["districts"]["districts"],
        "width": found["mean_width"],
        "spread_cells": found["spread"]["coverage"],
        "spread_districts": found["spread"]["district_coverage"],
        "spread_width": found["spread"]["mean_width"],
        "fold_bins": bins,
        "widening": widening_curve(cells, arguments.nominal),
    }


def summarise(runs, nominal):
    import numpy as np

    def figures(key):
        values = [run[key] for run in runs if run[key] is not None]
        return values and {
            "mean": float(np.mean(values)),
            "low": float(np.min(values)),
            "high": float(np.max(values)),
        }

    every_bin = [row for run in runs for row in run["fold_bins"]]
    widening = [
        {
            "factor": points[0]["factor"],
            "fold_bins_within": sum(point["fold_bins_within"] for point in points),
            "fold_bins": sum(point["fold_bins"] for point in points),
            "mean_width": float(np.mean([point["mean_width"] for point in points])),
        }
        for points in zip(*(run["widening"] for run in runs), strict=True)
    ]
    by_bin = {}
    for row in every_bin:
        by_bin.setdefault(row["bin"], []).append(row["covered"])
    return {
        "nominal": nominal,
        "runs": len(runs),
        **{
            key: figures(key)
            for key in (
                "cells",
                "pooled",
                "districts",
                "width",
                "spread_cells",
                "spread_districts",
                "spread_width",
            )
        },
        "fold_bins": len(every_bin),
        "fold_bins_within": sum(row["covered"] >= nominal - MARGIN for row in every_bin),
        "by_bin": {
            name: {"fold_bins": len(values), "mean": float(np.mean(values))}
            for name, values in sorted(by_bin.items())
        },
        "widening": widening,
    }


def print_summary(found):
    nominal = found["nominal"]
    print(f"\nover {found['runs']} runs, nominal {nominal:.0%} (mean; lowest–highest run):")
    for key, label, wide in (
        ("cells", "cells, bins within each fold", True),
        ("pooled", "cells, every fold's cells in one set of bins", True),
        ("districts", "districts", False),
        ("spread_cells", "members' spread: cells", True),
        ("spread_districts", "members' spread: districts", False),
    ):
        if found[key]:
            value = found[key]
            print(
                f"  {label}: {mark(value['mean'], nominal, wide)} "
                f"({value['low']:.1%}–{value['high']:.1%})"
            )
    print(
        f"  mean width {found['width']['mean']:.2f} "
        f"(members' spread {found['spread_width']['mean']:.2f})"
    )
    print(
        f"  fold-bins of {MINIMUM_BIN}+ cells whose coverage is at least nominal − "
        f"{MARGIN * 100:.0f} points: {found['fold_bins_within']} of {found['fold_bins']} "
        f"({found['fold_bins_within'] / max(found['fold_bins'], 1):.0%})"
    )
    for name, value in found["by_bin"].items():
        print(
            f"    bin {name}: {mark(value['mean'], nominal)} of the cells on average over "
            f"{value['fold_bins']} fold-bins"
        )
    print("  every interval scaled about its calibrated logit (fold-bins held; mean width):")
    for point in found["widening"]:
        print(
            f"    × {point['factor']:.2f}: {point['fold_bins_within']} of {point['fold_bins']}; "
            f"{point['mean_width']:.2f}"
        )


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_case_arguments(parser, "compact_cnn,compact_wide", "/tmp/bench-intervals")
    parser.add_argument("--stacking", default="off", choices=("nested", "validation", "off"))
    parser.add_argument("--nominal", type=float, default=0.9)
    parser.add_argument("--seeds", default="1-7", help="e.g. 1-7 or 0,2,5")
    arguments = parser.parse_args()

    files = case_files(arguments)
    runs = []
    for seed in seeds_of(arguments.seeds):
        run = one_run(arguments, files, seed)
        runs.append(run)
        print(json.dumps(run), flush=True)
    found = summarise(runs, arguments.nominal)
    print_summary(found)
    with open(os.path.join(arguments.out, "intervals.json"), "w", encoding="utf-8") as handle:
        json.dump({"settings": vars(arguments), "runs": runs, "summary": found}, handle, indent=1)


if __name__ == "__main__":
    main()
