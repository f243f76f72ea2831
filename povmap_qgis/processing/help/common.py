"""Help several algorithms share: the chip store's id field, the rasters chips come from, the
engine, and the training settings of train and crossvalidate (their small differences are the
functions' arguments)."""

from ...core.model.models import ARCHITECTURES, PRESETS
from ...core.model.training_settings import DEFAULT_NOMINAL

# ID_FIELD of the steps that read a chip store (PovmapAlgorithm.add_store_id_field)
STORE_ID_FIELD = (
    "The grid's unique whole-number cell id that matches each cell to its chips; empty: the "
    "id field the chip store was sampled by (cell_id for povmap's grids)."
)

# --- the rasters chips come from (sample_chips.add_raster_parameters) ------------------

DAYTIME = "Optical imagery (e.g. Sentinel-2), any CRS and resolution; the bands of DAYTIME_BANDS are sampled in that order (red, green, blue)."
NIGHTLIGHTS = "Night-time lights raster, band 1; a raster far coarser than a cell (VIIRS ~500 m) gives a smooth, nearly constant chip."
ACCESSIBILITY = "Accessibility raster, band 1 (e.g. travel time to the nearest city)."
RASTER_FILE = (
    " Must be a raster file (GeoTIFF…): web or virtual layers must be saved as GeoTIFF first."
)
DAYTIME_BANDS = "Band numbers of DAYTIME in red, green, blue order, separated by commas; e.g. 4,3,2 for a full Sentinel-2 stack."
EXTRA = "More raster files (all bands each), stored under their layer names."


def resampling(name):
    """The help of ``<name>_RESAMPLING``."""
    return (
        f"How {name} is resampled onto the chips: bilinear (default) for continuous values, "
        "nearest or mode for classes, average to aggregate finer rasters."
    )


# --- where sampling and prediction run (engine.add_engine_parameters) -------------------

ENGINE = (
    "local: this computer, in the worker process (default). spark: Apache Spark tasks over "
    "groups of neighbouring cells, with the same results; needs PySpark and Java in the worker "
    "environment (scripts/setup installs both unless --no-spark) and, on a cluster, paths "
    "every executor can read and write (a shared file system, /vsicurl/, /vsis3/). Extra Spark "
    "settings: the POVMAP_SPARK_CONF environment variable ('key=value;key=value')."
)
SPARK_MASTER = (
    "Where ENGINE=spark runs: local[*] (every core of this computer, the default), local[4], "
    "spark://host:7077, yarn or k8s://https://host:443."
)

# --- the training settings train and crossvalidate share (training_parameters.py) -------


def chips(note=""):
    return "Chip store of the labelled grid, from Sample image chips." + note


def grid(own_grid):
    """``own_grid``: what a grid of the user's own needs."""
    return (
        "The training grid (cell_id, label, district) the chips were sampled for, or labelled "
        f"polygons of your own grid {own_grid}"
    )


def preset(paper_settings=False):
    """``paper_settings``: name the paper preset's settings."""
    return (
        "compact: three small CNNs and stats_gbm (gradient boosting on per-chip statistics) for "
        "CPUs (default); paper: ResNet50 + ResNet50V2 + "
        f"ResNet101{_paper_settings() if paper_settings else ''} (use a GPU)."
    )


def members(per_fold=False):
    return (
        f"Comma-separated ensemble members to train{' in every fold' if per_fold else ''}, "
        f"from: {', '.join(ARCHITECTURES)}. Empty: the preset's."
    )


def seed(seeded):
    """``seeded``: what SEED makes repeatable besides the initial weights."""
    return f"Makes the {seeded} and initial weights repeatable on the same machine."


def epochs(per_fold=False):
    return (
        f"Upper bound on epochs per member{' and fold' if per_fold else ''}; early stopping "
        "usually ends sooner."
    )


def nominal(per_fold=False):
    return (
        "prob_low–prob_high are made to hold the share poor of a cell's kind this often, in a "
        "district the model has not seen: fitted on the validation cells by district (the "
        "calibration's own uncertainty and how districts differ). Default "
        f"{DEFAULT_NOMINAL}: a 90 % interval (0.95 gives wider ones)."
        + (
            " Checked out of fold per reliability bin (bins within each fold) and per district."
            if per_fold
            else ""
        )
    )


def _paper_settings():
    """ ", Adam 5e-5, batch 16, up to 30 epochs, patience 10": the paper preset's settings."""
    paper = PRESETS["paper"]
    mantissa, exponent = f"{paper['learning_rate']:.0e}".split("e")
    return (
        f", Adam {mantissa}e{int(exponent)}, batch {paper['batch_size']}, "
        f"up to {paper['epochs']} epochs, patience {paper['patience']}"
    )
