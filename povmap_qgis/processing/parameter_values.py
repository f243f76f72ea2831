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


def number_decimals(definition):
    """Decimals a double parameter's spin box shows: enough for its default and limits, 2 to 6.

    QGIS shows 6 by default (1000.000000 m); the widget reads
    ``metadata["widget_wrapper"]["decimals"]``.
    """
    needed = 2
    for value in (definition.defaultValue(), definition.minimum(), definition.maximum()):
        try:
            value = float(value)
        except (TypeError, ValueError):
            continue
        if abs(value) < 1e12:  # the unset limits are ±1.8e308
            needed = max(needed, len(f"{value:.6f}".rstrip("0").split(".")[1]))
    return min(needed, 6)


# parameter ids that help texts also use as plain words ("in any CRS")
WORDS_NOT_IDS = {"CRS"}


def with_labels(text, definitions, markup="{label} ({name})"):
    """``text`` with each parameter id (MIN_OBS) also given by its label, as the user sees it."""
    import re

    labels = {
        definition.name(): definition.description()
        for definition in definitions
        if definition.name() not in WORDS_NOT_IDS
    }
    if not labels:
        return text
    pattern = re.compile(
        r"\b(" + "|".join(sorted(map(re.escape, labels), key=len, reverse=True)) + r")\b"
    )
    return pattern.sub(
        lambda match: markup.format(label=labels[match.group(1)], name=match.group(1)), text
    )


def labelled_error(message, definitions):
    """'SCORE_FIELD: …' → 'Poverty score field — SCORE_FIELD: …' (the label first, the id kept)."""
    name = message.split(":", 1)[0].strip()
    for definition in definitions:
        if definition.name() == name and ":" in message:
            return f"{definition.description()} — {message}"
    return message


def metric_label(key):
    """A metric's name as a label says it: recall, precision, accuracy, AUC (not "auc")."""
    return "AUC" if key.lower() == "auc" else key.lower()


INTEGER_RANGE = (-(2**31), 2**31 - 1)  # what QGIS's parameterAsInt can hold


def odd_numbers(algorithm, parameters):
    """[(definition, value, what is wrong)] for number parameters QGIS 3.22 would read as
    something else: text that is not a number (EPOCHS=many read as 0, i.e. the preset's
    epochs), NaN or infinity (CUTOFF=nan labelled every cell 0), a fraction or a number
    beyond 32 bits for a whole-number parameter (SEED=1e20 became 0)."""
    import math

    from qgis.core import QgsProcessingParameterNumber

    found = []
    for definition in algorithm.parameterDefinitions():
        if not isinstance(definition, QgsProcessingParameterNumber):
            continue
        value = parameters.get(definition.name())
        if (
            value is None
            or isinstance(value, bool)
            or (isinstance(value, str) and not value.strip())
        ):
            continue
        if not isinstance(value, (int, float, str)):
            continue  # an expression or a layer property: QGIS evaluates it
        try:
            number = float(value)
        except ValueError:
            found.append((definition, value, "is not a number"))
            continue
        if not math.isfinite(number):
            found.append((definition, value, "is not a finite number"))
        elif definition.dataType() == QgsProcessingParameterNumber.Type.Integer:
            if number != int(number):
                found.append((definition, value, "is not a whole number"))
            elif not INTEGER_RANGE[0] <= number <= INTEGER_RANGE[1]:
                found.append(
                    (
                        definition,
                        value,
                        f"is beyond {INTEGER_RANGE[1]:,}, the largest whole number QGIS reads",
                    )
                )
    return found
