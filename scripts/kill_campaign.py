#!/usr/bin/env python3
"""Kill campaign: ``kill -9`` povmap runs at random moments, rerun them, check nothing is lost.

For each long algorithm (samplechips, train, predict, crossvalidate) on the tiny
sample project, through ``qgis_process`` as batch users run it:

1. an uninterrupted reference run (two, to learn whether the algorithm is
   deterministic here);
2. ``--kills`` times: start a run into a fresh output, SIGKILL at a random
   moment (seeded) ``qgis_process``, its worker or both, then check that nothing
   is published under the requested name unless complete and equal to the
   reference; rerun uninterrupted and check the output equals the reference,
   no unfinished ``.partial`` file or folder, no lock and no household copy of
   a killed run is left;
3. at the end, every input file's sha256 is unchanged.

Prints a summary table; exits 1 if any check failed. Nothing is mocked: real
processes, real signals. Usage::

    scripts/kill_campaign.py                       # 10 kills per algorithm
    scripts/kill_campaign.py --kills 2 --algorithms samplechips --seed 3
"""

import argparse
import dataclasses
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALGORITHMS = ("samplechips", "train", "predict", "crossvalidate")
KILL_TARGETS = ("qgis_process", "worker", "both")
UTM = "EPSG:32642"
TRAINING = {"PRESET": "compact", "MEMBERS": "compact_cnn", "EPOCHS": 2, "SEED": 4}


# --- processes -------------------------------------------------------------------------


def qgis_process_environment(python, tracking=False):
    environment = dict(os.environ, POVMAP_PYTHON=python, QT_QPA_PLATFORM="offscreen")
    environment.pop("QGIS_CUSTOM_CONFIG_PATH", None)
    if os.environ.get("POVMAP_QGIS_CONFIG_ROOT"):
        environment["QGIS_CUSTOM_CONFIG_PATH"] = os.environ["POVMAP_QGIS_CONFIG_ROOT"]
    if not tracking:  # MLflow off unless asked: the campaign is about the outputs
        environment["POVMAP_TRACKING"] = "off"
    return environment


def start(algorithm, parameters, environment):
    command = [os.path.join(ROOT, "scripts", "qgis-process"), "run", f"povmap:{algorithm}", "--"]
    command += [f"{key}={value}" for key, value in parameters.items()]
    return subprocess.Popen(
        command,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def run(algorithm, parameters, environment, timeout=900):
    """An uninterrupted run: (seconds, completed output)."""
    began = time.monotonic()
    process = start(algorithm, parameters, environment)
    printed, _ = process.communicate(timeout=timeout)
    if process.returncode != 0:
        raise RuntimeError(f"povmap:{algorithm} failed ({process.returncode}):\n{printed}")
    return time.monotonic() - began, printed


def timed_run(algorithm, parameters, environment, timeout=900):
    """An uninterrupted run: (seconds, seconds until its worker started or None)."""
    began = time.monotonic()
    process = start(algorithm, parameters, environment)
    worker_started = None
    while process.poll() is None and time.monotonic() - began < timeout:
        if worker_started is None and children(process.pid):
            worker_started = time.monotonic() - began
        time.sleep(0.02)
    printed, _ = process.communicate(timeout=60)
    if process.returncode != 0:
        raise RuntimeError(f"povmap:{algorithm} failed ({process.returncode}):\n{printed}")
    return time.monotonic() - began, worker_started


def children(pid):
    """Process ids of the povmap workers whose parent is ``pid`` (Linux /proc)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as handle:
                text = handle.read()
            with open(f"/proc/{name}/cmdline", "rb") as handle:
                command = handle.read()
        except OSError:
            continue
        if int(text[text.rfind(")") + 2 :].split()[1]) == pid and b"povmap_qgis.worker" in command:
            found.append(int(name))
    return found


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return False
    return text[text.rfind(")") + 2 :].split()[0] != "Z"


def wait_gone(pids, timeout=120):
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(alive(pid) for pid in pids)


# --- files -------------------------------------------------------------------------------


def sha256(path):
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def tree_hashes(path):
    """{relative path: sha256} of a file, or of every file under a folder."""
    if os.path.isfile(path):
        return {"": sha256(path)}
    hashes = {}
    for folder, _, files in os.walk(path):
        for name in files:
            full = os.path.join(folder, name)
            hashes[os.path.relpath(full, path)] = sha256(full)
    return hashes


def vector_table(path):
    """Every attribute and geometry (WKB) of a GeoPackage's layer, as plain lists."""
    import pyogrio

    layer = pyogrio.list_layers(path)[0][0]  # the data layer
    meta, _, geometry, fields = pyogrio.raw.read(path, layer=layer)
    return (
        [list(meta["fields"])]
        + [list(map(_plain, column)) for column in fields]
        + [[bytes(value) for value in geometry]]
    )


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def model_identity(path):
    """A model package's weights (sha256) and the hash of its model-defining manifest."""
    with open(os.path.join(path, "manifest.json"), encoding="utf-8") as handle:
        manifest = json.load(handle)
    weights = {
        name: sha256(os.path.join(path, name))
        for name in sorted(os.listdir(path))
        if name != "manifest.json"
    }
    return {"manifest_sha256": manifest.get("manifest_sha256"), "files": weights}


def metrics_numbers(path):
    """The per-fold metrics of a cross-validation (its tidy CSV without timings)."""
    import csv

    csv_path = os.path.splitext(path)[0] + ".csv"
    with open(csv_path, encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))


