"""The plan's rule and its blindness (DESIGN.md §7)."""

import pytest

from nightly_pipeline.analysis import plan_rule
from nightly_pipeline.analysis.plan_rule import firing_on_last_night


def test_noise_free_12_percent_step_never_fires() -> None:
    values = [100.0] * 20 + [112.0] * 30
    result = plan_rule(values, "lower")
    assert [round(100 * w, 1) for w in result.worse_by[20:23]] == [12.0, 10.1, 8.3]
    assert not result.fired
    assert result.first_night_index is None


def test_the_same_for_throughput() -> None:
    values = [500.0] * 20 + [500.0 * 0.88] * 30  # 12 % fewer requests/s
    worse = plan_rule(values, "higher").worse_by
    assert [round(100 * w, 1) for w in worse[20:23]] == [12.0, 10.5, 8.9]
    assert not plan_rule(values, "higher").fired


@pytest.mark.parametrize(("step", "fires"), [(0.145, False), (0.147, True), (0.20, True)])
def test_invisible_below_14_6_percent(step: float, fires: bool) -> None:
    result = plan_rule([1.0] * 10 + [1.0 + step] * 10, "lower")
    assert result.fired is fires
    assert result.first_night_index == (10 if fires else None)


def test_slow_drift_is_invisible() -> None:
    values = [1.0 + 0.02 * i for i in range(60)]  # +2 %/night: +118 % after 60 nights
    assert not plan_rule(values, "lower").fired


def test_firing_on_last_night() -> None:
    assert firing_on_last_night(plan_rule([1.0] * 7 + [1.5] * 3, "lower"))
    assert not firing_on_last_night(plan_rule([1.0] * 7 + [1.5] * 3 + [1.0], "lower"))
    assert not firing_on_last_night(plan_rule([1.0] * 5, "lower"))
