"""The one reader of a prediction layer (PREDICTIONS of target, districtestimates,
verificationsample and evaluate, which adds its own needs on top), and what targeting reads from
its cells and metadata: whether ``prob_mean`` is calibrated, the cells' interval bounds, their
districts.

The contract, the same in every step (tests/test_prediction_layer_contract.py): polygons with a
CRS; a ``prob_mean`` field of probabilities (0-1; an empty value is a cell without a prediction,
but not every cell); the cells' id field (ID_FIELD, else the one Predict poverty recorded, else
``cell_id``) of whole numbers, none empty, each once (``cells.whole_cell_ids``); a text id field
is refused. Id problems name ID_FIELD in the steps that have that parameter, PREDICTIONS in the
others."""

from __future__ import annotations  # imported inside QGIS too (with targeting.py)

import json
import os
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import PovmapInputError
from ..names import CELL_ID, ID_FIELD_RECORDED
from .selection import NO_DISTRICT

if TYPE_CHECKING:
    import geopandas
    import numpy as np
    import pandas as pd


# The fields targeting adds to the cells in its OUTPUT (dropped when that is read as PREDICTIONS)
TARGETING_FIELDS = ("rank", "selected", "population", "expected_poor")


def read_predictions(
    options: Any,
    keep_targeting_fields: bool = False,
    id_parameter: str | None = "ID_FIELD",
    geometry: bool = True,
    columns: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, str, dict[str, str], str]:
    """(cells, layer name, layer metadata, id field) of PREDICTIONS, checked.

    ``options``: its predictions_path, predictions_layer and id_field. The fields an
    earlier targeting wrote (rank, selected, …) are dropped unless ``keep_targeting_fields``
    (the verification sample stratifies by ``selected``). ``id_parameter``: the step's cell id
    parameter (ID_FIELD), named by the messages about ids; None for a step without one.
    ``geometry`` False: the cells' fields only (a DataFrame; a country's polygons are then
    read window by window, ``prediction_windows``); ``columns``: only these fields, those the
    layer has, besides the id field and ``prob_mean`` (None: every field)."""
    import geopandas
    import pyogrio

    from ..chips.grid_cells import read_cell_ids
    from ..geopackage import povmap_layer_metadata
    from ..vectors import layer_info, spatial_layer

    path = options.predictions_path
    layer = spatial_layer(path, options.predictions_layer, "PREDICTIONS")
    info = layer_info(path, layer, "PREDICTIONS")
    fields = list(info["fields"])
    name = layer or os.path.basename(path)
    if not info.get("geometry_type") or info["geometry_type"].replace(" Z", "") not in (
        "Polygon",
        "MultiPolygon",
    ):
        raise PovmapInputError(
            "PREDICTIONS",
            f"the layer '{name}' has no polygons; use the prediction layer written by Predict poverty.",
        )
    if "prob_mean" not in fields:
        raise PovmapInputError(
            "PREDICTIONS",
            f"the layer '{name}' is not a prediction layer: it has no prob_mean field; "
            "use the layer written by Predict poverty (its cell id, district, prob_mean, …). "
            f"Its fields: {', '.join(fields) or 'none'}.",
        )
    metadata = povmap_layer_metadata(path, layer)
    recorded = metadata.get(ID_FIELD_RECORDED)
    id_field = options.id_field or recorded or CELL_ID
    if id_field not in fields and id_field != info.get("fid_column"):
        if options.id_field:
            hint = (
                "choose the id field the predictions carry (the grid's ID_FIELD in Predict poverty)"
            )
        elif recorded:
            hint = (
                f"Predict poverty recorded {recorded} as the cells' id, but the field is gone; "
                + (
                    "choose the cells' id field in Cell id field (ID_FIELD)"
                    if id_parameter
                    else "use the layer as Predict poverty wrote it"
                )
            )
        else:
            hint = (
                "predictions on a grid of your own: choose its id field in Cell id field (ID_FIELD)"
                if id_parameter
                else "use the layer written by Predict poverty"
            )
        raise PovmapInputError(
            id_parameter or "PREDICTIONS",
            f"the layer '{name}' (PREDICTIONS) has no {id_field} field (its fields: "
            f"{', '.join(fields) or 'none'}); {hint}.",
        )
    # text, NULL, fractional, repeated ids
    read_cell_ids(path, layer, id_field, info, "PREDICTIONS", id_parameter or "PREDICTIONS")
    read = None
    if columns is not None and id_field in fields:
        read = list(dict.fromkeys([id_field, "prob_mean", *(c for c in columns if c in fields)]))
    if geometry:
        frame = geopandas.read_file(path, layer=layer, engine="pyogrio", columns=read)
    else:
        frame = pyogrio.read_dataframe(path, layer=layer, read_geometry=False, columns=read)
    if frame.empty:
        raise PovmapInputError("PREDICTIONS", f"the layer '{name}' has no features.")
    frame = _as_read(frame, id_field, keep_targeting_fields)
    values = frame["prob_mean"]
    if not str(values.dtype).startswith(("int", "uint", "float")):
        raise PovmapInputError(
            "PREDICTIONS",
            f"prob_mean of '{name}' holds {values.dtype} values; it must hold probabilities "
            "between 0 and 1 (use the layer written by Predict poverty).",
        )
    values = values.astype("float64")
    if (values.dropna() < 0).any() or (values.dropna() > 1).any():
        raise PovmapInputError(
            "PREDICTIONS", f"prob_mean of '{name}' must hold probabilities between 0 and 1."
        )
    if values.isna().all():
        raise PovmapInputError(
            "PREDICTIONS",
            f"prob_mean is empty in every cell of '{name}'; predict the cells first.",
        )
    frame["prob_mean"] = values
    return frame, name, metadata, id_field


