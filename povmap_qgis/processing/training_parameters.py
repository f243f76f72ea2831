"""The parameters of the shared training settings (core/model/training_settings.py).

Train and Cross-validate train the members the same way, so CHIPS, GRID, ID_FIELD,
PRESET, MEMBERS, SEED, EPOCHS and NOMINAL are defined here once and read here into the
options. What differs between the two is GRID's label, where each adds its own parameters,
and the help (cross-validation trains every member in every fold and needs the grid's
districts): help/common.py's functions, called by help/train.py and help/crossvalidate.py.
"""

from qgis.core import (
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from ..core.model.models import PRESETS
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


def add_training_parameters(algorithm, *, grid_label, after_members=None, after_seed=None):
    """Add CHIPS, GRID, ID_FIELD, PRESET, MEMBERS, SEED, EPOCHS and NOMINAL to ``algorithm``.

    ``grid_label`` (translated): GRID's label. ``after_members``, ``after_seed``: functions
    adding the algorithm's own parameters at those places (the dialog's order). Their help
    is the algorithm's (help/train.py, help/crossvalidate.py: built by help/common.py).
    """
    add = algorithm.add_parameter
    add(
        QgsProcessingParameterFile(
            algorithm.CHIPS,
            algorithm.tr("Chip store (.chips folder)"),
            QgsProcessingParameterFile.Behavior.Folder,
        )
    )
    add(QgsProcessingParameterFeatureSource(algorithm.GRID, grid_label, POLYGON_SOURCES))
    algorithm.add_store_id_field()
    add(
        QgsProcessingParameterEnum(
            algorithm.PRESET,
            algorithm.tr("Preset"),
            PRESET_NAMES,
            False,
            PRESET_NAMES.index(DEFAULT_PRESET),
        )
    )
    add(
        QgsProcessingParameterString(
            algorithm.MEMBERS, algorithm.tr("Members (empty: the preset's)"), "", optional=True
        )
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
        )
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
        advanced=True,
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
