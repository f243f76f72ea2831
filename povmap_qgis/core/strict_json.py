"""JSON that every reader accepts: never NaN or Infinity.

Python's ``json`` writes ``NaN`` and ``Infinity`` by default, which are not
JSON (RFC 8259): JavaScript, jq, R's jsonlite and most other readers refuse
the file. Every JSON file and JSON metadata string povmap writes goes
through :func:`dumps`, which refuses non-finite numbers and says where they
are, so the cause (usually an input's values) can be named and fixed
instead of a broken file being published.
"""

from __future__ import annotations

import json
import math
from typing import IO, Any

from .errors import PovmapInputError


class NonFiniteNumberError(PovmapInputError):
    """A document holds NaN or ±Infinity; ``paths`` lists where (``inputs[1].statistics.mean[0]``)."""

    def __init__(self, parameter: str | None, what: str, paths: list[str]) -> None:
        self.paths = paths
        listed = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
        super().__init__(
            parameter,
            f"{what} would hold numbers that are not finite (NaN or infinity), which JSON cannot "
            f"represent, at {listed}; nothing was written.",
        )


def non_finite_paths(data: Any, path: str = "$") -> list[str]:
    """Where ``data`` holds a float that is NaN or infinite, as JSON-path-like strings."""
    if isinstance(data, float):
        return [] if math.isfinite(data) else [path]
    if isinstance(data, dict):
        return [
            found
            for key, value in data.items()
            for found in non_finite_paths(value, f"{path}.{key}" if path != "$" else str(key))
        ]
    if isinstance(data, list | tuple):
        return [
            found
            for index, value in enumerate(data)
            for found in non_finite_paths(value, f"{path}[{_item_name(value, index)}]")
        ]
    return []


def _item_name(value: Any, index: int) -> str | int:
    """A list item by its name where it has one (``inputs[nightlights]``), else its index."""
    name = value.get("name") if isinstance(value, dict) else None
    return name if isinstance(name, str) else index


def require_finite(data: Any, parameter: str | None, what: str) -> None:
    """Raise :class:`NonFiniteNumberError` naming the places where ``data`` is not finite."""
    paths = non_finite_paths(data)
    if paths:
        raise NonFiniteNumberError(parameter, what, paths)


def dumps(
    data: Any, parameter: str | None = None, what: str = "the JSON document", **options: Any
) -> str:
    """``json.dumps`` with ``allow_nan=False``; a non-finite number raises a message naming where."""
    require_finite(data, parameter, what)
    return json.dumps(data, allow_nan=False, **options)


def dump(
    data: Any,
    handle: IO[str],
    parameter: str | None = None,
    what: str = "the JSON document",
    **options: Any,
) -> None:
    """Write ``dumps(data)`` to an open text file."""
    handle.write(dumps(data, parameter, what, **options))


def loads(text: str | bytes) -> Any:
    """Parse strictly: ``NaN``/``Infinity`` in the text are refused (ValueError), as other readers do."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"'{constant}' is not valid JSON")

    return json.loads(text, parse_constant=refuse)
