"""The settings that train the members, shared by ``train`` and ``crossvalidate``.

Cross-validation trains every member in every fold exactly as ``train`` trains it,
so both steps' options build on one dataclass. The options stay flat (one level of
fields, names unchanged): the worker builds them from the adapter's dict,
``runner.check_step_options`` checks that dict against their fields and the run
history records each field as a param. Plain Python, no numpy: cross-validation's
module is imported inside QGIS.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import PovmapInputError

DEFAULT_PRESET = "compact"
BALANCES = ("undersample", "class_weights")  # the paper undersamples the majority class
# prob_low/prob_high: the intervals' nominal coverage (core/model/intervals.py), and its range
DEFAULT_NOMINAL = 0.9
NOMINAL_RANGE = (0.5, 0.99)
INTERVAL_METHOD = "district-calibration"  # the rule's name in packages and metrics


@dataclasses.dataclass(kw_only=True)
class TrainingSettings:
    """The labelled grid and its chip store, the members and how they are trained.

    Keyword-only, so that the steps' own required fields (their outputs) can follow
    these defaults.
    """

    chips_path: str
    grid_path: str
    grid_layer: str | None = None
    id_field: str | None = None  # the grid's cell id; None: the one the chip store was sampled by
    preset: str = DEFAULT_PRESET
    members: list | None = None  # architectures; default: the preset's
    seed: int = 0
    balance: str = BALANCES[0]  # or "class_weights"
    epochs: int | None = None  # overrides of the preset
    batch_size: int | None = None
    learning_rate: float | None = None
    patience: int | None = None
    nominal: float = DEFAULT_NOMINAL  # the prob_low/prob_high intervals' nominal coverage


def check_nominal(settings: Any) -> None:
    """Refuse a nominal coverage outside NOMINAL_RANGE (NOMINAL)."""
    low, high = NOMINAL_RANGE
    nominal = settings.nominal
    if (
        isinstance(nominal, bool)
        or not isinstance(nominal, (int, float))
        or not low <= nominal <= high
    ):
        raise PovmapInputError(
            "NOMINAL",
            f"the intervals' nominal coverage must be between {low} and {high} "
            f"(e.g. {DEFAULT_NOMINAL}); it is {nominal!r}.",
        )


def check_balance(settings: Any) -> None:
    """Refuse a class balance other than BALANCES (BALANCE)."""
    if settings.balance not in BALANCES:
        raise PovmapInputError(
            "BALANCE", f"unknown balance '{settings.balance}' ({' or '.join(BALANCES)})."
        )
