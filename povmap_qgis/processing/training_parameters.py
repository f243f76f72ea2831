"""The parameters of the shared training settings (core/model/training_settings.py).

Train and Cross-validate train the members the same way, so CHIPS, GRID, ID_FIELD,
PRESET, MEMBERS, SEED, EPOCHS and NOMINAL are defined here once and read here into the
options. What differs between the two is a parameter of ``add_training_parameters``:
cross-validation trains every member in every fold and needs the grid's districts.
"""

from qgis.core import (
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from ..core.model.models import ARCHITECTURES, PRESETS
from ..core.model.training_settings import DEFAULT_NOMINAL, DEFAULT_PRESET, NOMINAL_RANGE
from .base import POLYGON_SOURCES

PRESET_NAMES = list(PRESETS)


class TrainingParameters:
    """The ids of the shared training settings (GRID and ID_FIELD: ``PovmapAlgorithm``'s): a base
    class of Train and Cross-validate."""

    CHIPS = "CHIPS"
    PRESET = "PRESET"
    MEMBERS = "MEMBERS"
    SEED = "SEED"
    EPOCHS = "EPOCHS"
    NOMINAL = "NOMINAL"


def add_training_parameters(
    algorithm,
    *,
    grid_label,
    own_grid,
    seeded,
    per_fold=False,
    chips_note="",
    paper_settings=False,
    after_members=None,
    after_seed=None,
):
    """Add CHIPS, GRID, ID_FIELD, PRESET, MEMBERS, SEED and EPOCHS to ``algorithm``.

    Where train and crossvalidate differ: ``grid_label`` (translated), GRID's label;
    ``own_grid``, the end of GRID's help (what a grid of the user's own needs); ``seeded``,
    what SEED makes repeatable besides the initial weights; ``per_fold``, members are
    trained in every fold (MEMBERS and EPOCHS say so); ``chips_note``, a sentence added to
    CHIPS's help; ``paper_settings``, PRESET's help names the paper preset's settings.
    ``after_members``, ``after_seed``: functions adding the algorithm's own parameters at
    those places (the dialog's order).
    """
    add = algorithm.add_parameter
    add(
        QgsProcessingParameterFile(
            algorithm.CHIPS,
            algorithm.tr("Chip store (.chips folder)"),
            QgsProcessingParameterFile.Behavior.Folder,
        ),
        "Chip store of the labelled grid, from Sample image chips." + chips_note,
    )
    add(
        QgsProcessingParameterFeatureSource(algorithm.GRID, grid_label, POLYGON_SOURCES),
        "The training grid (cell_id, label, district) the chips were sampled for, or labelled "
        f"polygons of your own grid {own_grid}",
    )
    algorithm.add_store_id_field()
    add(
        QgsProcessingParameterEnum(
            algorithm.PRESET,
            algorithm.tr("Preset"),
            PRESET_NAMES,
            False,
            PRESET_NAMES.index(DEFAULT_PRESET),
        ),
        "compact: three small CNNs and stats_gbm (gradient boosting on per-chip statistics) for "
        "CPUs (default); paper: ResNet50 + ResNet50V2 + "
        f"ResNet101{_paper_settings() if paper_settings else ''} (use a GPU).",
    )
    add(
        QgsProcessingParameterString(
            algorithm.MEMBERS, algorithm.tr("Members (empty: the preset's)"), "", optional=True
        ),
        f"Comma-separated ensemble members to train{' in every fold' if per_fold else ''}, "
        f"from: {', '.join(ARCHITECTURES)}. Empty: the preset's.",
    )
    if after_members:
        after_members()
    add(
        QgsProcessingParameterNumber(
            algorithm.SEED,
            algorithm.tr("Random seed"),
            QgsProcessingParameterNumber.Type.Integer,
            0,
            False,
            0,
        ),
        f"Makes the {seeded} and initial weights repeatable on the same machine.",
    )
    if after_seed:
        after_seed()
    add(
        QgsProcessingParameterNumber(
            algorithm.EPOCHS,
            algorithm.tr("Maximum epochs (0: the preset's)"),
            QgsProcessingParameterNumber.Type.Integer,
            0,
            True,
            0,
        ),
        f"Upper bound on epochs per member{' and fold' if per_fold else ''}; early stopping "
        "usually ends sooner.",
        advanced=True,
    )
    low, high = NOMINAL_RANGE
    add(
        QgsProcessingParameterNumber(
            algorithm.NOMINAL,
            algorithm.tr("Nominal coverage of the uncertainty intervals"),
            QgsProcessingParameterNumber.Type.Double,
            DEFAULT_NOMINAL,
            False,
            low,
            high,
        ),
        "prob_low–prob_high are made to hold the share poor of a cell's kind this often, in a "
        "district the model has not seen: fitted on the validation cells by district (the "
        "calibration's own uncertainty and how districts differ). Default "
        f"{DEFAULT_NOMINAL}: a 90 % interval (0.95 gives wider ones)."
        + (" Checked out of fold per reliability bin and per district." if per_fold else ""),
        advanced=True,
    )


def _paper_settings():
    """ ", Adam 5e-5, batch 16, up to 30 epochs, patience 10": the paper preset's settings."""
    paper = PRESETS["paper"]
    mantissa, exponent = f"{paper['learning_rate']:.0e}".split("e")
    return (
        f", Adam {mantissa}e{int(exponent)}, batch {paper['batch_size']}, "
        f"up to {paper['epochs']} epochs, patience {paper['patience']}"
    )


def training_options(algorithm, parameters, context, feedback):
    """The shared training settings' options read from the parameters added above.

    GRID is copied for the worker when it is not a plain file (``vector_file``).
    """
    grid_path, grid_layer = algorithm.vector_file(parameters, algorithm.GRID, context, feedback)
    return {
        "chips_path": algorithm.input_file(parameters, algorithm.CHIPS, context),
        "grid_path": grid_path,
        "grid_layer": grid_layer,
        "id_field": algorithm.parameterAsString(parameters, algorithm.ID_FIELD, context) or None,
        "preset": PRESET_NAMES[algorithm.parameterAsEnum(parameters, algorithm.PRESET, context)],
        "members": algorithm.name_list(parameters, algorithm.MEMBERS, context) or None,
        "seed": algorithm.parameterAsInt(parameters, algorithm.SEED, context),
        "epochs": algorithm.parameterAsInt(parameters, algorithm.EPOCHS, context) or None,
        "nominal": algorithm.parameterAsDouble(parameters, algorithm.NOMINAL, context),
    }
