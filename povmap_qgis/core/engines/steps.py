"""The steps that run on an engine (``ENGINE``): sampling chips and predicting.

What the worker (``worker.STEPS``) and the command line (``cli.py``) call: the step of
``core/chips/sampling.py`` or ``core/model/prediction.py`` with the engine its options
name handed to it — none for ``local`` (the step's own code in this process), a
``SparkEngine`` on ``options.spark_master`` for ``spark``. PySpark is imported only when
a Spark job starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..chips import sampling
from ..chips.sampling import ChipOptions
from ..model import prediction
from ..model.prediction import PredictOptions

if TYPE_CHECKING:
    from ..progress import Reporter
    from .spark_engine import SparkEngine


__all__ = ["ChipOptions", "PredictOptions", "predict", "sample_chips"]


def sample_chips(options: ChipOptions, reporter: Reporter | None = None) -> dict[str, Any]:
    """Step 3 (``povmap:samplechips``) on ``options.engine``."""
    return sampling.sample_chips(options, reporter, remote=_remote(options))


def predict(options: PredictOptions, reporter: Reporter | None = None) -> dict[str, Any]:
    """Step 5 (``povmap:predict``) on ``options.engine``."""
    return prediction.predict(options, reporter, remote=_remote(options))


def _remote(options: ChipOptions | PredictOptions) -> SparkEngine | None:
    if options.engine != "spark":
        return None  # local, or a name the step refuses with its own message
    from .spark_engine import SparkEngine

    return SparkEngine(options.spark_master)
