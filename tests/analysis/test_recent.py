"""The verdicts' recent-nights test (analysis/recent.py): a 5 % step on a quiet series
reported on its third night, and nothing from outliers, improvements, small shifts or
series too loud for three nights to tell."""

import numpy as np
import pytest

from nightly_pipeline.analysis import synthetic as syn
from nightly_pipeline.analysis.recent import recent_worsening
from nightly_pipeline.analysis.synthetic import SeriesSpec, Step

from .conftest import START, first_regressions, night

LATENCY, THROUGHPUT = 1.0, -1.0  # worse_sign: up is worse, down is worse


def test_a_5_percent_step_at_1_5_percent_noise_is_mostly_reported_by_its_third_night() -> None:
    """Forty series at CV 1.5 % (latency and throughput, two seeds), each 5 % worse from
    night 60: by night 62 the verdicts call 34, dated at the step (± 1 night); without
    the recent-nights test (change points and CUSUM) 26. Nothing fires before the step.
    (Over eight seeds, 160 series: 136 vs 108.)"""
    specs = [
        SeriesSpec(f"t{i:02d}", metric, noise=0.015)
        for i in range(10)
        for metric in ("http_req_duration.p95", "http_reqs.rate")
    ]
    quick, slow = 0, 0
    for seed in (43, 44):
        history, _ = syn.generate(seed, 63, syn.with_steps(specs, [Step(60, 0.05)]), start=START)
        found = first_regressions(history, range(40, 63))
        assert all(
            first >= 60 and abs((bad - night(60)).days) <= 1 for first, bad in found.values()
        )
        quick += len(found)
        slow += len(first_regressions(history, range(40, 63), recent_nights=False))
    assert quick >= 32 and slow <= quick - 6


def test_the_alarm_measures_the_newest_nights_against_the_reference() -> None:
    values = syn.values(3, 63, noise=0.01, steps=[Step(60, 0.06)])
    alarm = recent_worsening(values, LATENCY, 0.05)
    assert alarm is not None and alarm.start == 60
    assert alarm.magnitude == pytest.approx(0.06, abs=0.015)
    assert alarm.confidence > 0.999
    assert recent_worsening(values[:62], LATENCY, 0.05) is None  # two nights decide nothing


def test_a_throughput_drop_is_worse_and_a_latency_drop_is_not() -> None:
    values = syn.values(5, 63, noise=0.01, steps=[Step(60, 0.06)], direction="higher")
    assert values[60:].mean() < values[:60].mean()
    assert recent_worsening(values, THROUGHPUT, 0.05) is not None
    assert recent_worsening(values, LATENCY, 0.05) is None  # an improvement never alarms


@pytest.mark.parametrize("outliers", [(60,), (60, 62), (61, 62)])
def test_outliers_among_the_newest_nights_decide_nothing(outliers: tuple[int, ...]) -> None:
    values = syn.values(9, 63, noise=0.01)
    values[list(outliers)] *= 4.0
    assert recent_worsening(values, LATENCY, 0.05) is None


def test_a_shift_well_under_the_minimum_effect_is_not_one() -> None:
    """3 % on a series whose nights vary by 0.3 %: clear, but not the 5 % we care about."""
    values = syn.values(11, 63, noise=0.003, steps=[Step(60, 0.03)])
    assert recent_worsening(values, LATENCY, 0.05) is None
    assert recent_worsening(values, LATENCY, 0.03) is not None


def test_a_series_too_loud_for_three_nights_is_left_to_the_change_points() -> None:
    """At CV 5 % a 5 % step is 1 σ a night: what three nights show there is chance."""
    values = syn.values(13, 63, noise=0.05)
    values[60:] = np.median(values[:60]) * 1.12  # three nights 12 % worse, no noise
    assert recent_worsening(values, LATENCY, 0.05) is None
    assert recent_worsening(values, LATENCY, 0.10) is not None  # 10 % is 2 σ a night


def test_too_few_reference_nights_give_nothing() -> None:
    values = syn.values(17, 16, noise=0.01, steps=[Step(13, 0.2)])
    assert recent_worsening(values, LATENCY, 0.05) is None  # 13 nights before the 3