# --- the algorithms ------------------------------------------------------------------------


@dataclasses.dataclass
class Case:
    name: str
    extension: str  # of the output named by OUTPUT (or METRICS for crossvalidate)
    parameters: callable  # output path -> parameters
    identity: callable  # output path -> comparable value
    outputs: callable  # output path -> every path the run publishes


def cases(sample, prepared):
    rasters = {
        "DAYTIME": os.path.join(sample, "synthetic_daytime_s2l2a_10m.tif"),
        "NIGHTLIGHTS": os.path.join(sample, "synthetic_viirs_15arcsec.tif"),
        "ACCESSIBILITY": os.path.join(sample, "synthetic_accessibility_30arcsec.tif"),
    }
    training = TRAINING

    def crossvalidation_outputs(path):
        stem = os.path.splitext(path)[0]
        return [path, stem + ".csv", stem + "-folds.gpkg", stem + ".html"]

    return {
        "samplechips": Case(
            "samplechips",
            ".chips",
            lambda out: {"GRID": prepared["grid"], **rasters, "OUTPUT": out},
            lambda out: tree_hashes(out),
            lambda out: [out],
        ),
        "train": Case(
            "train",
            ".povmodel",
            lambda out: {
                "CHIPS": prepared["night_chips"],
                "GRID": prepared["grid"],
                **training,
                "OUTPUT": out,
            },
            model_identity,
            lambda out: [out],
        ),
        "predict": Case(
            "predict",
            ".gpkg",
            lambda out: {
                "MODEL": prepared["model"],
                "CHIPS": prepared["night_chips"],
                "GRID": prepared["grid"],
                "OUTPUT": out,
            },
            vector_table,
            lambda out: [out],
        ),
        "crossvalidate": Case(
            "crossvalidate",
            ".json",
            lambda out: {
                "CHIPS": prepared["night_chips"],
                "GRID": prepared["grid"],
                **training,
                "EPOCHS": 1,
                "FOLDS": 3,
                "METRICS": out,
                "REPORT": os.path.splitext(out)[0] + ".html",
                "OUTPUT_GRID": os.path.splitext(out)[0] + "-folds.gpkg",
            },
            lambda out: (
                metrics_numbers(out),
                vector_table(os.path.splitext(out)[0] + "-folds.gpkg"),
            ),
            crossvalidation_outputs,
        ),
    }


