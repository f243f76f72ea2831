#!/usr/bin/env python3
"""Benchmark: training and prediction speed, and prediction memory (issue 4's targets).

On the demo sample project (run scripts/demo first; its chip stores and the
bundled model are used), in one run:
  1. training samples/s of a compact member fed from the chip store (pread,
     normalise, augment per batch) vs from in-memory arrays (same pipeline,
     chips already in RAM): the store must not be the bottleneck (>= 90 %);
  2. prediction cells/s of the compact ensemble (target >= 200 cells/s on 2
     cores) and of the paper preset's three ResNets (random weights: speed only);
  3. peak memory (max RSS of a fresh process) of prediction at two grid sizes.
Run with the setup venv:  .venv/bin/python scripts/bench_models.py
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def training_rates(chips_path, epochs):
    import keras
    import numpy as np

    from povmap_qgis.core.chips.chip_store import ChipStore
    from povmap_qgis.core.model import learning_data
    from povmap_qgis.core.model.keras_pieces import ChipBatches
    from povmap_qgis.core.model.models import build_member

    store = ChipStore(chips_path)
    rows = np.arange(len(store))
    labels = np.random.default_rng(0).integers(0, 2, len(rows))
    normalisation = learning_data.normalisation_from(store, rows)
    inputs = [
        {"name": spec["name"], "shape": [store.manifest["chip_size"]] * 2 + [len(spec["bands"])]}
        for spec in store.manifest["inputs"]
    ]
    in_memory = dict(store.batch(rows).items())

    class MemoryStore:
        """The same rows, already in RAM (what 'from in-memory arrays' means)."""

        input_names = store.input_names

        def batch(self, picked, names=None):
            return {name: in_memory[name][picked] for name in (names or self.input_names)}

    rates = {}
    for label, source in (("in-memory arrays", MemoryStore()), ("chip store", store)):
        keras.utils.set_random_seed(0)
        model = build_member("compact_cnn", inputs)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
        data = ChipBatches(source, rows, labels, normalisation, 32, training=True)
        model.fit(data, epochs=1, verbose=0, steps_per_epoch=4)  # warm-up: tracing, thread pools
        started = time.perf_counter()
        model.fit(data, epochs=epochs, verbose=0)
        rates[label] = epochs * len(rows) / (time.perf_counter() - started)
        keras.backend.clear_session()
    return rates


def prediction_rate(model_path, chips_path, cells=None, paper=False):
    import numpy as np

    from povmap_qgis.core.chips.chip_store import ChipStore
    from povmap_qgis.core.model import learning_data, model_package
    from povmap_qgis.core.model.models import PAPER_MEMBERS, build_member

    manifest = model_package.read_package(model_path)
    store = ChipStore(chips_path)
    rows = np.arange(min(cells or len(store), len(store)))
    names = [spec["name"] for spec in manifest["inputs"]]
    models = (
        [build_member(name, manifest["inputs"]) for name in PAPER_MEMBERS]
        if paper
        else model_package.load_members(manifest)
    )
    learning_data.predict_rows(
        models, store, rows[:32], manifest["normalisation"], names, 32
    )  # warm-up (tracing)
    started = time.perf_counter()
    learning_data.predict_rows(
        models, store, rows, manifest["normalisation"], names, 32 if paper else 64
    )
    return len(rows) / (time.perf_counter() - started)


def peak_memory(model_path, chips_path, grid_path, output):
    code = (
        "import json, resource, sys; sys.path.insert(0, sys.argv[1]); "
        "from povmap_qgis.core.model.prediction import PredictOptions, predict; "
        "r = predict(PredictOptions(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])); "
        "print(json.dumps({'cells': r['cells'], 'seconds': r['seconds'], 'max_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code, ROOT, model_path, chips_path, grid_path, output],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--demo", default=os.path.join(ROOT, "output", "demo"))
    parser.add_argument("--model", default=os.path.join(ROOT, "models", "demo_compact.povmodel"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--paper-cells", type=int, default=64)
    arguments = parser.parse_args()
    training_chips = os.path.join(arguments.demo, "training_grid.chips")
    if not os.path.isdir(training_chips):
        raise SystemExit(f"{training_chips} not found: run scripts/demo first")

    # Peak memory first: fresh processes, started before TensorFlow loads in this one.
    with tempfile.TemporaryDirectory(prefix="povmap-bench-models-") as folder:
        for label in ("prediction_grid", "training_grid"):
            figures = peak_memory(
                arguments.model,
                os.path.join(arguments.demo, f"{label}.chips"),
                os.path.join(arguments.demo, f"{label}.gpkg"),
                os.path.join(folder, f"{label}.gpkg"),
            )
            print(
                f"peak memory, predict {label:16s} {figures['cells']:6,} cells  max RSS {figures['max_rss_mb']:6.0f} MB "
                f"({figures['cells'] / figures['seconds']:.0f} cells/s end to end)",
                flush=True,
            )

    rates = training_rates(training_chips, arguments.epochs)
    for label, rate in rates.items():
        print(f"training compact_cnn from {label:17s} {rate:7.1f} samples/s", flush=True)
    print(
        f"store / in-memory: {rates['chip store'] / rates['in-memory arrays']:.0%}   (target >= 90 %)",
        flush=True,
    )

    compact = prediction_rate(arguments.model, training_chips)
    print(
        f"prediction, compact ensemble (3 members)  {compact:7.1f} cells/s   (target >= 200)",
        flush=True,
    )
    paper = prediction_rate(arguments.model, training_chips, arguments.paper_cells, paper=True)
    print(
        f"prediction, paper ensemble (ResNet50+50V2+101, {arguments.paper_cells} cells) {paper:7.1f} cells/s",
        flush=True,
    )


if __name__ == "__main__":
    main()
