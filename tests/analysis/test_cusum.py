"""The verdicts' CUSUM (analysis/cusum.py): small steps on loud series, found by evidence
added up over nights, and nothing from outliers or improvements."""

import itertools

import numpy as np
import pytest

from nightly_pipeline.analysis import synthetic as syn
from nightly_pipeline.analysis.cusum import Alarm, worsening_alarm
from nightly_pipeline.analysis.synthetic import SeriesSpec, Step

from .conftest import START, first_regressions, night

LATENCY, THROUGHPUT = 1.0, -1.0  # worse_sign: up is worse, down is worse


def test_a_10_percent_step_on_8_percent_noise_is_found_where_change_points_alone_miss_it() -> None:
    """Ten series at CV 8 %, each 10 % worse from night 60: the change points alone call
    3 of them within two weeks, with the CUSUM 7, each dated at the step (± 2 nights)."""
    specs = [SeriesSpec(f"t{i}", "http_req_duration.p95", noise=0.08) for i in range(10)]
    history, _ = syn.generate(41, 80, syn.with_steps(specs, [Step(60, 0.10)]), start=START)
    alone = first_regressions(history, range(60, 75), cusum_threshold=None)
    both = first_regressions(history, range(60, 75))
    assert len(alone) == 3 and len(both) == 7
    assert set(alone) < set(both)
    assert all(abs((bad - night(60)).days) <= 2 for _, bad in both.values())


def _fires(values: np.ndarray, worse_sign: float) -> dict[int, Alarm]:
    """Night -> the alarm of the verdict run on the nights up to it, where one fires."""
    out = {}
    for n in range(values.size):
        alarm = worsening_alarm(values[: n + 1], worse_sign, 0.05)
        if alarm is not None:
            out[n] = alarm
    return out


def test_the_alarm_dates_the_step_and_measures_it_against_the_nights_before() -> None:
    values = syn.values(7, 90, noise=0.06, steps=[Step(70, 0.12)])
    fires = _fires(values, LATENCY)
    assert fires and min(fires) >= 70  # nothing before the step
    alarm = fires[min(fires)]
    assert abs(alarm.start - 70) <= 2
    assert alarm.magnitude == pytest.approx(0.12, abs=0.04)
    assert alarm.confidence > 0.999


def test_an_alarm_is_the_night_it_fires_and_a_level_that_stays_worse_fires_again() -> None:
    values = syn.values(10, 110, noise=0.05, steps=[Step(60, 0.15)])
    fires = sorted(_fires(values, LATENCY))
    assert fires and fires[0] >= 60
    assert len(fires) >= 3 and all(b - a > 1 for a, b in itertools.pairwise(fires))
    values[80:] /= 1.15  # fixed: back at the level before
    assert max(_fires(values, LATENCY)) < 85


def test_a_throughput_that_drops_alarms_one_that_rises_does_not() -> None:
    drop = syn.values(8, 90, noise=0.06, steps=[Step(70, 0.12)], direction="higher")
    assert drop[75:].mean() < drop[:70].mean()  # "worse" for throughput is down
    assert _fires(drop, THROUGHPUT)
    assert not _fires(drop, LATENCY)  # read as a latency: better


def test_isolated_outliers_of_5x_add_at_most_three_sigma_each() -> None:
    values = syn.values(9, 90, noise=0.05)
    assert not _fires(values, LATENCY)
    values[[40, 55, 70, 85]] *= 5.0
    assert not _fires(values, LATENCY)


@pytest.mark.parametrize(
    ("values", "why"),
    [
        (np.zeros(60), "a level of zero has no relative effect"),
        (np.full(60, 3.0), "no noise: nothing to measure against"),
        (np.r_[np.full(10, 3.0), np.full(3, 9.0)], "fewer than 14 nights of reference"),
    ],
)
def test_no_alarm_without_a_usable_reference(values: np.ndarray, why: str) -> None:
    assert not _fires(values, LATENCY), why
