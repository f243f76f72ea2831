"""Names and numbers shared by training, evaluation, cross-validation, reports and the
Processing adapters. Imports nothing, so the plugin can use it at load time."""

# Model names beside the members in every table, CSV and figure.
ENSEMBLE = "ensemble"
RANDOM = "random"
BASELINE = "baseline"
# The metrics of every judgement, in table order.
METRIC_NAMES = ("recall", "precision", "accuracy", "auc")
# Coin-flip predictions whose median is the random baseline (the paper: 1,000).
RANDOM_DRAWS = 1000
# The grid's default cell side (m: 1 km², the paper's) and the chips' pixel size (m: Sentinel-2's).
DEFAULT_CELL_SIZE = 1000.0
DEFAULT_RESOLUTION = 10.0
# What Predict poverty reads (SOURCE): a chip store, or the rasters themselves (no store).
PREDICTION_SOURCES = ("chips", "rasters")
# The id field of povmap's own grids (it encodes the cell's place, see core/cells.py);
# the default cell id field of any grid (ID_FIELD).
CELL_ID = "cell_id"
# Layer metadata item naming the id field of a layer's cells (written by predict and target,
# read back through geopackage.povmap_layer_metadata as "povmap:id_field"): later steps
# default to it, so predictions on an own grid need no ID_FIELD downstream.
ID_FIELD_METADATA = "povmap_id_field"
ID_FIELD_RECORDED = "povmap:id_field"  # ID_FIELD_METADATA as povmap_layer_metadata names it
