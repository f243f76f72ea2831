"""The time-left estimate of long steps (core/progress.TimeLeft), against the rule written out."""

import pytest

from povmap_qgis.core.progress import TimeLeft, duration_text


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_time_left_extrapolates_the_rate_since_the_first_progress():
    clock = Clock()
    estimate = TimeLeft(clock)
    assert estimate.text(5.0) is None  # the first progress: the start (loading) is not counted
    clock.now += 4.0
    assert estimate.text(20.0) is None  # too early to tell (under 10 s)
    clock.now += 8.0  # 12 s after the first progress, 5 % -> 35 %: 30 % in 12 s
    assert estimate.seconds_left(35.0) == pytest.approx(12.0 * 65.0 / 30.0)
    assert estimate.text(35.0) == "about 25 s left"  # 26 s, to 5 s
    clock.now += 1.0
    assert estimate.text(36.0) is None  # not more often than every 2 s
    clock.now += 48.0  # 61 s, 5 % -> 45 %: 40 % in 61 s, 55 % to go
    assert estimate.text(45.0) == f"about {round(61.0 * 55.0 / 40.0 / 60.0)} min left"
    clock.now += 10.0
    assert estimate.text(100.0) is None  # done


def test_no_estimate_while_the_progress_does_not_move():
    clock = Clock()
    estimate = TimeLeft(clock)
    estimate.text(50.0)
    clock.now += 30.0
    assert estimate.text(50.0) is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "5 s"), (12, "10 s"), (58, "60 s"), (61, "1 min"), (149, "2 min"), (4830, "1 h 20 min")],
)
def test_durations_read_as_people_say_them(seconds, text):
    assert duration_text(seconds) == text
