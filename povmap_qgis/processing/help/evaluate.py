"""Help of povmap:evaluate; docs/algorithms/evaluate.md says the same in more words.

Its SUMMARY, then each parameter's help under the parameter's id, in the dialog's order.
"""

SUMMARY = (
    "Compares a prediction layer with observed labels — held-out cells of the training grid, or a new ground-truth "
    "survey gridded with Build training grid — matching cells by cell_id (the layers may be in different CRSs). "
    "Recall, precision, accuracy, AUC, ROC curves and confusion matrices for every member and the ensemble, over all "
    "cells and per district, beside the paper's random baseline (median of RANDOM_DRAWS coin-flip predictions). "
    "Writes a hit/miss layer (hit, miss, false alarm, correct rejection, styled, counts in the legend), the metrics "
    "as JSON and a tidy CSV beside it, and one self-contained HTML report with tables, figures and maps. Truth with "
    "one class only is reported with AUC left empty and a warning."
)

PREDICTIONS = (
    "A prediction layer from Predict poverty (cell_id, a prob_ field per member, prob_mean, pred). The members' "
    "decision threshold is read from its metadata (0.5, with a warning, when missing)."
)

TRUTH = (
    "A labelled grid (cell_id, label 1 = poor, district) from Build training grid: held-out cells, or a new survey "
    "gridded in the same CRS and cell size as the predicted grid; any layer or table with these fields. "
    "Matched by cell_id, not by location."
)

ID_FIELD = (
    "The cell id both layers hold, by which cells are matched. Empty: the id Predict poverty "
    "recorded in the prediction layer (its grid's ID_FIELD), else cell_id. For predictions "
    "on a grid of your own the labelled polygons of TRUTH must hold that id too."
)

RANDOM_DRAWS = (
    "How many coin-flip predictions of the same cells make the random baseline; their median recall, "
    "precision and accuracy are reported beside the model (the paper: 1000)."
)

SEED = "Seed of the random baseline: the same seed gives the same baseline."

HITMISS = (
    "GeoPackage of the compared cells: the prediction fields plus label and outcome (hit, miss, false_alarm, "
    "correct_rejection), styled with colour-blind-safe colours and the count of each outcome in the legend."
)

REPORT = (
    "One self-contained HTML file (images inside, opens offline): settings, data summary, metric tables, "
    "ROC curves, confusion matrices, per-district table, outcome counts and maps rendered by QGIS."
)

METRICS = (
    "Every number of the report as JSON; a tidy CSV with the same name and .csv is written beside it "
    "(scope, model, n, recall, precision, accuracy, auc; empty where undefined)."
)
