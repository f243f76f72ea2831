"""Help of povmap:mappoverty; docs/algorithms/mappoverty.md says the same in more words.

Its SUMMARY, then each parameter's help under the parameter's id, in the dialog's order.
"""

from . import common

_trained_inputs = (
    " Give the inputs the model was trained on (the bundled model: all three). Must be a raster "
    "file (GeoTIFF…)."
)

SUMMARY = (
    "Maps chronic poverty for districts in one step: cells, image chips and predictions. "
    "It covers AREA with cells (Build prediction grid), samples the rasters into a chip store "
    "(Sample image chips) and runs a model on it (Predict poverty). The cell size and chip resolution are the model's, read from its package. Without "
    "MODEL, the bundled demonstration model is used: it was trained on synthetic data, needs all "
    "three rasters and is not for policy use. The result is the styled prediction layer; the chip "
    "store is kept where CHIPS says (a temporary folder by default) for another model or a rerun. "
    "With SOURCE=rasters no chip store is written: the rasters are sampled and predicted block "
    "by block (the same predictions). ENGINE=spark samples and predicts as Apache Spark tasks "
    "(SPARK_MASTER: this computer's cores or a cluster), with the same results."
)

AREA = (
    "District polygons to cover with cells. To map some districts only, filter the layer "
    "(Filter…, or a subset in the source: …|subset=\"name\" = 'Sorabad') or select them and "
    "tick Selected features only."
)

DISTRICT_FIELD = (
    "Field of AREA holding the district name; each cell takes the district it overlaps most."
)

DAYTIME = common.DAYTIME + _trained_inputs

DAYTIME_BANDS = common.DAYTIME_BANDS

NIGHTLIGHTS = common.NIGHTLIGHTS + _trained_inputs

ACCESSIBILITY = common.ACCESSIBILITY + _trained_inputs

MODEL = (
    "A .povmodel folder from Train poverty ensemble, or a version registered in the run "
    "history (models:/<name>/<version>, models:/<name>@<alias>). Empty: the demonstration "
    "ensemble bundled with the plugin (synthetic data, not for policy use)."
)

SOURCE = (
    "chips (default): sample the rasters into the chip store CHIPS, then predict from it "
    "(kept for another model or a rerun). rasters: predict straight from the rasters, "
    "block by block, with the same predictions and no chip store on disk (CHIPS is not "
    "written)."
)

CRS = "A projected CRS in metres for the cells. Empty: the UTM zone at the area's centre."

DAYTIME_RESAMPLING = common.resampling("DAYTIME")

NIGHTLIGHTS_RESAMPLING = common.resampling("NIGHTLIGHTS")

ACCESSIBILITY_RESAMPLING = common.resampling("ACCESSIBILITY")

ENGINE = common.ENGINE

SPARK_MASTER = common.SPARK_MASTER

OUTPUT = (
    "GeoPackage of the cells with district, prob_<member>, prob_mean, votes, pred "
    "(1 = poor) and disagreement, styled by predicted class (probability and disagreement "
    "styles in the layer's Styles list)."
)

CHIPS = (
    "Folder of the chip store sampled for the cells; .chips is added to the name if "
    "missing. Default (or left out): a temporary folder. Predict poverty can run another "
    "model on it. Not written (and ignored) with SOURCE=rasters, hence among the advanced "
    "parameters."
)
