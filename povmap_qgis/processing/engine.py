"""ENGINE and SPARK_MASTER: where samplechips and predict run (core/engines/spark_engine.py for Spark).

Shared by the two algorithms that have a Spark engine; PySpark itself is
imported only by the worker.
"""

from qgis.core import QgsProcessingParameterEnum, QgsProcessingParameterString

ENGINES = ["local", "spark"]
DEFAULT_MASTER = "local[*]"


class EngineParameters:
    """The ids of ENGINE and SPARK_MASTER: a base class of the algorithms that have them."""

    ENGINE = "ENGINE"
    SPARK_MASTER = "SPARK_MASTER"


def add_engine_parameters(algorithm):
    """ENGINE and SPARK_MASTER (their help: help/common.py)."""
    algorithm.add_parameter(
        QgsProcessingParameterEnum(
            algorithm.ENGINE, algorithm.tr("Engine"), ENGINES, False, 0, optional=True
        ),
        advanced=True,
    )
    algorithm.add_parameter(
        QgsProcessingParameterString(
            algorithm.SPARK_MASTER, algorithm.tr("Spark master"), DEFAULT_MASTER, optional=True
        ),
        advanced=True,
    )


def engine_options(algorithm, parameters, context):
    """The core options' ``engine`` and ``spark_master`` from ENGINE and SPARK_MASTER."""
    engine = ENGINES[algorithm.parameterAsEnum(parameters, algorithm.ENGINE, context)]
    master = (
        algorithm.parameterAsString(parameters, algorithm.SPARK_MASTER, context) or ""
    ).strip()
    return {"engine": engine, "spark_master": master or DEFAULT_MASTER}