def _as_read(frame: pd.DataFrame, id_field: str, keep_targeting_fields: bool) -> pd.DataFrame:
    """The cells' id as int64; an earlier targeting's fields dropped unless kept."""
    frame[id_field] = frame[id_field].astype("int64")
    if not keep_targeting_fields:  # an earlier targeting's output used as input
        frame = frame.drop(columns=[field for field in TARGETING_FIELDS if field in frame])
    return frame


def prediction_windows(
    options: Any, id_field: str, count: int, columns: list[str] | None = None
) -> Iterator[tuple[int, geopandas.GeoDataFrame]]:
    """(first cell's index, cells) of PREDICTIONS (checked by ``read_predictions``), with
    their polygons, ``vectors.WINDOW_CELLS`` at a time in the layer's order; as
    ``read_predictions`` reads them (targeting fields dropped, prob_mean as float64).
    ``columns``: only these fields (None: every field)."""
    from ..vectors import read_windows, spatial_layer

    layer = spatial_layer(options.predictions_path, options.predictions_layer, "PREDICTIONS")
    for start, frame in read_windows(options.predictions_path, layer, count, columns=columns):
        frame = _as_read(frame, id_field, False) if id_field in frame else frame
        if "prob_mean" in frame:
            frame["prob_mean"] = frame["prob_mean"].astype("float64")
        yield start, frame
        del frame  # not kept while the next window is read: memory holds one at a time


def prediction_geometry_type(options: Any) -> str | None:
    """PREDICTIONS' geometry type (e.g. "Polygon"), for a layer written from it window by window."""
    import pyogrio

    from ..vectors import spatial_layer

    layer = spatial_layer(options.predictions_path, options.predictions_layer, "PREDICTIONS")
    return pyogrio.read_info(options.predictions_path, layer=layer).get("geometry_type")


def prob_mean_calibrated(cells: pd.DataFrame, metadata: dict[str, str]) -> bool:
    """Whether prob_mean was calibrated by predict: prob_raw beside it, and a calibration recorded."""
    if "prob_raw" not in cells:
        return False
    try:
        fitted = json.loads(metadata.get("povmap:calibration") or "{}")
    except ValueError:
        fitted = {}
    return not (isinstance(fitted, dict) and fitted.get("method") == "none")


def interval_bounds(
    cells: pd.DataFrame, metadata: dict[str, str]
) -> tuple[np.ndarray, np.ndarray, float] | None:
    """(prob_low, prob_high, nominal) of the cells, or None without both fields. The nominal
    level is the interval rule's (layer metadata povmap:interval), else the members'-spread
    interval's."""
    import numpy as np

    from ..model.calibration import NOMINAL_LEVEL

    if "prob_low" not in cells or "prob_high" not in cells:
        return None
    try:
        rule = json.loads(metadata.get("povmap:interval") or "{}")
    except ValueError:
        rule = {}
    nominal = rule.get("nominal") if isinstance(rule, dict) else None
    probability = cells["prob_mean"].to_numpy(dtype="float64")
    low, high = (cells[field].to_numpy(dtype="float64") for field in ("prob_low", "prob_high"))
    low = np.where(np.isfinite(low), low, probability)
    high = np.where(np.isfinite(high), high, probability)
    return low, high, float(nominal) if isinstance(nominal, (int, float)) else NOMINAL_LEVEL


def district_names(cells: pd.DataFrame) -> np.ndarray:
    import numpy as np

    if "district" not in cells:
        return np.full(len(cells), NO_DISTRICT, dtype=object)
    names = cells["district"].astype(object).where(cells["district"].notna(), NO_DISTRICT)
    return names.astype(str).replace("", NO_DISTRICT).to_numpy(dtype=object)


def prediction_polygons(
    options: Any, id_field: str, count: int
) -> Callable[[], Iterator[geopandas.GeoSeries]]:
    """A function that reads PREDICTIONS' polygons again, window by window (``prediction_windows``:
    e.g. for ``population.windowed_cell_population``)."""

    def windows() -> Iterator[geopandas.GeoSeries]:
        for _, frame in prediction_windows(options, id_field, count, columns=[]):
            yield frame.geometry
            del frame

    return windows
