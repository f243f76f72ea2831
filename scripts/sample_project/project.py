"""Metadata and the styled QGIS project (built by sample_project_qgz.py in its own process)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from .common import RENDER_FILE


def display_hints(daytime_path, lights, travel):
    """Stretch values for the QGIS styles (2nd–98th percentiles from the overview)."""
    import rasterio

    with rasterio.open(daytime_path) as src:
        factor = src.overviews(1)[-1] if src.overviews(1) else 1
        data = src.read(out_shape=(4, max(1, src.height // factor), max(1, src.width // factor)))
    stretch = [[int(np.percentile(band, 2)), int(np.percentile(band, 98))] for band in data]
    return {
        "daytime_rgb_stretch": stretch,
        "night_lights_range": [0.0, round(float(np.percentile(lights, 99.5)), 2)],
        "accessibility_range": [0.0, round(float(np.percentile(travel, 98)), 1)],
    }


def write_metadata(path, record):
    Path(path).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def build_project(out_dir, render, render_width, quiet):
    script = Path(__file__).resolve().parents[1] / "sample_project_qgz.py"
    command = [sys.executable, str(script), str(out_dir)]
    if render:
        command += ["--render", str(out_dir / RENDER_FILE), "--width", str(render_width)]
    if quiet:
        command.append("--quiet")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(
            f"building the QGIS project failed (exit {result.returncode}):\n{result.stderr.strip() or result.stdout.strip()}"
        )
    if not quiet and result.stdout.strip():
        print(result.stdout.strip())
