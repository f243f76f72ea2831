"""Checks shared by the report tests: style colours as drawn, pixel matching, headless Chromium (no QGIS)."""

import os
import re
import subprocess

import numpy as np
from required_tools import CHROMIUM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def symbol_colours(style):
    """symbol name -> (r, g, b) of the fill symbols of resources/styles/STYLE.qml as drawn on white (layer opacity applied)."""
    with open(
        os.path.join(ROOT, "resources", "styles", f"{style}.qml"), encoding="utf-8"
    ) as handle:
        qml = handle.read()
    opacity = float(re.search(r"<layerOpacity>([\d.]+)</layerOpacity>", qml).group(1))
    colours = {}
    for symbol, body in re.findall(r'<symbol name="(\d+)"[^>]*>(.*?)</symbol>', qml, flags=re.S):
        rgb = [
            int(part)
            for part in re.search(r'<prop v="([\d,]+)" k="color"/>', body).group(1).split(",")[:3]
        ]
        colours[symbol] = np.array([opacity * value + (1 - opacity) * 255 for value in rgb])
    return colours, qml


def outcome_colours():
    """outcome -> (r, g, b) of its category in resources/styles/hitmiss.qml, as drawn on white."""
    colours, qml = symbol_colours("hitmiss")
    return {
        value: colours[symbol]
        for symbol, value in re.findall(r'<category [^>]*symbol="(\d+)"[^>]*value="(\w+)"', qml)
    }


def pixels_of(pixels, colour, tolerance=3):
    return (np.abs(pixels.astype(float) - colour) <= tolerance).all(axis=1)


def chromium(*arguments, profile):
    completed = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=5000",
            *arguments,
        ],
        capture_output=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr.decode(errors="replace")[-2000:]
    return completed.stdout.decode("utf-8")
