"""Test 03 end to end against the embedded platform (ci profile): healthy, it passes;
with the API's Redis link slowed down (fault proxy latency), removals take longer to be
enforced and the invalidation delay check fails, while no stale read is served; with a
membership cache that never invalidates (the testbed's ``cache_invalidation`` fault
knob), the owner keeps being shown removed members and the blocking stale-read check
fails."""

from __future__ import annotations

import httpx
import pytest

from nightly_pipeline.chaos.control import ProxyControl
from nightly_pipeline.suite.catalog import select_tests
from nightly_pipeline.suite.client import Session
from tests.suite.platforms import (
    assert_blocking_passed,
    ci_platform,
    metric,
    run_ci,
    scenario_module,
)

INVALIDATION = select_tests("03")[0]
invalidation = scenario_module("03")
REDIS_LATENCY_MS = 80.0


@pytest.fixture(scope="module")
def platform(tmp_path_factory, system_dir):
    with ci_platform(tmp_path_factory, system_dir, "invalidation") as up:
        yield up


@pytest.fixture(scope="module")
def never_invalidating(tmp_path_factory, system_dir):
    overrides = {"cache_invalidation": False}
    with ci_platform(tmp_path_factory, system_dir, "stale", overrides=overrides) as up:
        yield up


def _run(platform, tmp_path):
    return run_ci(INVALIDATION, platform.target(), tmp_path)


def test_participant_invalidation_passes_on_the_healthy_platform(platform, tmp_path) -> None:
    outcome = _run(platform, tmp_path)
    checks = assert_blocking_passed(outcome)
    assert checks["no_stale_reads"].observed == 0
    assert metric(outcome, "invalidation_delay_ms.count") >= 0.5 * 10 * 6  # 10 removals/s
    assert metric(outcome, "churn_errors.count") == 0


def test_a_slow_redis_link_fails_the_invalidation_delay_check(platform, tmp_path) -> None:
    with ProxyControl(platform.endpoints.redis_proxy_control, proxy="redis") as proxy:
        proxy.set_latency(REDIS_LATENCY_MS)
        try:
            outcome = _run(platform, tmp_path)
        finally:
            proxy.set_latency(0)
    checks = {c.check.name: (c.passed, c.observed) for c in outcome.checks}
    assert checks["invalidation_p99_under_100ms"][0] is False
    assert checks["invalidation_p99_under_100ms"][1] >= REDIS_LATENCY_MS
    assert checks["no_stale_reads"] == (True, 0)


def test_a_cache_that_never_invalidates_fails_the_blocking_stale_read_check(
    never_invalidating, tmp_path
) -> None:
    outcome = _run(never_invalidating, tmp_path)
    checks = {c.check.name: (c.passed, c.observed) for c in outcome.checks}
    assert checks["no_stale_reads"][0] is False
    assert outcome.blocking_failed and outcome.record.status == "failed"
    # Access is still RLS's decision: the stale reads are member lists, not rows served.
    assert checks["no_stale_reads"][1] == metric(outcome, "stale_member_lists.count") > 0


class _FakeClient:
    """A stand-in for ``PlatformClient`` (no platform: this tests the windows' arithmetic):
    answers ``X-Cache: miss`` for the first ``misses`` reads, then hits."""

    def __init__(self, misses: int) -> None:
        self.misses = misses
        self.reads = 0

    def get_conversation(self, session, conv) -> httpx.Response:
        self.reads += 1
        tag = "miss" if self.reads <= self.misses else "hit"
        return httpx.Response(200, headers={"X-Cache": tag})


def _churned() -> list:
    people = [Session(f"u{i}", i, "t") for i in range(4)]
    return [invalidation.Churned(f"c{n}", people[0], people[1:]) for n in range(2)]


class _FakeTime:
    """The scenario module's ``time`` on a fake clock: ``sleep`` moves it, reads take no
    time, so the windows are whole seconds whatever the machine's load."""

    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.parametrize(
    ("misses", "bound_s", "seconds", "ratios"),
    [
        (10, 5.0, 2.0, [6 / 16, 1.0]),  # 16 reads a window: 10 misses, then hits
        (0, 5.0, 1.0, [1.0]),
        (10**6, 2.0, 2.0, [0.0, 0.0]),  # never recovers: the bound, every window seen
    ],
)
def test_hit_ratio_recovery_windows(monkeypatch, misses, bound_s, seconds, ratios) -> None:
    monkeypatch.setattr(invalidation, "time", _FakeTime())
    client = _FakeClient(misses)
    # 16 reads/s: a 1/16 s interval is exact in binary, so window edges are too.
    got = invalidation.hit_ratio_recovery(client, _churned(), 16.0, bound_s, 0.9)
    assert got == (seconds, ratios)
    assert client.reads == 16 * len(ratios)
