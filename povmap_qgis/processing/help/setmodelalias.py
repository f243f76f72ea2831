"""Help of povmap:setmodelalias; docs/algorithms/setmodelalias.md says the same in more words.

Its SUMMARY, then each parameter's help under the parameter's id, in the dialog's order.
"""

SUMMARY = (
    "Every trained package is registered in the run history (MLflow) as a new version of a "
    "named model. This points an alias such as champion at one version, so that predict can "
    "use MODEL=models:/<name>@champion and keep working when a better version is promoted. "
    "The run history is the one set in Settings ▸ Options ▸ Processing ▸ Providers ▸ Poverty "
    "mapping (default: a SQLite database in the QGIS profile)."
)

MODEL_NAME = (
    "The name the package was registered under: its folder name without .povmodel, or "
    "the MODEL_NAME given to Train."
)

VERSION = "The version number to point the alias at (see Run history for the versions)."

ALIAS = "A word such as champion or production; it moves from any version that had it."
