"""Test 11 against the embedded platform (ci profile): PostgreSQL killed, then Redis,
both started again: only 503s meanwhile, /readyz naming what is down, no process of the
platform crashing, recovery, every acknowledged message delivered; against an API that
exits when PostgreSQL goes away, the crash check fails."""

from __future__ import annotations

import pytest

from nightly_pipeline.suite.catalog import select_tests
from tests.suite.chaos_checks import checks, failed, journal, no_fault_left
from tests.suite.platforms import ci_platform, run_ci

CASCADE = select_tests("11")[0]


@pytest.fixture(scope="module")
def platform(tmp_path_factory, system_dir):
    with ci_platform(tmp_path_factory, system_dir, "cascade") as up:
        yield up


def test_datastores_going_away_degrade_the_platform_and_it_recovers(platform, tmp_path):
    own = {n: platform.pids()[n] for n in ("api", "dispatcher", "consumer")}
    outcome = run_ci(CASCADE, platform.target(), tmp_path)
    assert outcome.record.status == "passed", outcome.record.detail
    assert checks(outcome)["only_503_while_down"] == (True, 0)
    assert checks(outcome)["readyz_names_the_dependency"] == (True, 0)
    assert {n: platform.pids()[n] for n in own} == own
    assert platform.is_running("postgres") and platform.is_running("redis")
    outputs = {r["activity"]["name"]: r["output"] for r in journal(tmp_path)["run"]}
    assert outputs["readyz-names-postgres"] is True and outputs["readyz-names-redis"] is True
    no_fault_left(tmp_path)


def test_an_api_that_exits_without_postgres_fails_the_crash_check(
    tmp_path_factory, system_dir, tmp_path
) -> None:
    overrides = {"exit_on_db_loss": True}
    with ci_platform(tmp_path_factory, system_dir, "exiting", overrides=overrides) as up:
        outcome = run_ci(CASCADE, up.target(), tmp_path)
    assert "platform_never_crashes" in failed(outcome), outcome.record.detail
    assert outcome.blocking_failed
    no_fault_left(tmp_path)
