"""Slack and Discord alerts for failed tests, failed runs and regressions. No Dagster.

    send_alerts(alerts, settings) -> list[Delivery]     never raises for delivery failures
    deliver(outbox, new, send, ...) -> TickOutcome      a failed alert stays pending, retried
    send_or_keep(key, alert, send, inbox, ...)          a run-status sensor's alert: what
                                                        failed is left in a PendingInbox
    adopt(outbox, inbox) -> Adopted                     ... for the periodic sensor's outbox
    settings_from_env(os.environ) -> AlertSettings      at entry points only

Environment (read only by ``settings_from_env``):

    NIGHTLY_SLACK_WEBHOOK_URL    Slack incoming-webhook URL (unset/empty: no Slack)
    NIGHTLY_DISCORD_WEBHOOK_URL  Discord webhook URL (unset/empty: no Discord)
    NIGHTLY_ALERTS_DRY_RUN       1/true/yes/on: build and log messages, send nothing

Safety (DESIGN.md §8): a webhook URL is a configured, explicitly allowed external
destination — the one place this project sends data off the machine on purpose. Only
loopback, Slack's and Discord's webhook hosts (HTTPS) and hosts listed in
``AlertSettings.allow_hosts`` are accepted; redirects are not followed; proxies from the
environment are not used; URLs are never logged (they carry a secret). The project's
tests send only to loopback receivers.

Modules: ``model`` (Alert, AlertSettings, Delivery), ``config`` (environment, destination
check), ``formatting`` (one Message per night), ``channel`` (the ``Channel.post``
interface, dry run), ``slack`` / ``discord`` (one channel each), ``webhook`` (retries),
``send`` (``send_alerts``), ``outbox`` (alerts owed from one sensor tick to the next),
``inbox`` (alerts another sensor could not deliver, handed to the outbox's sensor).
"""

from nightly_pipeline.alerts.channel import Channel
from nightly_pipeline.alerts.config import check_destination, settings_from_env
from nightly_pipeline.alerts.discord import DiscordChannel, discord_payload
from nightly_pipeline.alerts.formatting import Message, build_messages, format_magnitude
from nightly_pipeline.alerts.inbox import Adopted, PendingInbox, adopt, send_or_keep
from nightly_pipeline.alerts.model import Alert, AlertKind, AlertSettings, Delivery
from nightly_pipeline.alerts.outbox import (
    RETRY_BOUND,
    Outbox,
    Pending,
    RetryBound,
    TickOutcome,
    deliver,
)
from nightly_pipeline.alerts.send import configured_channels, only_channels, send_alerts
from nightly_pipeline.alerts.slack import SlackChannel, slack_payload
from nightly_pipeline.alerts.webhook import RetryPolicy, WebhookPoster

__all__ = [
    "RETRY_BOUND",
    "Adopted",
    "Alert",
    "AlertKind",
    "AlertSettings",
    "Channel",
    "Delivery",
    "DiscordChannel",
    "Message",
    "Outbox",
    "Pending",
    "PendingInbox",
    "RetryBound",
    "RetryPolicy",
    "SlackChannel",
    "TickOutcome",
    "WebhookPoster",
    "adopt",
    "build_messages",
    "check_destination",
    "configured_channels",
    "deliver",
    "discord_payload",
    "format_magnitude",
    "only_channels",
    "send_alerts",
    "send_or_keep",
    "settings_from_env",
    "slack_payload",
]
