"""Help of povmap:predict; docs/algorithms/predict.md says the same in more words.

Its SUMMARY, then each parameter's help under the parameter's id, in the dialog's order.
"""

from . import common

_rasters_note = " Read only with SOURCE=rasters."

SUMMARY = (
    "Runs a trained ensemble on the chips of a grid — a surveyed district or one nobody surveyed. Each member gives "
    "the probability that a cell is chronically poor; the output has prob_<member>, prob_mean, votes, pred "
    "(1 = poor: calibrated prob_mean ≥ the decision threshold) and disagreement (spread of the members). Styled by predicted class; the probability, "
    "disagreement, uncertainty (prob_high − prob_low) and outside-the-training-range styles are in the layer's "
    "Styles menu. With SOURCE=rasters it reads the rasters themselves instead of a chip store: each "
    "block of cells is sampled as Sample image chips would sample it and predicted at once, so no chips "
    "are written (for national maps on Spark, ENGINE=spark). Without MODEL, the bundled demonstration model is used: "
    "it was trained on synthetic data and is not for policy use."
)

MODEL = (
    "A .povmodel folder from Train poverty ensemble, or a version registered in the run history: "
    "models:/<name>/<version> or models:/<name>@<alias> (see Set model alias). "
    "Empty: the demonstration ensemble bundled with the plugin (synthetic data, not for policy use)."
)

SOURCE = (
    "chips (default): the chip store CHIPS. rasters: the rasters DAYTIME, NIGHTLIGHTS, "
    "ACCESSIBILITY and EXTRA (every input the model was trained on, with its bands), sampled "
    "block by block exactly as Sample image chips samples them (in the store's dtype, at the "
    "model's resolution and chip size) and predicted at once: the same predictions as from a "
    "store, and no chips on disk."
)

CHIPS = (
    "Chips of GRID from Sample image chips, with the inputs, bands and chip size the model was trained on. "
    "Needed unless SOURCE=rasters."
)

GRID = (
    "Cells to predict, e.g. from Build prediction grid, or your own grid whose chips were sampled "
    "by ID_FIELD; every field of it is kept in the output."
)

ID_FIELD = common.STORE_ID_FIELD

OUTPUT = "GeoPackage of the grid with the prediction fields, styled by predicted class."

DAYTIME = common.DAYTIME + _rasters_note + common.RASTER_FILE

DAYTIME_BANDS = common.DAYTIME_BANDS

NIGHTLIGHTS = common.NIGHTLIGHTS + _rasters_note + common.RASTER_FILE

ACCESSIBILITY = common.ACCESSIBILITY + _rasters_note + common.RASTER_FILE

EXTRA = common.EXTRA + _rasters_note

MAX_NODATA = (
    "With SOURCE=rasters: cells whose chip in any input has more nodata than this fraction get "
    "chip_flagged = 1 (a chip store keeps the fraction it was sampled with)."
)

DAYTIME_RESAMPLING = common.resampling("DAYTIME")

NIGHTLIGHTS_RESAMPLING = common.resampling("NIGHTLIGHTS")

ACCESSIBILITY_RESAMPLING = common.resampling("ACCESSIBILITY")

EXTRA_RESAMPLING = common.resampling("EXTRA")

ENGINE = common.ENGINE

SPARK_MASTER = common.SPARK_MASTER
