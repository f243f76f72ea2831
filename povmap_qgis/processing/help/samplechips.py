"""Help of povmap:samplechips; docs/algorithms/samplechips.md says the same in more words.

Its SUMMARY, then each parameter's help under the parameter's id, in the dialog's order.
"""

from . import common

SUMMARY = (
    "Turns every cell of a grid into a stack of aligned image chips, the model's input: each raster is "
    "resampled onto the cell's own pixel grid in the grid's CRS (what gdalwarp -t_srs -te -tr gives for "
    "that cell), whatever CRS and resolution it comes in. Inputs are optional but at least one is needed. "
    "Nodata and areas outside a raster are kept as nodata and counted per cell; cells above MAX_NODATA are "
    "flagged and left out of training. The chip store is written under a temporary name and published "
    "when complete; a cancelled run continues where it stopped when run again with the same parameters."
)

GRID = (
    "Cells from Build training grid or Build prediction grid, or any polygon grid of your own "
    "(a statistics office's grid, tiles, hexagons) with a unique whole-number id in ID_FIELD: "
    "each chip is its polygon's bounding box at RESOLUTION, and all of them must give the same "
    "number of pixels."
)

ID_FIELD = (
    "The grid's unique whole-number cell id, stored with the chips and carried to the "
    "predictions; empty: cell_id, the id of povmap's grids. Missing (NULL) or repeated ids "
    "are refused."
)

DAYTIME = common.DAYTIME + common.RASTER_FILE

DAYTIME_BANDS = common.DAYTIME_BANDS

NIGHTLIGHTS = common.NIGHTLIGHTS + common.RASTER_FILE

ACCESSIBILITY = common.ACCESSIBILITY + common.RASTER_FILE

EXTRA = common.EXTRA

RESOLUTION = "Pixel size of the chips in metres of the grid CRS (10 m: Sentinel-2's)."

CHIP_SIZE = "Chip side in pixels; it must cover the cell exactly (cell size / RESOLUTION, 100 for 1 km at 10 m). 0 or empty: computed."

MAX_NODATA = "Cells whose chip in any input has more nodata than this fraction are flagged, listed and excluded from training."

DAYTIME_RESAMPLING = common.resampling("DAYTIME")

NIGHTLIGHTS_RESAMPLING = common.resampling("NIGHTLIGHTS")

ACCESSIBILITY_RESAMPLING = common.resampling("ACCESSIBILITY")

EXTRA_RESAMPLING = common.resampling("EXTRA")

OUTPUT = "Folder of the chip store (manifest.json, cell_ids.npy, one .npy per input, nodata_fraction.npy); .chips is added to the name if missing."

NODATA_GRID = "The grid with nodata_<input> (fraction of each chip without data) and chip_flagged (1 = above MAX_NODATA), styled to show flagged cells (complete chips green, flagged red). Not written unless asked for (the dialog starts at Skip output), so repeated runs do not add a grid each time."

ENGINE = common.ENGINE

SPARK_MASTER = common.SPARK_MASTER
