"""Test 11 against the embedded platform (ci profile): PostgreSQL killed, then Redis,
both started again: only 503s meanwhile, /readyz naming what is down, no process of the
platform crashing, recovery, every acknowledged message delivered; against an API that
exits when PostgreSQL goes away (its gateway corrupting frames), the crash, 503-only,
/readyz, recovery and corruption checks fail; against a dispatcher whose every write
Redis refuses, the loss check fails."""

from __future__ import annotations

import pytest

from nightly_pipeline.suite.catalog import select_tests
from tests.suite.chaos_checks import (
    checks,
    failed,
    journal,
    never_recovered,
    no_fault_left,
)
from tests.suite.platforms import ci_platform, metric, run_ci

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
    """``exit_on_db_loss: true``: the API exits at PostgreSQL's kill, so
    ``platform_never_crashes`` fails; the requests it was answering are cut off (no
    answer, not a 503: ``only_503_while_down``), no ``/readyz`` answers the probes after
    either kill (``readyz_names_the_dependency``: both unnamed), and it never comes back
    (``recovers_within_60s``: no recovery recorded). ``ws_corrupt_every: 5`` on the same
    gateway (what it delivered before it died): ``zero_corrupted_messages`` fails."""
    overrides = {"exit_on_db_loss": True, "ws_corrupt_every": 5}
    with ci_platform(tmp_path_factory, system_dir, "exiting", overrides=overrides) as up:
        outcome = run_ci(CASCADE, up.target(), tmp_path)
    assert "platform_never_crashes" in failed(outcome), outcome.record.detail
    cut_off = [
        m.value
        for m in outcome.record.metrics
        if m.metric == "fault_errors.count" and (m.tags or {}).get("status") == "0"
    ]
    assert sum(cut_off) > 0  # requests left without an answer (status 0), not 503s
    assert checks(outcome)["only_503_while_down"] == (False, sum(cut_off))
    assert checks(outcome)["readyz_names_the_dependency"] == (False, 2)
    never_recovered(outcome, "recovers_within_60s")
    passed, corrupted = checks(outcome)["zero_corrupted_messages"]
    assert not passed and corrupted > 0
    assert outcome.blocking_failed
    no_fault_left(tmp_path)


def test_a_dispatcher_whose_writes_are_all_refused_fails_the_loss_check(
    tmp_path_factory, system_dir, tmp_path
) -> None:
    """``stream_writable: false``: Redis refuses every XADD of the dispatcher
    (WRONGTYPE), so no acknowledged message reaches a socket, before the kills or after
    the restore: ``zero_message_loss`` fails with every one of them lost."""
    overrides = {"stream_writable": False}
    with ci_platform(tmp_path_factory, system_dir, "unwritable", overrides=overrides) as up:
        outcome = run_ci(CASCADE, up.target(), tmp_path)
    assert checks(outcome)["zero_message_loss"] == (
        False,
        metric(outcome, "delivery_expected.count"),
    )
    assert checks(outcome)["zero_message_loss"][1] > 0
    assert outcome.blocking_failed
    no_fault_left(tmp_path)
