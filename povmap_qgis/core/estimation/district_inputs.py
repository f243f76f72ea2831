"""The inputs of district estimates, read (pipeline step 9, runs in the worker).

The districts (one row per name), the survey's households as arrays (the labelling rule
applied to each household's score, weights, district, cluster and stratum codes) and the
map's district means (``prob_mean`` of PREDICTIONS, out of fold where OUT_OF_FOLD covers a
cell, weighted by POPULATION). Household points stay in ``read_survey``'s arrays: nothing
of them is written.
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, Any

from ..errors import PovmapInputError

if TYPE_CHECKING:
    import geopandas
    import numpy as np

    from ..progress import Reporter
    from .district_estimates import DistrictEstimatesOptions


def read_districts(options: DistrictEstimatesOptions, reporter: Reporter) -> geopandas.GeoDataFrame:
    """The districts (GeoDataFrame with ``name``), one row per name (parts of a name dissolved)."""
    from .. import vectors

    frame = vectors.read_polygons(
        options.districts_path,
        options.districts_layer,
        "DISTRICTS",
        field=options.district_field,
        reporter=reporter,
    )
    names = frame[options.district_field]
    if names.isna().any():
        reporter.warning(
            f"DISTRICTS: {int(names.isna().sum())} polygons have no {options.district_field} "
            "(DISTRICT_FIELD) and are left out."
        )
        frame = frame[~names.isna()]
    if frame.empty:
        raise PovmapInputError(
            "DISTRICT_FIELD", f"no polygon of DISTRICTS has a value in '{options.district_field}'."
        )
    frame = frame.assign(name=frame[options.district_field].astype(str))[["name", "geometry"]]
    if frame["name"].duplicated().any():
        frame = frame.dissolve(by="name", as_index=False)
    return frame.sort_values("name").reset_index(drop=True)


def read_survey(
    options: DistrictEstimatesOptions,
    districts: geopandas.GeoDataFrame,
    reporter: Reporter,
    notes: list[str],
) -> dict[str, np.ndarray]:
    """Households as arrays: poor (the labelling rule), weights, district code, PSU, stratum.

    Household points stay in this function's arrays; nothing of them is written.
    """
    import numpy as np
    import pandas
    import pyproj
    import shapely

    from .. import labels, vectors
    from ..grid import cells

    path, layer = options.survey_path, options.survey_layer
    info = vectors.layer_info(path, layer, "SURVEY")
    vectors.require_geometry(info, path, layer, "SURVEY", ("Point", "MultiPoint"))
    columns = [options.score_field]
    vectors.require_field(info, options.score_field, path, layer, "SCORE_FIELD", numeric=True)
    if options.weight_field:
        vectors.require_field(info, options.weight_field, path, layer, "WEIGHT_FIELD", numeric=True)
        columns.append(options.weight_field)
    for field, parameter in (
        (options.cluster_field, "CLUSTER_FIELD"),
        (options.stratum_field, "STRATUM_FIELD"),
    ):
        if field:
            vectors.require_field(info, field, path, layer, parameter)
            columns.append(field)
    x, y, table, crs = vectors.read_points(path, layer, list(dict.fromkeys(columns)), "SURVEY")
    scores = pandas.to_numeric(pandas.Series(table[options.score_field]), errors="coerce").to_numpy(
        dtype="float64"
    )
    keep = np.isfinite(x) & np.isfinite(scores)
    dropped = int((~keep).sum())
    if dropped:
        notes.append(
            f"{dropped} households without a location or a score (SCORE_FIELD) were left out."
        )
    if not keep.any():
        raise PovmapInputError("SURVEY", "no household has a location and a score.")
    if options.weight_field:
        weights = pandas.to_numeric(
            pandas.Series(table[options.weight_field]), errors="coerce"
        ).to_numpy(dtype="float64")
        bad = keep & ~(np.isfinite(weights) & (weights > 0))
        if bad.any():
            raise PovmapInputError(
                "WEIGHT_FIELD",
                f"{int(bad.sum())} households have an empty, zero or negative weight in "
                f"'{options.weight_field}'; every household needs a positive sampling weight.",
            )
    else:
        weights = np.ones(len(x))
    for field, parameter in (
        (options.cluster_field, "CLUSTER_FIELD"),
        (options.stratum_field, "STRATUM_FIELD"),
    ):
        if field:
            values = pandas.Series(table[field])
            if (values.isna().to_numpy() & keep).any():
                raise PovmapInputError(
                    parameter,
                    f"{int((values.isna().to_numpy() & keep).sum())} households have no value in "
                    f"'{field}'; every household needs one.",
                )
    x, y, scores, weights = x[keep], y[keep], scores[keep], weights[keep]
    poor = labels.poor_labels(scores, float(options.cutoff), bool(options.poor_below))
    source = pyproj.CRS.from_user_input(crs)
    target = pyproj.CRS.from_user_input(districts.crs)
    px, py = (
        (x, y)
        if source == target
        else pyproj.Transformer.from_crs(source, target, always_xy=True).transform(x, y)
    )
    tree = shapely.STRtree(districts.geometry.values)
    point_index, polygon_index = tree.query(shapely.points(px, py), predicate="intersects")
    district = np.full(len(x), -1, dtype="int64")
    district[point_index[::-1]] = polygon_index[::-1]
    outside = int((district < 0).sum())
    if outside == len(x):
        raise PovmapInputError(
            "SURVEY",
            "no household lies inside a polygon of DISTRICTS; check that the survey and the "
            "districts cover the same area (and their CRS).",
        )
    if outside:
        notes.append(
            f"{outside} households lie outside every district: they count in the design (their "
            "clusters and strata) and in no district's estimate."
        )
    if options.cluster_field:
        psu = _codes(table[options.cluster_field], keep)
    else:
        wgs84 = pyproj.Transformer.from_crs(source, "EPSG:4326", always_xy=True)
        lon, lat = wgs84.transform(x, y)
        grid_crs, _ = cells.working_crs(
            None,
            (lon.min(), lat.min(), lon.max(), lat.max()),
            centre=(float(np.median(lon)), float(np.median(lat))),
        )
        gx, gy = pyproj.Transformer.from_crs(source, grid_crs, always_xy=True).transform(x, y)
        rows, cols = cells.cell_rows_cols(gx, gy, float(options.cell_size))
        psu = cells.encode_cell_ids(rows, cols)
        notes.append(
            f"No CLUSTER_FIELD: the households of one {options.cell_size:g} m grid cell form a "
            "cluster (PSU); give the survey's primary sampling unit for design-based variances."
        )
    stratum = _codes(table[options.stratum_field], keep) if options.stratum_field else None
    return {"poor": poor, "weights": weights, "district": district, "psu": psu, "stratum": stratum}


def _codes(values: Any, keep: np.ndarray) -> np.ndarray:
    import numpy as np
    import pandas

    return pandas.factorize(pandas.Series(values)[keep].astype(str))[0].astype(np.int64)


def map_covariate(
    options: DistrictEstimatesOptions,
    districts: geopandas.GeoDataFrame,
    reporter: Reporter,
    notes: list[str],
) -> dict[str, Any]:
    """The map's district means (population-weighted with POPULATION), people and cells per district."""
    import numpy as np
    import pyogrio
    import shapely

    from ..decision.prediction_layer import (
        prediction_polygons,
        prediction_windows,
        read_predictions,
    )

    source = types.SimpleNamespace(
        predictions_path=options.predictions_path,
        predictions_layer=options.predictions_layer,
        id_field=None,  # the one Predict poverty recorded, else cell_id
    )
    # the cells' fields; their polygons window by window below (memory)
    cells, layer, _, id_field = read_predictions(
        source,
        id_parameter=None,  # the step has no ID_FIELD
        geometry=False,
        columns=[],  # the id and prob_mean
    )
    probability = cells["prob_mean"].to_numpy(dtype="float64")
    out_of_fold_cells = 0
    if options.out_of_fold_path:
        from ..chips.grid_cells import read_cell_ids
        from ..vectors import layer_info, spatial_layer

        oof_layer = spatial_layer(
            options.out_of_fold_path, options.out_of_fold_layer, "OUT_OF_FOLD"
        )
        info = layer_info(options.out_of_fold_path, oof_layer, "OUT_OF_FOLD")
        if id_field not in info["fields"] or "prob_mean" not in info["fields"]:
            raise PovmapInputError(
                "OUT_OF_FOLD",
                f"the layer '{oof_layer}' has no {id_field} and prob_mean fields; use the grid "
                "written by Cross-validate by district (OUTPUT_GRID).",
            )
        read_cell_ids(options.out_of_fold_path, oof_layer, id_field, info, "OUT_OF_FOLD")
        grid = pyogrio.read_dataframe(
            options.out_of_fold_path,
            layer=oof_layer,
            columns=[id_field, "prob_mean"],
            read_geometry=False,
        )
        grid = grid[np.isfinite(grid["prob_mean"].to_numpy(dtype="float64"))]
        lookup = dict(
            zip(
                grid[id_field].astype("int64").tolist(),
                grid["prob_mean"].astype("float64").tolist(),
                strict=True,
            )
        )
        ids = cells[id_field].to_numpy(dtype="int64")
        replaced = np.array([lookup.get(int(cell), np.nan) for cell in ids])
        found = np.isfinite(replaced)
        probability = np.where(found, replaced, probability)
        out_of_fold_cells = int(found.sum())
        reporter.info(f"OUT_OF_FOLD: {out_of_fold_cells} cells take their out-of-fold probability.")
    else:
        notes.append(
            "No OUT_OF_FOLD grid: the map's probabilities of the surveyed cells come from a model "
            "trained on those very cells, so the map looks more accurate there than it is and the "
            "model over-trusts it. Give the OUTPUT_GRID of Cross-validate by district."
        )
    population = None
    if options.population_path:
        reporter.info("Summing the population raster per cell…")
        from ..grid.population import windowed_cell_population

        population, inside = windowed_cell_population(
            prediction_polygons(source, id_field, len(cells)),
            len(cells),
            options.population_path,
            "POPULATION",
            reporter.stage(20, 55),
        )
        partly = int((inside < 0.95).sum())
        if partly:
            notes.append(
                f"{partly} cells lie partly or wholly outside the POPULATION raster: people are "
                "counted only where the raster is."
            )
    tree = shapely.STRtree(districts.geometry.values)
    owner = np.full(len(cells), -1, dtype="int64")
    for start, frame in prediction_windows(source, id_field, len(cells), columns=[]):
        points = shapely.point_on_surface(frame.geometry.to_crs(districts.crs).values)
        cell_index, district_index = tree.query(points, predicate="intersects")
        owner[start + cell_index[::-1]] = district_index[::-1]  # the first district found
    usable = (owner >= 0) & np.isfinite(probability)
    count = len(districts)
    heads = population if population is not None else np.ones(len(cells))
    weight = np.where(usable, heads, 0.0)
    total = np.bincount(owner[usable], weights=weight[usable], minlength=count)
    weighted = np.bincount(
        owner[usable], weights=(weight * np.nan_to_num(probability))[usable], minlength=count
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        covariate = np.where(total > 0, weighted / total, np.nan)
    cells_per_district = np.bincount(owner[usable], minlength=count).astype("float64")
    district_population = None
    if population is not None:
        inside_districts = owner >= 0
        district_population = np.bincount(
            owner[inside_districts], weights=population[inside_districts], minlength=count
        )
    outside = int((owner < 0).sum())
    if outside:
        notes.append(f"{outside} predicted cells of '{layer}' lie outside every district.")
    return {
        "covariate": covariate,
        "population": district_population,
        "cells": cells_per_district,
        "cells_total": int(usable.sum()),
        "out_of_fold_cells": out_of_fold_cells,
    }
