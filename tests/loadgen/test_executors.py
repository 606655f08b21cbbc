"""Executor configs and arrival schedules: pure functions, no network, no clock."""

from __future__ import annotations

import itertools

import pytest

from nightly_pipeline.loadgen.errors import ConfigError
from nightly_pipeline.loadgen.executors import (
    REGISTRY,
    ConstantArrivalRate,
    ConstantVus,
    RampingArrivalRate,
    RunBounds,
    Stage,
    ramping_offsets,
    validate,
)


def test_constant_rate_offsets_are_absolute_deadlines() -> None:
    config = ConstantArrivalRate(rate=4, bounds=RunBounds(duration_s=2))
    assert list(config.offsets()) == pytest.approx([0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75])


def test_workers_interleave_and_add_up_to_the_whole_schedule() -> None:
    config = ConstantArrivalRate(rate=1000, bounds=RunBounds(duration_s=3), max_vus=10)
    whole = list(config.offsets())
    shares = [list(config.for_worker(k, 3).offsets()) for k in range(3)]
    assert sorted(itertools.chain(*shares)) == pytest.approx(whole)
    assert [len(s) for s in shares] == [1000, 1000, 1000]
    assert sum(config.for_worker(k, 3).max_vus for k in range(3)) == 10


def test_ramp_arrivals_follow_the_integral_of_the_rate() -> None:
    # 0 -> 100/s over 10 s: 500 arrivals, half of them in the last 2.93 s (sqrt(0.5)).
    offsets = list(ramping_offsets(0, [Stage(10, 100)]))
    assert len(offsets) == 500
    assert offsets[250] == pytest.approx(10 * 0.5**0.5, rel=1e-3)
    assert offsets == sorted(offsets)


def test_ramp_then_hold() -> None:
    offsets = list(ramping_offsets(10, [Stage(2, 10), Stage(2, 30), Stage(1, 30)]))
    # 20 + (10 + 30) / 2 * 2 + 30 arrivals
    assert len(offsets) == 20 + 40 + 30
    assert offsets[19] == pytest.approx(1.9)
    assert all(4 <= o < 5 for o in offsets[60:])


@pytest.mark.parametrize(
    ("config", "fragments"),
    [
        (ConstantArrivalRate(rate=0, bounds=RunBounds(duration_s=0)), ["rate", "duration"]),
        (ConstantArrivalRate(rate=10, bounds=RunBounds(1), max_vus=0), ["max_vus"]),
        (RampingArrivalRate(0, (), RunBounds(5)), ["stages must not be empty"]),
        (RampingArrivalRate(0, (Stage(-1, 5),), RunBounds(5)), ["stage 1: duration"]),
        (ConstantVus(vus=0, bounds=RunBounds(1, max_iterations=0)), ["vus", "max_iterations"]),
        (ConstantVus(vus=1, bounds=RunBounds(10**6)), ["duration must be in"]),
    ],
)
def test_validate_lists_every_problem(config, fragments) -> None:
    with pytest.raises(ConfigError) as err:
        validate(config)
    for fragment in fragments:
        assert fragment in str(err.value)


def test_valid_configs_pass_and_registry_knows_the_k6_names() -> None:
    validate(ConstantArrivalRate(rate=10, bounds=RunBounds(1)))
    assert set(REGISTRY) == {"constant-arrival-rate", "ramping-arrival-rate", "constant-vus"}


def test_iteration_budget_splits_exactly_across_workers() -> None:
    config = ConstantVus(vus=5, bounds=RunBounds(10, max_iterations=101))
    shares = [config.for_worker(k, 3) for k in range(3)]
    assert sum(s.bounds.max_iterations for s in shares) == 101
    assert sum(s.vus for s in shares) == 5
    assert all(s.bounds.duration_s == 10 for s in shares)
