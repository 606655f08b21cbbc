"""The outbox: an alert a channel did not take stays pending for that channel, is sent
again at the next tick and given up only past its bound. Real ``send_alerts`` to real
receivers on loopback; only the tick's time is given (no clock is read)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from nightly_pipeline.alerts import (
    Alert,
    Outbox,
    RetryBound,
    deliver,
)
from tests.alerts.receiver import Receiver, Reply, one_attempt_sender

NIGHT = date(2026, 11, 22)
T0 = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
TICK = timedelta(minutes=5)
DOWN = Reply(500, body=b"outage")


def _alert(test: str = "01_message_soak", profile: str = "ci") -> Alert:
    return Alert(
        kind="check_failed", night=NIGHT, test=test, metric=None, magnitude=None,
        first_bad_night=None, detail="failed: p(95)<100", report_url=None, profile=profile,
    )  # fmt: skip


def test_a_delivered_alert_is_done_and_not_sent_again(slack: Receiver) -> None:
    send = one_attempt_sender(slack)
    first = deliver(Outbox(), [("k", _alert())], send, channels=("slack",), now=T0)
    assert [a.test for a in first.delivered] == ["01_message_soak"]
    assert first.outbox == Outbox(done=("k",))
    again = deliver(first.outbox, [("k", _alert())], send, channels=("slack",), now=T0 + TICK)
    assert again.delivered == [] and again.deliveries == []
    assert slack.answered == [200]


def test_a_failed_alert_is_retried_and_delivered_once_after_recovery(slack: Receiver) -> None:
    send, outbox = one_attempt_sender(slack), Outbox()
    slack.default = DOWN
    for tick in range(2):
        outcome = deliver(
            outbox, [("k", _alert())], send, channels=("slack",), now=T0 + tick * TICK
        )
        outbox = Outbox.from_json(outcome.outbox.to_json())  # through the cursor
        assert outcome.delivered == [] and outcome.given_up == []
        (pending,) = outbox.pending
        assert (pending.key, pending.channels, pending.attempts) == ("k", ("slack",), tick + 1)
        assert "500" in pending.last_error
    slack.default = Reply()  # the webhook is back
    outcome = deliver(outbox, [], send, channels=("slack",), now=T0 + 2 * TICK)
    assert [a.profile for a in outcome.delivered] == ["ci"]
    assert outcome.outbox == Outbox(done=("k",))
    deliver(outcome.outbox, [("k", _alert())], send, channels=("slack",), now=T0 + 3 * TICK)
    assert slack.answered == [500, 500, 200]
    assert "01_message_soak (ci)" in slack.requests[-1].body.decode()


def test_only_the_channel_that_failed_is_sent_the_alert_again(
    slack: Receiver, discord: Receiver
) -> None:
    send = one_attempt_sender(slack, discord)
    slack.default = DOWN
    both = ("slack", "discord")
    first = deliver(Outbox(), [("k", _alert())], send, channels=both, now=T0)
    assert [p.channels for p in first.outbox.pending] == [("slack",)]
    slack.default = Reply()
    second = deliver(first.outbox, [], send, channels=both, now=T0 + TICK)
    assert second.outbox == Outbox(done=("k",))
    assert slack.answered == [500, 200]
    assert discord.answered == [204]  # taken the first time, never sent again


@pytest.mark.parametrize(
    ("bound", "ticks", "why"),
    [
        (RetryBound(max_ticks=3, max_age=timedelta(days=1)), 3, "after 3 attempt(s)"),
        (RetryBound(max_ticks=100, max_age=timedelta(minutes=12)), 4, "over 0:15:00"),
    ],
    ids=["max_ticks", "max_age"],
)
def test_an_alert_is_given_up_past_its_bound_with_the_reason(
    slack: Receiver, bound: RetryBound, ticks: int, why: str
) -> None:
    send, outbox = one_attempt_sender(slack), Outbox()
    slack.default = DOWN
    for tick in range(ticks):
        assert outbox.pending or tick == 0
        outcome = deliver(
            outbox, [("k", _alert())], send, channels=("slack",), now=T0 + tick * TICK,
            bound=bound,
        )  # fmt: skip
        outbox = outcome.outbox
    ((given_up, reason),) = outcome.given_up
    assert given_up.attempts == ticks
    assert why in reason and "check_failed alert 01_message_soak (ci)" in reason
    assert "slack:" in reason and "500" in reason
    assert outbox == Outbox(done=("k",))  # not derived and sent again
    assert slack.answered == [500] * ticks


def test_a_channel_no_longer_configured_is_owed_nothing(slack: Receiver) -> None:
    slack.default = DOWN
    first = deliver(
        Outbox(), [("k", _alert())], one_attempt_sender(slack), channels=("slack",), now=T0
    )
    assert first.outbox.pending
    second = deliver(first.outbox, [], one_attempt_sender(), channels=(), now=T0 + TICK)
    assert second.outbox == Outbox(done=("k",)) and second.deliveries == []


def test_the_older_cursor_a_list_of_sent_keys_is_read() -> None:
    assert Outbox.from_json('["a", "b"]') == Outbox(done=("a", "b"))
    assert Outbox.from_json(None) == Outbox()
