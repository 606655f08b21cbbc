"""The pending inbox: a run-failure alert a channel did not take is kept in a file of the
home, adopted by the periodic sensor's outbox and delivered exactly once after the
webhook recovers, to that channel only, within the outbox's bound. Real ``send_alerts``
to real receivers on loopback, real files; only each tick's time is given."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from nightly_pipeline.alerts import (
    Alert,
    Outbox,
    PendingInbox,
    RetryBound,
    adopt,
    deliver,
    send_or_keep,
)
from tests.alerts.receiver import Receiver, Reply, one_attempt_sender

NIGHT = date(2026, 11, 22)
T0 = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
TICK = timedelta(minutes=5)
DOWN = Reply(500, body=b"outage")
KEY = "run_failed:run-1"


def _alert() -> Alert:
    return Alert(
        kind="run_failed", night=NIGHT, test="nightly_suite", metric=None, magnitude=None,
        first_bad_night=None, detail="run run-1: Steps failed", report_url=None, profile="ci",
    )  # fmt: skip


def _tick(cursor: str | None, inbox: PendingInbox, send, channels, now, bound=None):
    """One periodic-sensor tick: adopt from the committed cursor, deliver, new cursor."""
    adopted = adopt(Outbox.from_json(cursor), inbox)
    kwargs = {"bound": bound} if bound else {}
    outcome = deliver(adopted.outbox, [], send, channels=channels, now=now, **kwargs)
    return adopted, outcome, outcome.outbox.to_json()


def test_a_delivered_run_failure_alert_leaves_nothing_pending(
    tmp_path: Path, slack: Receiver
) -> None:
    inbox = PendingInbox(tmp_path / "pending")
    outcome = send_or_keep(
        KEY, _alert(), one_attempt_sender(slack), inbox, channels=("slack",), now=T0
    )
    assert [a.test for a in outcome.delivered] == ["nightly_suite"]
    assert inbox.files() == []
    assert slack.answered == [200]


def test_an_undelivered_run_failure_alert_is_sent_once_after_recovery_to_that_channel_only(
    tmp_path: Path, slack: Receiver, discord: Receiver
) -> None:
    inbox, send, both = (
        PendingInbox(tmp_path / "pending"),
        one_attempt_sender(slack, discord),
        ("slack", "discord"),
    )
    slack.default = DOWN
    first = send_or_keep(KEY, _alert(), send, inbox, channels=both, now=T0)
    assert first.delivered == [] and len(inbox.files()) == 1
    assert discord.answered == [204] and slack.answered == [500]

    adopted, outcome, cursor = _tick(None, inbox, send, both, T0 + TICK)  # still down
    ((pending,),) = [adopted.adopted]
    assert (pending.key, pending.channels, pending.attempts) == (KEY, ("slack",), 1)
    assert outcome.delivered == [] and [p.attempts for p in outcome.retrying] == [2]

    slack.default = Reply()  # the webhook is back
    adopted, outcome, cursor = _tick(cursor, inbox, send, both, T0 + 2 * TICK)
    assert adopted.adopted == [] and adopted.removed == 1  # the cursor holds it now
    assert [a.profile for a in outcome.delivered] == ["ci"]
    assert inbox.files() == []
    _, outcome, _ = _tick(cursor, inbox, send, both, T0 + 3 * TICK)
    assert outcome.deliveries == []
    assert slack.answered == [500, 500, 200]
    assert "Run failed: nightly_suite (ci)" in slack.requests[-1].body.decode()
    assert discord.answered == [204]  # took it the first time, never sent again


def test_a_tick_that_did_not_commit_adopts_the_file_again_and_sends_once(
    tmp_path: Path, slack: Receiver
) -> None:
    inbox, send = PendingInbox(tmp_path / "pending"), one_attempt_sender(slack)
    slack.default = DOWN
    send_or_keep(KEY, _alert(), send, inbox, channels=("slack",), now=T0)
    slack.default = Reply()
    _tick(None, inbox, send, ("slack",), T0 + TICK)  # delivered, but its cursor is lost
    assert len(inbox.files()) == 1  # not removed by the tick that adopted it
    adopted, _, cursor = _tick(None, inbox, send, ("slack",), T0 + 2 * TICK)
    assert [p.key for p in adopted.adopted] == [KEY]  # adopted again from the file
    assert Outbox.from_json(cursor) == Outbox(done=(KEY,))
    adopted, _, _ = _tick(cursor, inbox, send, ("slack",), T0 + 3 * TICK)
    assert adopted.removed == 1 and inbox.files() == []
    assert slack.answered == [500, 200, 200]  # the lost tick's delivery, then this one


def test_an_alert_written_twice_is_one_file_and_adopted_once(
    tmp_path: Path, slack: Receiver
) -> None:
    inbox, send = PendingInbox(tmp_path / "pending"), one_attempt_sender(slack)
    slack.default = DOWN
    for _ in range(2):
        send_or_keep(KEY, _alert(), send, inbox, channels=("slack",), now=T0)
    assert len(inbox.files()) == 1
    adopted = adopt(Outbox(), inbox)
    assert [p.key for p in adopted.outbox.pending] == [KEY]


def test_a_run_failure_alert_is_given_up_past_the_bound_with_the_reason(
    tmp_path: Path, slack: Receiver
) -> None:
    inbox, send, bound = (
        PendingInbox(tmp_path / "pending"),
        one_attempt_sender(slack),
        RetryBound(3),
    )
    slack.default = DOWN
    send_or_keep(KEY, _alert(), send, inbox, channels=("slack",), now=T0, bound=bound)
    cursor = None
    for tick in (1, 2):
        _, outcome, cursor = _tick(cursor, inbox, send, ("slack",), T0 + tick * TICK, bound)
    ((given_up, reason),) = outcome.given_up
    assert given_up.attempts == 3  # the run-failure sensor's attempt counts
    assert "run_failed alert nightly_suite (ci) of 2026-11-22 given up after 3" in reason
    assert "slack:" in reason and "500" in reason
    assert Outbox.from_json(cursor) == Outbox(done=(KEY,)) and inbox.files() == []
    _, outcome, _ = _tick(cursor, inbox, send, ("slack",), T0 + 3 * TICK, bound)
    assert outcome.deliveries == []  # not sent again
    assert slack.answered == [500, 500, 500]


def test_an_unreadable_file_is_set_aside_and_reported(tmp_path: Path) -> None:
    inbox = PendingInbox(tmp_path / "pending")
    inbox.directory.mkdir()
    (inbox.directory / "broken.json").write_text("{not json")
    adopted = adopt(Outbox(), inbox)
    assert adopted.outbox == Outbox() and len(adopted.unreadable) == 1
    assert "broken.json" in adopted.unreadable[0]
    assert inbox.files() == [] and (inbox.directory / "broken.json.unreadable").exists()
    assert adopt(Outbox(), PendingInbox(tmp_path / "none")).outbox == Outbox()
