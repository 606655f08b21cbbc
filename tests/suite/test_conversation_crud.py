"""Test 02 end to end against the embedded platform (ci profile): healthy, it passes;
with the target's /metrics unreachable, exactly the checks read from it fail; with
row-level security off (the testbed's ``row_level_security`` fault knob), other users'
conversations are served and the blocking security checks fail; with ``If-Match``
ignored (``optimistic_locking`` off), no 409 and the blocking conflict check fails."""

from __future__ import annotations

import dataclasses

import pytest

from nightly_pipeline.suite.catalog import select_tests
from nightly_pipeline.suite.conversation_http import cache_hit_ratio
from nightly_pipeline.suite.sampling import Samples, Scrape
from nightly_pipeline.testbed.stack.probes import free_port
from tests.suite.platforms import assert_blocking_passed, ci_platform, metric, run_ci

CRUD = select_tests("02")[0]
FROM_METRICS = {
    "foreign_access_denied_403",
    "stale_versions_get_409",
    "cache_hit_ratio_over_80pct",
}


@pytest.fixture(scope="module")
def platform(tmp_path_factory, system_dir):
    with ci_platform(tmp_path_factory, system_dir, "crud") as up:
        yield up


@pytest.fixture(scope="module")
def without_rls(tmp_path_factory, system_dir):
    overrides = {"row_level_security": False}
    with ci_platform(tmp_path_factory, system_dir, "no-rls", overrides=overrides) as up:
        yield up


@pytest.fixture(scope="module")
def without_locking(tmp_path_factory, system_dir):
    """An API that ignores ``If-Match`` (the testbed's ``optimistic_locking`` off)."""
    overrides = {"optimistic_locking": False}
    with ci_platform(tmp_path_factory, system_dir, "no-lock", overrides=overrides) as up:
        yield up


def _run(target, tmp_path):
    return run_ci(CRUD, target, tmp_path)


def test_conversation_crud_passes_on_the_healthy_platform(platform, tmp_path) -> None:
    outcome = _run(platform.target(), tmp_path)
    checks = assert_blocking_passed(outcome)
    assert checks["no_foreign_row_served"].observed == 0
    assert checks["stale_versions_get_409"].observed > 0
    assert checks["foreign_access_denied_403"].observed > 0
    assert checks["cache_hit_ratio_over_80pct"].observed > 0  # the cache serves (WARN: printed)
    assert metric(outcome, "version_conflicts_seen.count") > 0


def test_unreadable_metrics_fail_only_the_checks_that_need_them(platform, tmp_path) -> None:
    closed = f"http://127.0.0.1:{free_port()}/metrics"
    target = dataclasses.replace(platform.target(), metrics_urls={"api": closed})
    outcome = _run(target, tmp_path)
    failed = {c.check.name for c in outcome.checks if not c.passed}
    assert failed >= FROM_METRICS
    assert "no_foreign_row_served" not in failed
    assert "api" in outcome.unreadable
    assert outcome.blocking_failed and outcome.record.status == "failed"


def test_row_level_security_off_fails_the_blocking_foreign_access_check(
    without_rls, tmp_path
) -> None:
    outcome = _run(without_rls.target(), tmp_path)
    checks = {c.check.name: (c.passed, c.observed) for c in outcome.checks}
    assert checks["no_foreign_row_served"][0] is False
    assert checks["no_foreign_row_served"][1] > 0
    assert checks["foreign_access_denied_403"][0] is False  # not one 403
    assert outcome.blocking_failed and outcome.record.status == "failed"


def test_an_api_that_ignores_if_match_fails_the_blocking_409_check(
    without_locking, tmp_path
) -> None:
    """Fault: the testbed's ``optimistic_locking`` off. Two devices saving the same
    version both win (last write wins), so no 409 is ever answered or counted and the
    blocking ``stale_versions_get_409`` check fails with a count of 0, read from a
    reachable /metrics (not NaN); the security checks still pass."""
    outcome = _run(without_locking.target(), tmp_path)
    checks = {c.check.name: c for c in outcome.checks}
    stale = checks["stale_versions_get_409"]
    assert not stale.passed and stale.observed == 0, outcome.record.detail
    assert metric(outcome, "version_conflicts_seen.count") == 0
    assert not outcome.unreadable
    for truthful in ("no_foreign_row_served", "foreign_access_denied_403"):
        assert checks[truthful].passed, (truthful, outcome.record.detail)
    assert outcome.blocking_failed and outcome.record.status == "failed"


def _scrape(at: float, hits: float, misses: float) -> Scrape:
    values = {("messaging_participant_cache_hits_total", ()): hits}
    values[("messaging_participant_cache_misses_total", ())] = misses
    return Scrape(at, {"api": values}, {})


@pytest.mark.parametrize(
    ("scrapes", "setup", "expected"),
    [
        ([(0, 10, 5), (1, 100, 15)], (0, 0), 0.9),
        ([(0, 0, 0), (1, 90, 20)], (0, 10), 0.9),  # the set-up's 10 misses are not the load's
        ([(0, 0, 0), (1, 0, 0)], (0, 0), None),  # no look-up at all: no ratio
        ([], (0, 0), None),  # never read
    ],
)
def test_cache_hit_ratio_from_counter_deltas(scrapes, setup, expected) -> None:
    samples = Samples(scrapes=[_scrape(*s) for s in scrapes])
    ratio = cache_hit_ratio(samples, *setup)
    assert ratio == (pytest.approx(expected) if expected is not None else None)
