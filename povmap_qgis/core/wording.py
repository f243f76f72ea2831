"""Small helpers for messages users read: counts with the right plural, metric values."""

from __future__ import annotations


def counted(number: int, singular: str, plural: str | None = None) -> str:
    """'1 member', '3 members', '1,200 cells'; ``plural`` when adding an s is wrong."""
    word = singular if number == 1 else (plural or f"{singular}s")
    return f"{number:,} {word}"


def metric_text(value: float | None) -> str:
    """A metric as logs and reports show it: three decimals, – where it is undefined."""
    return "–" if value is None else f"{value:.3f}"
