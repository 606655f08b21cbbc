"""The alert data: what is reported (``Alert``), how (``AlertSettings``) and what happened
to each message (``Delivery``). Frozen, typed, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

AlertKind = Literal["regression", "check_failed", "run_failed"]
KINDS: tuple[AlertKind, ...] = ("run_failed", "check_failed", "regression")
"""Every kind, most severe first (the order alerts are listed in a message)."""


@dataclass(frozen=True)
class Alert:
    """One thing worth telling the team about one night.

    ``magnitude`` is the signed relative change of a regression (+0.123 = 12.3 % worse,
    whatever the metric's direction); ``night`` is the night the alert is about and
    ``first_bad_night`` the first night of a regression (None for other kinds).
    ``profile`` is the profile whose run it is about (a test runs at several profiles on
    one night; None when the alert is not about one profile's run, e.g. a failed run).
    """

    kind: AlertKind
    night: date
    test: str
    metric: str | None
    magnitude: float | None
    first_bad_night: date | None
    detail: str
    report_url: str | None
    profile: str | None = None


@dataclass(frozen=True)
class AlertSettings:
    """Where and how alerts are sent. Built by an entry point (see ``settings_from_env``).

    A configured webhook URL is an explicitly allowed external destination: alerts go
    to loopback, to Slack's and Discord's own webhook hosts (HTTPS only), and to any
    host named in ``allow_hosts`` — nowhere else.
    """

    slack_webhook_url: str | None
    discord_webhook_url: str | None
    dry_run: bool = False
    timeout_s: float = 10
    """Per-request timeout (connect, read, write, pool)."""
    max_attempts: int = 4
    """Attempts per message, first one included."""
    allow_hosts: tuple[str, ...] = ()
    """Extra webhook hosts allowed besides loopback and Slack's/Discord's own."""
    backoff_base_s: float = 0.5
    """First retry waits about this long; doubles each attempt, with jitter."""
    backoff_max_s: float = 8.0
    """Cap of one exponential-backoff wait."""
    retry_after_max_s: float = 30.0
    """Cap of a server-requested wait (HTTP 429/503 ``Retry-After``)."""
    max_total_s: float = 60.0
    """Bound of the whole delivery of one message: requests and waits together."""

    def validate(self) -> list[str]:
        """Every problem with these settings (empty when valid)."""
        errors: list[str] = []
        if self.max_attempts < 1:
            errors.append(f"max_attempts must be >= 1, got {self.max_attempts}")
        for name in ("timeout_s", "max_total_s"):
            if not getattr(self, name) > 0:
                errors.append(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("backoff_base_s", "backoff_max_s", "retry_after_max_s"):
            if not getattr(self, name) >= 0:
                errors.append(f"{name} must be >= 0, got {getattr(self, name)}")
        return errors


@dataclass(frozen=True)
class Delivery:
    """The outcome of one message on one channel. Failures are reported here, not raised."""

    channel: str
    ok: bool
    attempts: int
    error: str | None = None
    dry_run: bool = False
    status_code: int | None = None
    """HTTP status of the last response, None when none came."""
    night: date | None = None
    """The night the message was about."""
    alerts: int = 0
    """How many alerts the message carried (listed or counted as omitted)."""