def prepare(sample, folder, environment, algorithms):
    """The training grid, and the store and model that train/predict/crossvalidate read (not killed)."""
    os.makedirs(folder, exist_ok=True)
    grid = os.path.join(folder, "training_grid.gpkg")
    run(
        "buildtraininggrid",
        {
            "INPUT": os.path.join(sample, "synthetic_survey.gpkg"),
            "SCORE_FIELD": "score",
            "DISTRICTS": os.path.join(sample, "synthetic_districts.gpkg"),
            "DISTRICT_FIELD": "name",
            "CRS": UTM,
            "MIN_OBS": 8,
            "OUTPUT": grid,
        },
        environment,
    )
    prepared = {"grid": grid}
    if set(algorithms) - {"samplechips"}:
        prepared["night_chips"] = os.path.join(folder, "night.chips")
        run(
            "samplechips",
            {
                "GRID": grid,
                "NIGHTLIGHTS": os.path.join(sample, "synthetic_viirs_15arcsec.tif"),
                "OUTPUT": prepared["night_chips"],
            },
            environment,
        )
    if "predict" in algorithms:
        prepared["model"] = os.path.join(folder, "model.povmodel")
        run(
            "train",
            {
                "CHIPS": prepared["night_chips"],
                "GRID": grid,
                **TRAINING,
                "OUTPUT": prepared["model"],
            },
            environment,
        )
    return prepared


# --- one kill ------------------------------------------------------------------------------


@dataclasses.dataclass
class KillResult:
    target: str
    at_s: float
    finished_before_kill: bool = False
    published_after_kill: bool = False
    published_equal: bool = True
    resumed: bool = False
    rerun_ok: bool = False
    rerun_equal: bool = False
    partials_left: list = dataclasses.field(default_factory=list)
    locks_left: list = dataclasses.field(default_factory=list)
    exports_left: list = dataclasses.field(default_factory=list)
    rerun_s: float = 0.0
    gone_s: float = 0.0  # from the kill until every process of the killed run had ended
    problem: str = ""

    @property
    def ok(self):
        return (
            self.published_equal
            and self.rerun_ok
            and self.rerun_equal
            and not self.partials_left
            and not self.locks_left
            and not self.exports_left
        )


def unfinished(folder):
    return sorted(name for name in os.listdir(folder) if ".partial" in name)


def locks(folder):
    return sorted(name for name in os.listdir(folder) if name.endswith(".lock"))


def exports_of(pids):
    sys.path.insert(0, ROOT)
    from povmap_qgis.core.run_folders import exports_root

    root = exports_root()
    if not os.path.isdir(root):
        return []
    return sorted(
        name for name in os.listdir(root) if any(name.startswith(f"run-{pid}-") for pid in pids)
    )


def kill_once(case, reference, folder, index, window, rng, environment, targets):
    """One run killed at a moment drawn from ``window`` (seconds after its start), then rerun."""
    output = os.path.join(folder, f"{case.name}-{index:02d}{case.extension}")
    target = rng.choice(targets)
    at = rng.uniform(*window)
    duration = window[1]
    result = KillResult(target, round(at, 2))
    process = start(case.name, case.parameters(output), environment)
    killed_pids = [process.pid]
    deadline = time.monotonic() + at
    workers = []
    while time.monotonic() < deadline and process.poll() is None:
        workers = children(process.pid) or workers
        time.sleep(0.02)
    workers = children(process.pid) or workers
    if process.poll() is not None:
        result.finished_before_kill = True
    else:
        if target == "worker" and not workers:
            target = result.target = "qgis_process"  # no worker yet: the only process there is
        victims = {
            "qgis_process": [process.pid],
            "worker": workers or [process.pid],
            "both": [process.pid, *workers],
        }[target]
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    killed_at = time.monotonic()
    process.communicate()
    killed_pids += workers
    if not wait_gone(killed_pids):
        result.problem = "a killed run's process kept running"
    result.gone_s = round(time.monotonic() - killed_at, 2)
    published = [path for path in case.outputs(output) if os.path.exists(path)]
    if published:
        result.published_after_kill = True
        try:
            result.published_equal = case.identity(output) == reference
        except Exception as error:  # a half-written output under the requested name
            result.published_equal = False
            result.problem = f"published output unreadable: {error}"
        if not result.published_equal and process.returncode != 0:
            result.problem = result.problem or "a killed run published a different output"
    for path in published:  # the rerun starts from what the kill left, minus a finished output
        if result.published_equal:
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    began = time.monotonic()
    rerun = start(case.name, case.parameters(output), environment)
    printed, _ = rerun.communicate(timeout=max(600, 20 * duration))
    result.rerun_ok = rerun.returncode == 0
    if not result.rerun_ok:
        result.problem = result.problem or printed[-800:]
    else:
        result.resumed = "Resuming the chip store" in printed
        result.rerun_equal = case.identity(output) == reference
    result.partials_left = unfinished(folder)
    result.locks_left = locks(folder)
    result.exports_left = exports_of(killed_pids)
    result.rerun_s = round(time.monotonic() - began, 1)
    return result


