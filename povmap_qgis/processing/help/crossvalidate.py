"""Help of povmap:crossvalidate; docs/algorithms/crossvalidate.md says the same in more words.

Its SUMMARY, then each parameter's help under the parameter's id, in the dialog's order.
"""

from . import common

SUMMARY = (
    "Leave-districts-out k-fold cross-validation: the labelled cells are split into FOLDS folds of whole districts, "
    "balanced by cell count. For each fold every member is trained on the other folds (as Train poverty ensemble trains "
    "it) and predicts the held-out districts. Reports recall, precision, accuracy and AUC per fold for each member, the "
    "ensemble (calibrated mean probability ≥ the training folds' share of poor cells), the transparent baseline and the random baseline — the paper's Table 5 layout — with their median and range across "
    "folds, as an HTML report (with ROC curves, confusion matrices and maps of the folds and of the out-of-fold hits and "
    "misses), JSON and a tidy CSV. The grid is written with each cell's fold and its out-of-fold "
    "probabilities and prediction. Trains FOLDS × members models: use the compact preset on a CPU. Cancel stops between "
    "batches and writes nothing."
)

CHIPS = common.chips()

GRID = common.grid("(its id in ID_FIELD); folds are made of its districts.")

ID_FIELD = common.STORE_ID_FIELD

PRESET = common.preset()

MEMBERS = common.members(per_fold=True)

FOLDS = "Number of folds; each holds whole districts, so at most the number of districts with labelled cells."

STACKING = (
    "How prob_raw combines the members and the transparent baseline in each fold (a "
    "non-negative logistic regression on their logits; the report shows the weights). "
    "nested: inside each fold, the members and the baseline are also trained on 3 inner "
    "folds of its training districts and the stacking is fitted on their inner "
    "out-of-fold predictions, so the held-out fold is never seen by members, stacking or "
    "calibration: the honest verdict, at about 4 times the training time. validation: "
    "fitted on each fold's validation cells, as Train does (one training per member and "
    "fold; slightly optimistic). off: the members' mean."
)

SEED = common.seed("fold assignment, splits, sampling")

EPOCHS = common.epochs(per_fold=True)

NOMINAL = common.nominal(per_fold=True)

REPORT = "One self-contained HTML file: settings, folds and their districts, metrics per fold, median and range across folds."

METRICS = (
    "Every number of the report as JSON; a tidy CSV with the same name and .csv is written beside it "
    "(fold, districts, model, n, recall, precision, accuracy, auc; fold = median, min or max for the summary rows)."
)

OUTPUT_GRID = (
    "GeoPackage: the grid with fold, prob_<member>, prob_mean, votes, pred and outcome (hit, miss, false_alarm, "
    "correct_rejection) of each labelled cell, predicted by members that never saw its district (empty for cells "
    "left out, e.g. flagged for nodata). Styled as hits and misses; the folds, class and probability styles are "
    "in the layer's Styles menu."
)
