"""povmap:train — learn chronic poverty from a chip store and a labelled grid."""

import os

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from ..core.model.training_settings import BALANCES
from .base import PovmapAlgorithm
from .parameter_values import metric_label
from .training_parameters import TrainingParameters, add_training_parameters, training_options

SPLITS = ["random", "districts"]
STACKINGS = ["validation", "off"]  # core.model.training.TRAIN_STACKING


class Train(TrainingParameters, PovmapAlgorithm):
    MODEL_NAME = "MODEL_NAME"
    THRESHOLD = "THRESHOLD"
    MEMBERS_TRAINED = "MEMBERS_TRAINED"
    SPLIT = "SPLIT"
    TEST_DISTRICTS = "TEST_DISTRICTS"
    BALANCE = "BALANCE"
    STACKING = "STACKING"
    PRETRAINED = "PRETRAINED"
    TARGET_RECALL = "TARGET_RECALL"

    algorithm_id = "train"
    display_name = "Train poverty ensemble"
    group_id = "models"
    group_name = "3 · Models"

    def initAlgorithm(self, config=None):
        add_training_parameters(
            self,
            grid_label=self.tr("Labelled grid"),
            after_members=self._add_holdout_and_balance,
            after_seed=self._add_pretrained_and_target_recall,
        )
        self.add_parameter(
            QgsProcessingParameterString(
                self.MODEL_NAME, self.tr("Registered model name (run history)"), optional=True
            ),
            advanced=True,
        )
        self.add_parameter(
            QgsProcessingParameterFolderDestination(
                self.OUTPUT, self.tr("Model package (.povmodel folder)")
            ),
        )
        self.addOutput(
            QgsProcessingOutputNumber(self.THRESHOLD, self.tr("Members' vote threshold"))
        )
        for key in ("RECALL", "PRECISION", "ACCURACY", "AUC"):
            self.addOutput(
                QgsProcessingOutputNumber(
                    key, self.tr("Ensemble {} on the holdout cells").format(metric_label(key))
                )
            )
        self.addOutput(QgsProcessingOutputString(self.MEMBERS_TRAINED, self.tr("Members")))

    def _add_holdout_and_balance(self):
        self.add_parameter(
            QgsProcessingParameterEnum(
                self.SPLIT,
                self.tr("Holdout"),
                ["random (stratified, paper proportions)", "leave districts out"],
                False,
                0,
            ),
            names=SPLITS,
        )
        self.add_parameter(
            QgsProcessingParameterString(
                self.TEST_DISTRICTS,
                self.tr("Test districts (leave districts out)"),
                "",
                optional=True,
            ),
        )
        self.add_parameter(
            QgsProcessingParameterEnum(
                self.BALANCE,
                self.tr("Class balance"),
                ["undersample the majority (paper)", "class weights"],
                False,
                0,
            ),
            advanced=True,
            names=BALANCES,
        )
        self.add_parameter(
            QgsProcessingParameterEnum(
                self.STACKING,
                self.tr("Combine members and baseline (stacking)"),
                [
                    "stacking fitted on the validation cells",
                    "off: the members' mean",
                ],
                False,
                0,
            ),
            advanced=True,
            names=STACKINGS,
        )

    def _add_pretrained_and_target_recall(self):
        self.add_parameter(
            QgsProcessingParameterString(
                self.PRETRAINED, self.tr("Pretrained backbones (paper preset)"), "", optional=True
            ),
            advanced=True,
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.TARGET_RECALL,
                self.tr("Target recall (empty: threshold at the training share of poor cells)"),
                QgsProcessingParameterNumber.Type.Double,
                None,
                True,
                0.0,
                1.0,
            ),
        )

    def processAlgorithm(self, parameters, context, feedback):
        output = self.output_folder(parameters, self.OUTPUT, context, ".povmodel")
        options = training_options(self, parameters, context, feedback)
        split = SPLITS[self.parameterAsEnum(parameters, self.SPLIT, context)]
        districts = self.name_list(parameters, self.TEST_DISTRICTS, context)
        if split == "districts" and not districts:
            raise QgsProcessingException(
                self.tr(
                    f"{self.TEST_DISTRICTS}: name the districts to hold out (comma-separated) when SPLIT is 'leave districts out'."
                )
            )
        target_recall = parameters.get(self.TARGET_RECALL)
        options.update(
            {
                "output_path": output,
                "split": split,
                "test_districts": districts or None,
                "balance": BALANCES[self.parameterAsEnum(parameters, self.BALANCE, context)],
                "stacking": STACKINGS[self.parameterAsEnum(parameters, self.STACKING, context)],
                "pretrained": _pretrained(
                    self.parameterAsString(parameters, self.PRETRAINED, context)
                ),
                "target_recall": None
                if target_recall in (None, "")
                else self.parameterAsDouble(parameters, self.TARGET_RECALL, context),
            }
        )
        model_name = (self.parameterAsString(parameters, self.MODEL_NAME, context) or "").strip()
        result = self.run_core_step(
            "train",
            options,
            feedback,
            outputs=[output],
            run_history={"POVMAP_MODEL_NAME": model_name} if model_name else None,
        )
        ensemble = result["metrics"]["ensemble"]
        results = {
            self.OUTPUT: result["output"],
            self.THRESHOLD: result["threshold"],
            self.MEMBERS_TRAINED: ",".join(result["members"]),
        }
        results.update(
            {key.upper(): ensemble[key] for key in ("recall", "precision", "accuracy", "auc")}
        )
        return results


def _pretrained(value):
    """None, "imagenet", or the absolute path of a weights folder (the worker runs in another working directory)."""
    value = (value or "").strip()
    if not value or value == "none":
        return None
    return value if value == "imagenet" else os.path.abspath(value)
