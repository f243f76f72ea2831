"""Help of povmap:runs; docs/algorithms/runs.md says the same in more words.

Its SUMMARY, then each parameter's help under the parameter's id, in the dialog's order.
"""

SUMMARY = (
    "Lists the recorded runs, or the versions of one registered model, as a table and an "
    "HTML comparison. Each run of train, predict, evaluate, crossvalidate and target has "
    "its parameters, input fingerprints and final metrics, written as a CSV file and a "
    "non-spatial GeoPackage table; the HTML report overlays the ROC curves of the most "
    "recent runs and puts their metrics side by side, the parameters that differ in bold. The run history is the one set in Settings ▸ Options ▸ Processing ▸ Providers "
    "▸ Poverty mapping (default: a SQLite database in the QGIS profile)."
)

MODEL_NAME = "Empty: the runs of the experiment. A registered model name: one row per version."

STEP = (
    "train, predict, evaluate, crossvalidate or target; empty: all of these. "
    "crossvalidate.fold: the runs of single folds (nested under their cross-validation)."
)

EXPERIMENT = "The MLflow experiment the runs are recorded in (POVMAP_MLFLOW_EXPERIMENT)."

MAX_RUNS = "How many of the most recent runs (or versions) are listed."

OUTPUT = (
    "One row per run: id, step, algorithm, status, start, QGIS version, data fingerprint, "
    "param.* and metric.* columns."
)

OUTPUT_TABLE = "The same rows as a non-spatial GeoPackage table, for the attribute table."

REPORT = (
    "The most recent runs' ensemble ROC curves overlaid, their metrics side by side and "
    "the parameters that differ in bold."
)
