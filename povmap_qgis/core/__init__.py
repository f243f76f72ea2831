"""The science of povmap-qgis in plain Python.

Nothing in this package imports ``qgis``: the same functions serve the
Processing algorithms (through the worker process), the command line and tests.
"""
