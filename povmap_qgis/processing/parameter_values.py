"""Parameter values as the user means them, where QGIS 3.22 reads them too strictly.

- A field parameter left out (``qgis_process``, ``processing.run``) is checked
  as missing even when it has a default; the dialog fills the default in itself.
- An enumeration takes only its numbers on 3.22 (static string values,
  ``usesStaticStrings``, came in 3.24): here it also takes a name, e.g.
  ``PRESET=compact``, ``SPLIT=districts``, ``DAYTIME_RESAMPLING=average``.
  The names are the options themselves, or those given with ``add_parameter(...,
  names=...)`` when the options are sentences.
"""

from qgis.core import QgsProcessingParameterEnum, QgsProcessingParameterField

NAMES_KEY = "povmap_names"


def enum_names(definition):
    """The names an enumeration parameter accepts, in the order of its options."""
    names = (definition.metadata() or {}).get(NAMES_KEY)
    return list(names) if names else list(definition.options())


def enum_index(definition, value):
    """The option number of ``value`` (a number, a numeric string or a name); None when unknown."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value < len(definition.options()) else None
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return enum_index(definition, int(text))
    lowered = [name.lower() for name in enum_names(definition)]
    return lowered.index(text.lower()) if text.lower() in lowered else None


def completed_parameters(algorithm, parameters):
    """``parameters`` with field defaults filled in and enumeration names turned into numbers."""
    completed = dict(parameters)
    for definition in algorithm.parameterDefinitions():
        name = definition.name()
        value = completed.get(name)
        if isinstance(definition, QgsProcessingParameterField):
            if value in (None, "") and definition.defaultValue() not in (None, ""):
                completed[name] = definition.defaultValue()
        elif isinstance(definition, QgsProcessingParameterEnum) and isinstance(value, str):
            index = enum_index(definition, value) if value.strip() else None
            if index is not None:
                completed[name] = index
    return completed


def unknown_enum_values(algorithm, parameters):
    """[(definition, value)] of enumeration values that are neither a number nor a name."""
    unknown = []
    for definition in algorithm.parameterDefinitions():
        value = parameters.get(definition.name())
        if (
            isinstance(definition, QgsProcessingParameterEnum)
            and not definition.allowMultiple()
            and value not in (None, "")
            and not hasattr(value, "source")  # a property (Graphical Modeler), not a value
            and enum_index(definition, value) is None
        ):
            unknown.append((definition, value))
    return unknown


def enum_help(definition):
    """The accepted names and numbers, for the parameter's help."""
    return ", ".join(f"{name} ({index})" for index, name in enumerate(enum_names(definition)))
