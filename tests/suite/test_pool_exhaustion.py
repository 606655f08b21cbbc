"""Test 10 against the embedded platform (ci profile): a held table lock fills the
API's PostgreSQL pool; waits time out, the breaker opens and closes again, the API
survives; against an API whose pool waits without bound, the timeout and breaker checks
fail; against one without a breaker, the breaker checks fail."""

from __future__ import annotations

import pytest

from nightly_pipeline.suite.catalog import select_tests
from tests.suite.chaos_checks import checks, failed, journal, no_fault_left
from tests.suite.platforms import ci_platform, run_ci

EXHAUSTION = select_tests("10")[0]


@pytest.fixture(scope="module")
def platform(tmp_path_factory, system_dir):
    with ci_platform(tmp_path_factory, system_dir, "exhaustion") as up:
        yield up


def test_a_full_pool_times_out_opens_the_breaker_and_recovers(platform, tmp_path) -> None:
    api = platform.pids()["api"]
    outcome = run_ci(EXHAUSTION, platform.target(), tmp_path)
    assert outcome.record.status == "passed", outcome.record.detail
    for name in ("timeouts_counted", "breaker_opens", "breaker_closes_again"):
        assert checks(outcome)[name][1] > 0, name
    assert platform.pids()["api"] == api
    journal(tmp_path)
    no_fault_left(tmp_path)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"pg_pool_timeout_s": None}, {"timeouts_counted", "breaker_opens"}),
        ({"storage_breaker": False}, {"breaker_opens", "breaker_closes_again"}),
    ],
    ids=["unbounded-wait", "no-breaker"],
)
def test_an_api_without_bounds_or_breaker_fails_the_right_checks(
    tmp_path_factory, system_dir, tmp_path, overrides, expected
) -> None:
    with ci_platform(tmp_path_factory, system_dir, "broken-pool", overrides=overrides) as up:
        outcome = run_ci(EXHAUSTION, up.target(), tmp_path)
    assert expected <= failed(outcome), outcome.record.detail
    assert outcome.blocking_failed
    no_fault_left(tmp_path)