# --- the campaign --------------------------------------------------------------------------


def input_files(sample, prepared):
    files = [os.path.join(sample, name) for name in sorted(os.listdir(sample))]
    files += list(prepared.values())
    return {path: tree_hashes(path) for path in files if os.path.exists(path)}


def campaign(options):
    rng = random.Random(options.seed)
    work = os.path.abspath(options.work or tempfile.mkdtemp(prefix="povmap-kill-campaign-"))
    os.makedirs(work, exist_ok=True)
    environment = qgis_process_environment(options.python, options.tracking)
    sample = os.path.abspath(options.sample) if options.sample else None
    if not sample:
        sample = os.path.join(work, "sample")
        subprocess.run(
            [
                options.python,
                os.path.join(ROOT, "scripts", "make_sample_project.py"),
                "--size",
                "tiny",
                "--out",
                sample,
                "--quiet",
            ],
            check=True,
        )
    print(f"Work folder: {work}; sample: {sample}; seed {options.seed}", flush=True)
    prepared = prepare(sample, os.path.join(work, "inputs"), environment, options.algorithms)
    inputs_before = input_files(sample, prepared)
    all_cases = cases(sample, prepared)
    rows, failures = [], 0
    for name in options.algorithms:
        case = all_cases[name]
        folder = os.path.join(work, name)
        os.makedirs(folder)
        first, second = (
            os.path.join(folder, f"reference-{label}{case.extension}") for label in "ab"
        )
        duration, worker_started = timed_run(case.name, case.parameters(first), environment)
        window = (0.05 * duration, duration)
        if options.during_worker and worker_started is not None:
            window = (worker_started + 0.5, max(worker_started + 0.6, 0.95 * duration))
        reference = case.identity(first)
        deterministic = None
        if options.determinism:
            run(case.name, case.parameters(second), environment)
            deterministic = case.identity(second) == reference
        for path in case.outputs(first) + case.outputs(second):
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
        print(
            f"{name}: reference run {duration:.1f} s (worker from {worker_started or 0:.1f} s; "
            f"kills drawn in {window[0]:.1f}-{window[1]:.1f} s)"
            + (
                ""
                if deterministic is None
                else f", two uninterrupted runs identical: {deterministic}"
            ),
            flush=True,
        )
        results = []
        for index in range(options.kills):
            result = kill_once(
                case, reference, folder, index, window, rng, environment, options.targets
            )
            results.append(result)
            status = "ok" if result.ok else f"FAILED {result.problem}"
            print(
                f"  kill {index + 1:2d}: {result.target:12s} at {result.at_s:6.2f} s"
                f"{' (had finished)' if result.finished_before_kill else ''}"
                f"{' published' if result.published_after_kill else ''}"
                f"{' resumed' if result.resumed else ''}; all gone after {result.gone_s} s; "
                f"rerun {result.rerun_s} s: {status}"
                + (
                    f" partials={result.partials_left} locks={result.locks_left} "
                    f"exports={result.exports_left}"
                    if not result.ok
                    else ""
                ),
                flush=True,
            )
            failures += not result.ok
        rows.append((name, duration, deterministic, results))
    inputs_after = input_files(sample, prepared)
    changed = sorted(
        path for path, hashes in inputs_before.items() if inputs_after.get(path) != hashes
    )
    print_summary(rows, changed)
    if changed:
        failures += 1
    if not options.keep and not failures and not options.work:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failures else 0


