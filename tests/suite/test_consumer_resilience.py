"""Test 08 against the embedded platform (ci profile): the consumer killed mid-stream
and restarted, every message still delivered once with the dead consumer's pending
entries reclaimed; against a consumer that never reclaims them, the reclaim check fails
(its gateway sending some frames twice: the duplicate check too); against one that
acknowledges on read, the pending-at-the-kill check (its gateway corrupting frames: the
corruption check too).

(The loss check of a kill without reclaim is not asserted there: with the consumer's
replies slowed, the entries pending at the kill are often already published, only their
XACK cut off, so whether any is lost depends on where the kill lands. Loss and recovery
fail against a dispatcher whose every write Redis refuses: nothing is ever delivered.)"""

from __future__ import annotations

import pytest

from nightly_pipeline.suite.catalog import select_tests
from tests.suite.chaos_checks import checks, failed, journal, never_recovered, no_fault_left
from tests.suite.platforms import ci_platform, metric, run_ci

RESILIENCE = select_tests("08")[0]


@pytest.fixture(scope="module")
def platform(tmp_path_factory, system_dir):
    with ci_platform(tmp_path_factory, system_dir, "resilience") as up:
        yield up


def test_a_killed_consumer_loses_nothing_and_reclaims_its_pending_list(platform, tmp_path):
    consumer = platform.pids()["consumer"]
    outcome = run_ci(RESILIENCE, platform.target(), tmp_path)
    assert outcome.record.status == "passed", outcome.record.detail
    assert metric(outcome, "pel_at_kill.value") > 0  # the kill left entries pending
    assert checks(outcome)["pel_reclaimed_equals_pel"] == (True, 0)
    assert checks(outcome)["zero_message_loss"] == (True, 0)
    assert platform.pids()["consumer"] != consumer and platform.is_running("consumer")
    names = [r["activity"]["name"] for r in journal(tmp_path)["run"]]
    assert names[:4] == [
        "inject-slow-reads",
        "pending-before-kill",
        "inject-consumer-kill",
        "pel-at-kill",
    ]
    no_fault_left(tmp_path)


@pytest.fixture(scope="module")
def never_reclaiming(tmp_path_factory, system_dir):
    overrides = {"reclaim_pending": False, "ws_duplicate_every": 5}
    with ci_platform(tmp_path_factory, system_dir, "no-reclaim", overrides=overrides) as up:
        yield up


def test_a_consumer_that_never_reclaims_fails_the_reclaim_check(never_reclaiming, tmp_path):
    """``reclaim_pending: false``: the restarted consumer takes over none of the PEL
    left at the kill, so ``pel_reclaimed_equals_pel`` fails by all of it.
    ``ws_duplicate_every: 5`` on the same gateway (every 5th message it delivers goes
    twice to each socket): ``each_message_delivered_once`` fails."""
    outcome = run_ci(RESILIENCE, never_reclaiming.target(), tmp_path)
    assert "pel_reclaimed_equals_pel" in failed(outcome)
    assert checks(outcome)["pel_reclaimed_equals_pel"][1] == metric(outcome, "pel_at_kill.value")
    passed, duplicated = checks(outcome)["each_message_delivered_once"]
    delivered = metric(outcome, "e2e_delivery_ms.count")  # (message, socket) pairs
    assert not passed and duplicated > 0 and abs(duplicated - delivered / 5) < 3
    assert outcome.blocking_failed and outcome.record.status == "failed"
    no_fault_left(tmp_path)


@pytest.fixture(scope="module")
def acking_on_read(tmp_path_factory, system_dir):
    overrides = {"ack_on_read": True, "ws_corrupt_every": 7}
    with ci_platform(tmp_path_factory, system_dir, "ack-on-read", overrides=overrides) as up:
        yield up


def test_an_at_most_once_consumer_fails_the_pending_at_the_kill_check(
    acking_on_read, tmp_path
) -> None:
    """A consumer that acknowledges what it reads before delivering it has no pending
    list for the kill to leave (the kill waits for one, in vain): the reclaim check would
    prove nothing, and the check that the kill left entries pending fails.
    ``ws_corrupt_every: 7`` on the same gateway (every 7th message it delivers has a
    byte of its ciphertext flipped): ``zero_corrupted_messages`` fails."""
    outcome = run_ci(RESILIENCE, acking_on_read.target(), tmp_path)
    assert checks(outcome)["kill_left_pending_entries"] == (False, 0)
    passed, corrupted = checks(outcome)["zero_corrupted_messages"]
    delivered = metric(outcome, "e2e_delivery_ms.count")  # (message, socket) pairs
    assert not passed and corrupted > 0 and abs(corrupted - delivered / 7) < 3
    assert outcome.blocking_failed and outcome.record.status == "failed"
    pending = [
        r for r in journal(tmp_path)["run"] if r["activity"]["name"] == "pending-before-kill"
    ]
    assert pending[0]["output"] == -1  # no entry was ever seen pending
    no_fault_left(tmp_path)


def test_a_dispatcher_whose_writes_are_all_refused_fails_the_loss_and_recovery_checks(
    tmp_path_factory, system_dir, tmp_path
) -> None:
    """``stream_writable: false``: Redis refuses every XADD of the dispatcher
    (WRONGTYPE), so no acknowledged message reaches a socket, before the kill or after
    the restart: ``zero_message_loss`` fails with every one of them lost, and the
    pipeline is never steady again (``recovers_within_30s``: no recovery recorded)."""
    overrides = {"stream_writable": False}
    with ci_platform(tmp_path_factory, system_dir, "unwritable", overrides=overrides) as up:
        outcome = run_ci(RESILIENCE, up.target(), tmp_path)
    expected = metric(outcome, "delivery_expected.count")
    assert checks(outcome)["zero_message_loss"] == (False, expected) and expected > 0
    never_recovered(outcome, "recovers_within_30s")
    assert outcome.blocking_failed and outcome.record.status == "failed"
    no_fault_left(tmp_path)
