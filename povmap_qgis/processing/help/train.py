"""Help of povmap:train; docs/algorithms/train.md says the same in more words.

Its SUMMARY, then each parameter's help under the parameter's id, in the dialog's order.
"""

from . import common

SUMMARY = (
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

CHIPS = common.chips(" Any subset of inputs works (night lights only, too).")

GRID = common.grid("(its id in ID_FIELD, label, district).")

ID_FIELD = common.STORE_ID_FIELD

PRESET = common.preset(paper_settings=True)

MEMBERS = common.members()

SPLIT = (
    "random: train/validation/test cells stratified by label in the paper's 15,596/1,732/1,925 "
    "proportions; leave districts out: TEST_DISTRICTS are the test cells."
)

TEST_DISTRICTS = (
    "Comma-separated district names whose cells are held out for testing (with SPLIT = leave "
    "districts out); the validation cells are a stratified share of the rest."
)

BALANCE = (
    "How the poor / not-poor imbalance is handled in training: undersample the majority class "
    "(the paper), or class_weights."
)

STACKING = (
    "How prob_raw (and so prob_mean, pred and every ranking) combines the members: a "
    "non-negative logistic regression on the logits of every member and of the "
    "transparent baseline, fitted on the validation cells (which the members did not "
    "learn from) — a member or the baseline that adds nothing gets weight 0, so the map "
    "is at least as good as the evidence allows; its weights are stored in the package "
    "and logged. off: the members' mean, as before."
)

SEED = common.seed("split, sampling, augmentation")

PRETRAINED = (
    "Empty: none. 'imagenet': Keras's ImageNet weights from its cache (~/.keras/models, or $KERAS_HOME/models), downloaded there "
    "when missing (progress in the log; a clear message after a short time-out when offline; a mirror in "
    "POVMAP_IMAGENET_BASE_URL). Or a folder holding Keras's *_notop.h5 files (never downloaded into). "
    "Used for the 3-band daytime branch of the ResNet members."
)

TARGET_RECALL = "If set, the decision threshold (on the calibrated prob_mean) is the highest one reaching this recall on the validation cells (programmes favour recall). Empty: a cell is called poor when its calibrated prob_mean reaches the training cells' share of poor cells, i.e. it is more likely poor than a cell picked at random (their share before undersampling). The members' votes follow the same rule on their raw mean, the baseline's class on its own calibrated probability."

EPOCHS = common.epochs()

NOMINAL = common.nominal() + " The interval rule is stored in the package."

MODEL_NAME = (
    "The package is registered in the run history (MLflow) as a new version of this "
    "model. Empty: the package's folder name and the fingerprint of its training data "
    "and settings (e.g. sindh_2023-3fa9c2d1e0b4), so that packages of other projects "
    "are never versions of the same model; the log says the name."
)

OUTPUT = "Folder of the model package; .povmodel is added to the name if missing."
