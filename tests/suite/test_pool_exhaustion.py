"""Test 10 against the embedded platform (ci profile): a held table lock fills the
API's PostgreSQL pool; waits time out, the breaker opens and closes again, the API
survives; against an API whose pool waits without bound, the timeout and breaker checks
fail; against one without a breaker, the breaker checks fail; against one whose pool
outgrows PostgreSQL's connection limit and that exits on a refused connection (and
whose every stream write is refused), the crash and loss checks fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from nightly_pipeline.suite.catalog import select_tests
from tests.suite.chaos_checks import checks, failed, journal, no_fault_left
from tests.suite.platforms import ci_platform, metric, run_ci

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


def test_an_api_that_exits_when_its_full_pool_is_refused_fails_the_crash_check(
    tmp_path_factory, system_dir, tmp_path
) -> None:
    """``exit_on_db_loss: true`` with an API pool (``pg_pool_size: 200``) larger than
    PostgreSQL allows (``max_connections`` 100): the requests waiting on the lock fill it
    past the server's limit, a connection is refused (too many connections) and the API
    exits, so ``api_never_crashes`` fails.
    ``stream_writable: false`` on the same platform (every XADD refused): no message
    reaches a socket, so ``zero_message_loss`` fails with every acknowledged one lost."""
    overrides = {"exit_on_db_loss": True, "pg_pool_size": 200, "stream_writable": False}
    with ci_platform(
        tmp_path_factory,
        system_dir,
        "refused-pool",
        stack_settings={"max_connections": 100},
        overrides=overrides,
    ) as up:
        outcome = run_ci(EXHAUSTION, up.target(), tmp_path)
        log = Path(up.endpoints.logs["api"]).read_text()
    assert checks(outcome)["api_never_crashes"] == (False, 1)
    assert "TooManyConnectionsError" in log and "exit_on_db_loss is set: exiting" in log
    expected = metric(outcome, "delivery_expected.count")
    assert checks(outcome)["zero_message_loss"] == (False, expected) and expected > 0
    assert outcome.blocking_failed
    no_fault_left(tmp_path)
