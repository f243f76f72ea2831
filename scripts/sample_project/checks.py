"""Checks of the generated data against the plugin's core code (the ceiling AUC)."""

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from .common import CRS_GEOGRAPHIC, CRS_PROJECTED, FILES, POVERTY_CUTOFF
from .vectors import survey_lonlat


def ceiling_check(out_dir, survey, survey_file, survey_layer_name):
    """Build the training grid with the project's core code and score the noise-free wealth against it."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import geopandas
    import shapely
    from pyproj import Transformer
    from sklearn.metrics import roc_auc_score

    from povmap_qgis.core.grid.training_grid import TrainingGridOptions, build_training_grid

    options = {
        "score_field": "score",
        "cell_size": 1000.0,
        "cutoff": POVERTY_CUTOFF,
        "poor_below": True,
        "min_obs": 3,
        "max_obs": 300,
        "drop_zero": True,
        "accuracy_field": "gps_accuracy_m",
        "max_accuracy": 20.0,
        "date_field": "survey_date",
        "min_date": "2016-01-01",
        "urban_path": str(out_dir / FILES["urban_centres"]),
        "districts_path": str(out_dir / FILES["districts"]),
        "district_field": "name",
        "crs": CRS_PROJECTED,
    }
    with tempfile.TemporaryDirectory(prefix="povmap-sample-check-") as temporary:
        grid_path = os.path.join(temporary, "grid.gpkg")
        summary = build_training_grid(
            TrainingGridOptions(
                points_path=str(out_dir / survey_file), output_path=grid_path, **options
            )
        )
        grid = geopandas.read_file(grid_path, engine="pyogrio")
    lon, lat = survey_lonlat(survey)
    x, y = Transformer.from_crs(CRS_GEOGRAPHIC, CRS_PROJECTED, always_xy=True).transform(lon, lat)
    points = geopandas.GeoDataFrame(
        {"latent": survey.latent}, geometry=shapely.points(x, y), crs=CRS_PROJECTED
    )
    joined = geopandas.sjoin(points, grid[["cell_id", "label", "geometry"]], predicate="within")
    per_cell = joined.groupby("cell_id").agg(latent=("latent", "mean"), label=("label", "first"))
    labels = per_cell["label"].to_numpy()
    auc = (
        float(roc_auc_score(labels, -per_cell["latent"].to_numpy()))
        if 0 < labels.sum() < len(labels)
        else None
    )
    kept = int(summary["cells_kept"])
    options_record = {k: v for k, v in options.items() if not k.endswith("_path")}
    return {
        "survey": survey_layer_name,
        "options": options_record,
        "labelled_cells": kept,
        "poor_cells": int(summary["poor_cells"]),
        "poor_share": round(summary["poor_cells"] / kept, 4) if kept else None,
        "ceiling_auc": None if auc is None else round(auc, 4),
        "counts": {
            k: (int(v) if isinstance(v, (int, np.integer)) else v)
            for k, v in summary.items()
            if k != "seconds"
        },
    }
