"""The labelled grid as a step reads it: the ``TRUTH`` of evaluate and target (a training grid
or a ground-truth survey gridded by Build training grid, any layer or table with the cell id
and ``label``, or labelled polygons of an own grid with its id).

One reader, so every step accepts, converts and refuses the same files with the same words:
ids and labels written as text (a CSV without its .csvt) are read as numbers; cells without a
label are left out with a warning; labels other than 0/1, empty, fractional or repeated ids
are refused naming TRUTH. ``check_cell_ids`` is the cell-id rule of a layer a step joins on.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..errors import PovmapInputError
from ..geopackage import povmap_layer_metadata
from ..names import CELL_ID
from .cells import crs_to_string

if TYPE_CHECKING:
    import pandas as pd

    from ..progress import Reporter


def layer_fields(
    path: str, layer: str | None, parameter: str
) -> tuple[str | None, list[str], dict[str, Any]]:
    """The layer's name (the first one with geometries when None), field names and description; no CRS needed."""
    from ..vectors import layer_info, spatial_layer

    layer = spatial_layer(path, layer, parameter)
    info = layer_info(path, layer, parameter, require_crs=False)
    return layer, list(info["fields"]), info


def read_labelled_grid(
    path: str, layer: str | None, key: str, reporter: Reporter
) -> dict[str, Any]:
    """Cell id (``key``), label (0/1) and district (when present) of the labelled grid TRUTH;
    with its layer name, metadata and CRS."""
    import pyogrio

    layer, fields, info = layer_fields(path, layer, "TRUTH")
    name = layer or os.path.basename(path)
    if key not in fields:
        how = (
            "grid the survey with Build training grid (same CRS and cell size as the predictions)"
            if key == CELL_ID
            else f"give the labelled polygons the id of the grid that was predicted ({key}, ID_FIELD)"
        )
        raise PovmapInputError(
            "TRUTH",
            f"the layer '{name}' has no {key} field; {how}. Its fields: {', '.join(fields) or 'none'}.",
        )
    if "label" not in fields:
        raise PovmapInputError(
            "TRUTH",
            f"the layer '{name}' has no label field (1 = poor, 0 = not poor); use a labelled grid from "
            f"Build training grid, e.g. a ground-truth survey gridded with it. Its fields: {', '.join(fields) or 'none'}.",
        )
    columns = [key, "label"] + (["district"] if "district" in fields else [])
    frame = pyogrio.read_dataframe(path, layer=layer, columns=columns, read_geometry=False)
    if frame.empty:
        raise PovmapInputError("TRUTH", f"the layer '{name}' has no features.")
    frame = numbers_from_text(frame, (key, "label"), "TRUTH", name, reporter)
    unlabelled = frame["label"].isna()
    if unlabelled.all():
        raise PovmapInputError(
            "TRUTH",
            f"the label field of '{name}' is empty in every cell; use a labelled grid from Build training grid.",
        )
    if unlabelled.any():
        reporter.warning(f"TRUTH: {int(unlabelled.sum())} cells without a label are left out.")
        frame = frame[~unlabelled]
    if not frame["label"].isin([0, 1]).all():
        odd = sorted({str(value) for value in frame.loc[~frame["label"].isin([0, 1]), "label"]})[:5]
        raise PovmapInputError(
            "TRUTH",
            f"the label field of '{name}' must be 1 (poor) or 0 (not poor); it also holds {', '.join(odd)}.",
        )
    check_cell_ids(frame, "TRUTH", name, key)
    frame = frame.assign(label=frame["label"].astype("int32"))
    return {
        "frame": frame,
        "layer": name,
        "metadata": povmap_layer_metadata(path, layer),
        "crs": crs_to_string(info.get("crs")),
    }


def numbers_from_text(
    frame: pd.DataFrame, columns: Iterable[str], parameter: str, name: str, reporter: Reporter
) -> pd.DataFrame:
    """Numbers written as text (a CSV read without its .csvt file) become numbers.

    Empty text is a missing value; other text is refused naming the field.
    """
    import pandas

    for column in columns:
        values = frame[column]
        if values.dtype != object:
            continue
        text = values.astype("string").str.strip()
        text = text.mask(text == "")
        numbers = pandas.to_numeric(text.astype(object).where(text.notna(), None), errors="coerce")
        wrong = numbers.isna() & text.notna()
        if wrong.any():
            examples = ", ".join(f"'{value}'" for value in sorted(set(text[wrong]))[:5])
            wanted = "1 (poor) or 0 (not poor)" if column == "label" else "the grid's cell ids"
            raise PovmapInputError(
                parameter,
                f"the {column} field of '{name}' holds text ({examples}); it must hold {wanted}.",
            )
        frame = frame.assign(**{column: numbers})
        reporter.info(
            f"{parameter}: the {column} field of '{name}' is text (e.g. a CSV without a .csvt "
            "file); its values are read as numbers."
        )
    return frame


def check_cell_ids(frame: pd.DataFrame, parameter: str, name: str, key: str = CELL_ID) -> None:
    """``frame[key]`` as int64 cell ids by the one rule (``cells.whole_cell_ids``); ids stored
    as text (a CSV without .csvt) are read as numbers first, and text that is not a number is
    refused."""
    import pandas

    from .cells import whole_cell_ids

    ids = frame[key]
    numbers = pandas.to_numeric(ids, errors="coerce")
    if (numbers.isna() & ids.notna() & (ids.astype(str).str.strip() != "")).any():
        raise PovmapInputError(
            parameter,
            f"the {key} field of '{name}' is not an integer field; use the grid's own {key}.",
        )
    # integers stay int64 (ids beyond 2**53 would lose digits as floats); NULLs make floats
    frame[key] = whole_cell_ids(numbers.to_numpy(), parameter, name, key)
