"""The "Poverty mapping" Processing provider (id ``povmap``)."""

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from ..core.run_folders import remove_stale_run_folders
from ..paths import resource_path
from . import settings
from .build_prediction_grid import BuildPredictionGrid
from .build_training_grid import BuildTrainingGrid
from .check_environment import CheckEnvironment
from .crossvalidate import CrossValidate
from .district_estimates import DistrictEstimates
from .evaluate import Evaluate
from .map_poverty import MapPoverty
from .model_alias import SetModelAlias
from .predict import Predict
from .runs import Runs
from .sample_chips import SampleChips
from .target import Target
from .train import Train
from .verification_results import VerificationResults
from .verification_sample import VerificationSample


class PovmapProvider(QgsProcessingProvider):
    def id(self):
        return "povmap"

    def name(self):
        return "Poverty mapping"

    def longName(self):
        return "Poverty mapping (povmap-qgis)"

    def icon(self):
        return QIcon(resource_path("icon.svg"))

    def svgIconPath(self):  # noqa: N802 (QGIS API)
        return resource_path("icon.svg")

    def load(self):
        settings.register()
        remove_stale_run_folders()  # household copies of runs that were killed
        self.refreshAlgorithms()
        return True

    def unload(self):
        settings.unregister()

    def loadAlgorithms(self):
        for algorithm in (
            BuildTrainingGrid(),
            BuildPredictionGrid(),
            SampleChips(),
            Train(),
            Predict(),
            MapPoverty(),
            Evaluate(),
            CrossValidate(),
            Target(),
            VerificationSample(),
            VerificationResults(),
            DistrictEstimates(),
            SetModelAlias(),
            Runs(),
            CheckEnvironment(),
        ):
            self.addAlgorithm(algorithm)