def print_summary(rows, changed):
    header = (
        "algorithm",
        "ref s",
        "determ.",
        "kills",
        "qp/wk/both",
        "killed before publish",
        "published (equal)",
        "resumed",
        "max s to end",
        "rerun identical",
        "partials",
        "locks",
        "exports",
        "ok",
    )
    table = [header]
    for name, duration, deterministic, results in rows:
        count = {target: sum(r.target == target for r in results) for target in KILL_TARGETS}
        published = [r for r in results if r.published_after_kill]
        table.append(
            (
                name,
                f"{duration:.1f}",
                "-" if deterministic is None else ("yes" if deterministic else "no"),
                str(len(results)),
                "/".join(str(count[target]) for target in KILL_TARGETS),
                str(sum(not r.published_after_kill for r in results)),
                f"{len(published)} ({sum(r.published_equal for r in published)})",
                str(sum(r.resumed for r in results)),
                f"{max((r.gone_s for r in results), default=0):.1f}",
                f"{sum(r.rerun_equal for r in results)}/{len(results)}",
                str(sum(bool(r.partials_left) for r in results)),
                str(sum(bool(r.locks_left) for r in results)),
                str(sum(bool(r.exports_left) for r in results)),
                f"{sum(r.ok for r in results)}/{len(results)}",
            )
        )
    widths = [max(len(row[column]) for row in table) for column in range(len(header))]
    for position, row in enumerate(table):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if position == 0:
            print("  ".join("-" * width for width in widths))
    print(
        "inputs unchanged (sha256): "
        + ("yes" if not changed else "NO, changed: " + ", ".join(changed))
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=10, help="kills per algorithm (default 10)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the kill moments and targets")
    parser.add_argument(
        "--algorithms",
        default=",".join(ALGORITHMS),
        help=f"comma-separated, from {', '.join(ALGORITHMS)}",
    )
    parser.add_argument("--sample", help="the tiny sample project folder (default: generate one)")
    parser.add_argument("--work", help="work folder (default: a new temporary one)")
    parser.add_argument(
        "--python",
        default=os.environ.get("POVMAP_PYTHON")
        or os.path.join(
            os.environ.get("POVMAP_VENV", os.path.join(ROOT, ".venv")), "bin", "python"
        ),
        help="the worker Python (default: POVMAP_PYTHON, else the venv's)",
    )
    parser.add_argument(
        "--no-determinism",
        dest="determinism",
        action="store_false",
        help="skip the second uninterrupted reference run",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument(
        "--targets",
        default=",".join(KILL_TARGETS),
        help=f"what may be killed, drawn at random: {', '.join(KILL_TARGETS)}",
    )
    parser.add_argument(
        "--during-worker",
        action="store_true",
        help="draw kill moments while the worker runs (default: the whole run)",
    )
    parser.add_argument(
        "--tracking", action="store_true", help="record the runs in MLflow (default: off)"
    )
    options = parser.parse_args(argv)
    options.algorithms = [name.strip() for name in options.algorithms.split(",") if name.strip()]
    options.targets = [name.strip() for name in options.targets.split(",") if name.strip()]
    if not options.targets or set(options.targets) - set(KILL_TARGETS):
        parser.error(f"--targets: choose from {', '.join(KILL_TARGETS)}")
    unknown = sorted(set(options.algorithms) - set(ALGORITHMS))
    if unknown:
        parser.error(f"unknown algorithm(s) {', '.join(unknown)}; use {', '.join(ALGORITHMS)}")
    if not sys.platform.startswith("linux"):
        parser.error("the campaign reads /proc to find the worker: Linux only")
    return campaign(options)


if __name__ == "__main__":
    sys.exit(main())
