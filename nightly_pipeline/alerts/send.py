"""``send_alerts``: alerts → one message per night → every configured channel."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

import httpx

from nightly_pipeline.alerts.channel import Channel, DryRunChannel, RefusedChannel
from nightly_pipeline.alerts.config import check_destination, redact
from nightly_pipeline.alerts.discord import DiscordChannel, discord_payload
from nightly_pipeline.alerts.formatting import Message, build_messages
from nightly_pipeline.alerts.model import Alert, AlertSettings, Delivery
from nightly_pipeline.alerts.slack import SlackChannel, slack_payload
from nightly_pipeline.alerts.webhook import RetryPolicy, WebhookPoster

log = logging.getLogger("nightly_pipeline.alerts")

CHANNELS = {
    "slack": (SlackChannel, slack_payload),
    "discord": (DiscordChannel, discord_payload),
}
"""Registry: channel name → (webhook channel class, payload renderer)."""


def _urls(settings: AlertSettings) -> dict[str, str | None]:
    return {"slack": settings.slack_webhook_url, "discord": settings.discord_webhook_url}


def configured_channels(settings: AlertSettings) -> tuple[str, ...]:
    """The channels with a webhook URL: those an alert is owed to."""
    return tuple(name for name, url in _urls(settings).items() if url)


def only_channels(settings: AlertSettings, names: Sequence[str]) -> AlertSettings:
    """``settings`` sending to ``names`` only: a retry goes to the channels that failed."""
    return replace(
        settings,
        slack_webhook_url=settings.slack_webhook_url if "slack" in names else None,
        discord_webhook_url=settings.discord_webhook_url if "discord" in names else None,
    )


def send_alerts(
    alerts: Sequence[Alert],
    settings: AlertSettings,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
) -> list[Delivery]:
    """Send ``alerts`` to every configured channel; one Delivery per (message, channel).

    Alerts of one night go out as one message per channel. Never raises: a failed,
    refused or crashed delivery is logged and returned as ``Delivery(ok=False)``.
    In dry run the messages are built and logged, nothing is sent, and the Deliveries
    are marked ``dry_run``. ``sleep``, ``clock`` and ``rng`` are for tests.
    """
    if not alerts:
        return []
    try:
        messages = build_messages(alerts)
    except Exception as exc:
        log.exception("alerts not sent: could not build the messages")
        return [Delivery("all", ok=False, attempts=0, error=f"formatting failed: {exc!r}")]
    with httpx.Client(follow_redirects=False, trust_env=False) as client:
        poster = WebhookPoster(
            client, RetryPolicy.from_settings(settings), sleep=sleep, clock=clock, rng=rng
        )
        channels = list(_channels(settings, poster))
        if not channels:
            log.warning("%d alert(s) not sent: no alert channel configured", len(alerts))
            return []
        deliveries = []
        for message in messages:
            for channel in channels:
                deliveries.append(_post(channel, message))
    return deliveries


def _channels(settings: AlertSettings, poster: WebhookPoster) -> Iterator[Channel]:
    urls = _urls(settings)
    problems = settings.validate()
    for name, (webhook_class, render) in CHANNELS.items():
        url = urls[name]
        if not url:
            continue
        refused = check_destination(url, settings.allow_hosts)
        if problems:
            yield RefusedChannel(name, "invalid alert settings: " + "; ".join(problems))
        elif settings.dry_run:
            yield DryRunChannel(name, render, redact(url) + (f" ({refused})" if refused else ""))
        elif refused:
            yield RefusedChannel(name, refused)
        else:
            yield webhook_class(url, poster)


def _post(channel: Channel, message: Message) -> Delivery:
    try:
        return channel.post(message)
    except Exception as exc:  # a bug must not fail the run that alerts
        log.exception("%s alert failed unexpectedly", channel.name)
        return Delivery(
            channel.name, ok=False, attempts=0, error=f"unexpected error: {exc!r}",
            night=message.night, alerts=message.total,
        )  # fmt: skip
