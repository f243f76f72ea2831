"""One self-contained HTML report: inline CSS, images embedded as data URIs.

The file opens offline, can be mailed or archived as it is, and prints.
Plain Python only (no numpy, no qgis): the Processing algorithms call it in
the QGIS process after the worker has computed the numbers and QGIS has
rendered the maps. A report is a title and a list of ``Section``s, each a
list of blocks (``Paragraph``, ``KeyValues``, ``Table``, ``Figure``,
``BulletList``); any step (evaluate, crossvalidate…) builds its own.

Undefined values (None) show as "–" with a tooltip, never as NaN. A small
inline script marks each image with the size the browser decoded
(``data-natural-size``) and flags images that failed to decode.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import html
import math
import os
from collections.abc import Iterable, Sequence
from typing import Any

from ..atomic import atomic_output

IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".svg": "image/svg+xml",
    ".gif": "image/gif",
}
UNDEFINED = "–"
GROUPED_FROM = 10_000  # numbers from here up are written with thousands separators (49,995)


@dataclasses.dataclass
class Paragraph:
    text: str
    kind: str = "text"  # text, notice (framed) or warning (framed, orange)


@dataclasses.dataclass
class KeyValues:
    items: list  # [(key, value)]


@dataclasses.dataclass
class BulletList:
    items: list


@dataclasses.dataclass
class Table:
    columns: list
    rows: list  # values: str, int, float or None (undefined)
    caption: str | None = None
    digits: int = 3  # decimals of floats
    emphasis: list = dataclasses.field(default_factory=list)  # indexes of rows shown bold


@dataclasses.dataclass
class Figure:
    path: str  # PNG/JPEG/SVG file, embedded in the report
    caption: str = ""
    alt: str = ""


@dataclasses.dataclass
class Section:
    title: str
    blocks: list


def write_report(
    path: str,
    title: str,
    sections: Sequence[Section],
    subtitle: str | None = None,
    notices: Iterable[str] = (),
) -> str:
    """Write the report to ``path`` (temporary name, renamed when complete); return the path."""
    document = render_html(title, sections, subtitle, notices)
    with atomic_output(path) as partial:
        with open(partial, "w", encoding="utf-8") as handle:
            handle.write(document)
    return os.path.abspath(path)


def render_html(
    title: str,
    sections: Sequence[Section],
    subtitle: str | None = None,
    notices: Iterable[str] = (),
) -> str:
    """The report as one HTML string."""
    anchors = [f"section-{index + 1}" for index in range(len(sections))]
    contents = "".join(
        f'<li><a href="#{anchor}">{_escape(section.title)}</a></li>'
        for anchor, section in zip(anchors, sections, strict=True)
    )
    body = "".join(
        _section(section, anchor) for anchor, section in zip(anchors, sections, strict=True)
    )
    banner = "".join(
        f'<p class="notice warning">{_escape(notice)}</p>' for notice in notices if notice
    )
    created = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>{_escape(title)}</h1>"
        + (f'<p class="subtitle">{_escape(subtitle)}</p>' if subtitle else "")
        + f"{banner}<nav><ol>{contents}</ol></nav></header><main>{body}</main>"
        f"<footer>Written by povmap-qgis on {_escape(created)}. Self-contained: the images are inside this file.</footer>"
        f"<script>{SCRIPT}</script></body></html>\n"
    )


def _section(section: Section, anchor: str) -> str:
    return (
        f'<section id="{anchor}"><h2>{_escape(section.title)}</h2>'
        + "".join(_block(block) for block in section.blocks)
        + "</section>"
    )


def _block(block: Any) -> str:
    if isinstance(block, Paragraph):
        css = (
            ""
            if block.kind == "text"
            else f' class="notice {"warning" if block.kind == "warning" else ""}"'
        )
        return f"<p{css}>{_escape(block.text)}</p>"
    if isinstance(block, KeyValues):
        return (
            '<dl class="settings">'
            + "".join(
                f"<dt>{_escape(key)}</dt><dd>{_cell(value, 3)}</dd>" for key, value in block.items
            )
            + "</dl>"
        )
    if isinstance(block, BulletList):
        return "<ul>" + "".join(f"<li>{_escape(item)}</li>" for item in block.items) + "</ul>"
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Figure):
        return _figure(block)
    raise TypeError(f"a report block cannot be a {type(block).__name__}")


def _table(table: Table) -> str:
    head = "".join(f"<th>{_escape(column)}</th>" for column in table.columns)
    rows = []
    for index, row in enumerate(table.rows):
        cells = "".join(
            f'<td class="{_kind(value)}">{_cell(value, table.digits)}</td>' for value in row
        )
        emphasis = ' class="emphasis"' if index in table.emphasis else ""
        rows.append(f"<tr{emphasis}>{cells}</tr>")
    caption = f"<caption>{_escape(table.caption)}</caption>" if table.caption else ""
    return f'<div class="table"><table>{caption}<thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def _figure(figure: Figure) -> str:
    extension = os.path.splitext(figure.path)[1].lower()
    if extension not in IMAGE_TYPES:
        raise ValueError(
            f"the report cannot embed '{figure.path}': use a PNG, JPEG, GIF or SVG image"
        )
    with open(figure.path, "rb") as handle:
        encoded = base64.b64encode(handle.read()).decode("ascii")
    caption = f"<figcaption>{_escape(figure.caption)}</figcaption>" if figure.caption else ""
    return (
        f'<figure><img src="data:{IMAGE_TYPES[extension]};base64,{encoded}" alt="{_escape(figure.alt or figure.caption)}">'
        f"{caption}</figure>"
    )


def _kind(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "undefined"
    return "number" if isinstance(value, (int, float)) and not isinstance(value, bool) else "text"


def _cell(value: Any, digits: int) -> str:
    if _kind(value) == "undefined":
        return f'<span title="undefined for these cells (see Notes)">{UNDEFINED}</span>'
    grouped = "," if _kind(value) == "number" and abs(value) >= GROUPED_FROM else ""
    if isinstance(value, float):
        return f"{value:{grouped}.{digits}f}"
    if grouped:
        return f"{value:{grouped}}"
    return _escape(value)


def _escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


STYLE = """
:root { --ink: #1f2328; --muted: #57606a; --line: #d0d7de; --accent: #0072b2; --warn: #d55e00; }
* { box-sizing: border-box; }
body { font-family: "Segoe UI", "Noto Sans", "DejaVu Sans", Arial, sans-serif; color: var(--ink); margin: 0 auto;
       max-width: 1150px; padding: 1.5rem 2rem 3rem; line-height: 1.45; }
h1 { margin: 0 0 .3rem; font-size: 1.7rem; }
h2 { margin-top: 2.2rem; padding-bottom: .3rem; border-bottom: 2px solid var(--line); font-size: 1.3rem; }
.subtitle { color: var(--muted); margin-top: 0; }
nav ol { columns: 3; padding-left: 1.2rem; color: var(--muted); }
nav a { color: var(--accent); text-decoration: none; }
.notice { border-left: 4px solid var(--accent); background: #f0f6fb; padding: .6rem .9rem; }
.notice.warning { border-color: var(--warn); background: #fff4ec; font-weight: 600; }
dl.settings { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1.2rem; }
dl.settings dt { color: var(--muted); }
dl.settings dd { margin: 0; overflow-wrap: anywhere; }
.table { overflow-x: auto; margin: .8rem 0 1.2rem; }
table { border-collapse: collapse; font-size: .92rem; }
caption { caption-side: bottom; text-align: left; color: var(--muted); font-size: .85rem; padding-top: .4rem; }
th, td { padding: .3rem .75rem; border-bottom: 1px solid var(--line); }
th { background: #f6f8fa; text-align: left; vertical-align: bottom; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
td.undefined { text-align: center; color: var(--muted); }
tr.emphasis td { font-weight: 700; background: #f3f8fc; }
figure { margin: 1rem 0 1.6rem; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figure img.broken { min-height: 3rem; border: 2px dashed var(--warn); }
figcaption { color: var(--muted); font-size: .88rem; margin-top: .3rem; }
footer { margin-top: 3rem; color: var(--muted); font-size: .85rem; border-top: 1px solid var(--line); padding-top: .6rem; }
@media print { nav { display: none; } section { break-inside: avoid-page; } body { max-width: none; padding: 0; } }
"""

SCRIPT = """
document.querySelectorAll("img").forEach(function (image) {
  function mark() {
    image.dataset.naturalSize = image.naturalWidth + "x" + image.naturalHeight;
    if (!image.naturalWidth) { image.classList.add("broken"); image.title = "this image could not be shown"; }
  }
  if (image.complete) { mark(); } else { image.addEventListener("load", mark); image.addEventListener("error", mark); }
});
"""
