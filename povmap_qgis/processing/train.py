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
    summary = (
        "Trains an ensemble that predicts whether a 1 km cell is chronically poor from its image chips. "
        "PRESET paper: ResNet50, ResNet50V2 and ResNet101 members as in the paper (GPU work); PRESET compact: three "
        "small CNNs and stats_gbm (gradient boosting on per-chip statistics) that train on a laptop CPU in minutes. "
        "Normalisation uses training cells only; chips are flipped and rotated during training; the majority class is "
        "undersampled. The members and the transparent baseline are combined by stacking fitted on the validation "
        "cells (STACKING), then calibrated there with a per-cell interval rule (NOMINAL). The result is a model "
        "package (.povmodel folder) with each member's weights, their sha256, and holdout recall, precision, accuracy "
        "and AUC per member and for the ensemble. Runs in the worker process; Cancel stops it within a batch and "
        "leaves no package."
    )

    def initAlgorithm(self, config=None):
        add_training_parameters(
            self,
            grid_label=self.tr("Labelled grid"),
            own_grid="(its id in ID_FIELD, label, district).",
            seeded="split, sampling, augmentation",
            chips_note=" Any subset of inputs works (night lights only, too).",
            paper_settings=True,
            after_members=self._add_holdout_and_balance,
            after_seed=self._add_pretrained_and_target_recall,
        )
        self.add_parameter(
            QgsProcessingParameterString(
                self.MODEL_NAME, self.tr("Registered model name (run history)"), optional=True
            ),
            "The package is registered in the run history (MLflow) as a new version of this "
            "model. Empty: the package's folder name and the fingerprint of its training data "
            "and settings (e.g. sindh_2023-3fa9c2d1e0b4), so that packages of other projects "
            "are never versions of the same model; the log says the name.",
            advanced=True,
        )
        self.add_parameter(
            QgsProcessingParameterFolderDestination(
                self.OUTPUT, self.tr("Model package (.povmodel folder)")
            ),
            "Folder of the model package; .povmodel is added to the name if missing.",
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
            "random: train/validation/test cells in the paper's 15,596/1,732/1,925 proportions; leave districts out: TEST_DISTRICTS are the test cells.",
            names=SPLITS,
        )
        self.add_parameter(
            QgsProcessingParameterString(
                self.TEST_DISTRICTS,
                self.tr("Test districts (leave districts out)"),
                "",
                optional=True,
            ),
            "Comma-separated district names whose cells are held out for testing (with SPLIT = leave districts out).",
        )
        self.add_parameter(
            QgsProcessingParameterEnum(
                self.BALANCE,
                self.tr("Class balance"),
                ["undersample the majority (paper)", "class weights"],
                False,
                0,
            ),
            "How the poor / not-poor imbalance is handled in training.",
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
            "How prob_raw (and so prob_mean, pred and every ranking) combines the members: a "
            "non-negative logistic regression on the logits of every member and of the "
            "transparent baseline, fitted on the validation cells (which the members did not "
            "learn from) — a member or the baseline that adds nothing gets weight 0, so the map "
            "is at least as good as the evidence allows; its weights are stored in the package "
            "and logged. off: the members' mean, as before.",
            advanced=True,
            names=STACKINGS,
        )

    def _add_pretrained_and_target_recall(self):
        self.add_parameter(
            QgsProcessingParameterString(
                self.PRETRAINED, self.tr("Pretrained backbones (paper preset)"), "", optional=True
            ),
            "Empty: none. 'imagenet': Keras's ImageNet weights from its cache (~/.keras/models), downloaded there "
            "when missing (progress in the log; a clear message after a short time-out when offline; a mirror in "
            "POVMAP_IMAGENET_BASE_URL). Or a folder holding Keras's *_notop.h5 files (never downloaded into). "
            "Used for the 3-band daytime branch of the ResNet members.",
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
            "If set, the decision threshold (on the calibrated prob_mean) is the highest one reaching this recall on the validation cells (programmes favour recall). Empty: a cell is called poor when its calibrated prob_mean reaches the training cells' share of poor cells, i.e. it is more likely poor than a cell picked at random.",
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
