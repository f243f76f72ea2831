"""Parameter values as the user means them, where QGIS 3.22 reads them too strictly.

QGIS 3.22 checks a field parameter left out (``qgis_process``, ``processing.run``)
as missing even when it has a default; the dialog fills the default in itself.
"""

from qgis.core import QgsProcessingParameterField


def completed_parameters(algorithm, parameters):
    """``parameters`` with the default of every field parameter left out filled in."""
    completed = dict(parameters)
    for definition in algorithm.parameterDefinitions():
        name = definition.name()
        if (
            isinstance(definition, QgsProcessingParameterField)
            and completed.get(name) in (None, "")
            and definition.defaultValue() not in (None, "")
        ):
            completed[name] = definition.defaultValue()
    return completed
