"""Alerts owed to channels, kept from one sensor tick to the next until delivered.

A webhook outage must not lose an alert: an alert whose delivery failed on a channel
stays pending for that channel (only that one: a channel that took it is not sent it
again) and is sent again at the next tick. It is given up, with the reason returned for
the log, after ``RetryBound.max_ticks`` ticks or ``RetryBound.max_age`` after its first
attempt, whichever comes first. An ``Outbox`` is plain data that round-trips through
JSON, so a sensor keeps it in its cursor. No I/O here: ``deliver`` calls ``send``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

from nightly_pipeline.alerts.model import Alert, Delivery

Send = Callable[[Sequence[Alert], Sequence[str]], list[Delivery]]
"""``send(alerts, channels)``: post ``alerts`` to those channels only, one Delivery each
(message, channel); never raises for a delivery failure (``send_alerts``)."""

DONE_KEPT = 1000
"""Keys of delivered (or given-up) alerts remembered, oldest dropped first."""


@dataclass(frozen=True)
class RetryBound:
    """How long a failed alert is retried: at most ``max_ticks`` attempts (ticks, each
    with the channel's own retries inside) and ``max_age`` after the first."""

    max_ticks: int = 48
    max_age: timedelta = timedelta(hours=12)


RETRY_BOUND = RetryBound()
"""The default: 48 ticks (4 hours at the sensor's 5-minute interval) or 12 hours."""


@dataclass(frozen=True)
class Pending:
    """An alert some channels have not taken yet."""

    key: str
    alert: Alert
    channels: tuple[str, ...]
    """Channels still owed the alert."""
    attempts: int
    first_tried: datetime
    last_error: str = ""


@dataclass(frozen=True)
class Outbox:
    """What a sensor remembers: alerts done with (by key) and alerts still owed."""

    done: tuple[str, ...] = ()
    pending: tuple[Pending, ...] = ()

    def known(self) -> set[str]:
        """Keys not to derive again: done with, or pending (retried from here)."""
        return set(self.done) | {p.key for p in self.pending}

    def to_json(self) -> str:
        return json.dumps(
            {"done": list(self.done), "pending": [_pending_json(p) for p in self.pending]}
        )

    @classmethod
    def from_json(cls, text: str | None) -> Outbox:
        """The outbox a cursor holds; the older cursor (a list of sent keys) is read too."""
        if not text:
            return cls()
        data = json.loads(text)
        if isinstance(data, list):
            return cls(done=tuple(data))
        return cls(tuple(data["done"]), tuple(_pending_of(p) for p in data["pending"]))


@dataclass(frozen=True)
class TickOutcome:
    outbox: Outbox
    delivered: list[Alert] = field(default_factory=list)
    retrying: list[Pending] = field(default_factory=list)
    given_up: list[tuple[Pending, str]] = field(default_factory=list)
    """Each abandoned alert with the reason, for the log."""
    deliveries: list[Delivery] = field(default_factory=list)


def deliver(
    outbox: Outbox,
    new: Sequence[tuple[str, Alert]],
    send: Send,
    *,
    channels: Sequence[str],
    now: datetime,
    bound: RetryBound = RETRY_BOUND,
) -> TickOutcome:
    """Send the pending alerts and the ``new`` (key, alert) ones to the channels that owe
    them; return the outbox to keep. ``channels`` are those configured now: a channel no
    longer configured is owed nothing."""
    known = outbox.known()
    entries = [replace(p, channels=_still(p.channels, channels)) for p in outbox.pending]
    entries += [Pending(k, a, tuple(channels), 0, now) for k, a in new if k not in known]
    deliveries, failed = _send_per_channel(entries, send)
    done, outcome = list(outbox.done), TickOutcome(outbox, deliveries=deliveries)
    pending: list[Pending] = []
    for entry in entries:
        owed = tuple(c for c in entry.channels if (c, entry.alert.night) in failed)
        errors = "; ".join(failed[(c, entry.alert.night)] for c in owed)
        tried = replace(entry, channels=owed, attempts=entry.attempts + 1, last_error=errors)
        if not owed:
            done.append(entry.key)
            outcome.delivered.append(entry.alert)
        elif reason := _exhausted(tried, now, bound):
            done.append(entry.key)
            outcome.given_up.append((tried, reason))
        else:
            pending.append(tried)
            outcome.retrying.append(tried)
    return replace(outcome, outbox=Outbox(tuple(done[-DONE_KEPT:]), tuple(pending)))


def _still(owed: Sequence[str], configured: Sequence[str]) -> tuple[str, ...]:
    return tuple(c for c in owed if c in configured)


def _send_per_channel(
    entries: Sequence[Pending], send: Send
) -> tuple[list[Delivery], dict[tuple[str, date], str]]:
    """Each channel is sent only the alerts it owes. Returns every Delivery and the
    (channel, night) pairs not delivered, with the error."""
    deliveries: list[Delivery] = []
    failed: dict[tuple[str, date], str] = {}
    for channel in sorted({c for e in entries for c in e.channels}):
        alerts = [e.alert for e in entries if channel in e.channels]
        got = send(alerts, (channel,))
        deliveries += got
        ok = {d.night for d in got if d.ok and d.channel == channel}
        for night in {a.night for a in alerts} - ok:
            why = [d.error or "" for d in got if d.night in (night, None) and not d.ok]
            failed[(channel, night)] = f"{channel}: {'; '.join(why) or 'no delivery made'}"
    return deliveries, failed


def _exhausted(entry: Pending, now: datetime, bound: RetryBound) -> str | None:
    """Why ``entry`` is given up after this attempt, or None to retry it."""
    age = now - entry.first_tried
    if entry.attempts < bound.max_ticks and age < bound.max_age:
        return None
    alert = entry.alert
    return (
        f"{alert.kind} alert {alert.test} ({alert.profile or '-'}) of {alert.night} given up "
        f"after {entry.attempts} attempt(s) over {age}: {entry.last_error}"
    )


def _pending_json(p: Pending) -> dict[str, Any]:
    a = p.alert
    alert = {
        **a.__dict__,
        "night": a.night.isoformat(),
        "first_bad_night": a.first_bad_night.isoformat() if a.first_bad_night else None,
    }
    return {
        "key": p.key,
        "alert": alert,
        "channels": list(p.channels),
        "attempts": p.attempts,
        "first_tried": p.first_tried.isoformat(),
        "last_error": p.last_error,
    }


def _pending_of(data: dict[str, Any]) -> Pending:
    raw = data["alert"]
    bad = raw["first_bad_night"]
    alert = Alert(
        **{
            **raw,
            "night": date.fromisoformat(raw["night"]),
            "first_bad_night": date.fromisoformat(bad) if bad else None,
        }
    )
    return Pending(
        data["key"],
        alert,
        tuple(data["channels"]),
        int(data["attempts"]),
        datetime.fromisoformat(data["first_tried"]),
        data.get("last_error", ""),
    )
