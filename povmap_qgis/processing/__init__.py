"""Processing provider and algorithms: thin adapters around ``povmap_qgis.core``."""
