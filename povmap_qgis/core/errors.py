"""Errors that name what the user has to fix."""


class PovmapInputError(ValueError):
    """Bad input: names the parameter at fault and says what to do.

    ``parameter`` is the Processing parameter name (``INPUT``, ``SCORE_FIELD``...)
    so that a message reads the same in the toolbox, in qgis_process and on the
    command line.
    """

    def __init__(self, parameter, message):
        self.parameter = parameter
        super().__init__(f"{parameter}: {message}" if parameter else message)


class PovmapCanceledError(Exception):
    """The user cancelled the run; outputs have been cleaned up."""
