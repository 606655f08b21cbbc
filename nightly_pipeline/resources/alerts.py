"""Slack/Discord alerting as a Dagster resource."""

import os
from collections.abc import Sequence

import dagster as dg

from nightly_pipeline.alerts import (
    Alert,
    AlertSettings,
    Delivery,
    configured_channels,
    only_channels,
    send_alerts,
    settings_from_env,
)


class AlertsResource(dg.ConfigurableResource):
    """Webhook URLs and dry-run; empty fields fall back to the NIGHTLY_* environment
    variables (see nightly_pipeline.alerts), so a deployment configures them once."""

    slack_webhook_url: str = ""
    discord_webhook_url: str = ""
    dry_run: bool = False
    max_attempts: int = 4
    """Attempts per message within one send; the regression sensor retries what still
    failed at its next tick."""

    def settings(self) -> AlertSettings:
        # A resource is an entry point: the environment is read here, not below.
        base = settings_from_env(os.environ)
        return AlertSettings(
            slack_webhook_url=self.slack_webhook_url or base.slack_webhook_url,
            discord_webhook_url=self.discord_webhook_url or base.discord_webhook_url,
            dry_run=self.dry_run or base.dry_run,
            max_attempts=self.max_attempts,
        )

    def channels(self) -> tuple[str, ...]:
        """The channels configured (those an alert is owed to)."""
        return configured_channels(self.settings())

    def send(
        self, alerts: Sequence[Alert], channels: Sequence[str] | None = None
    ) -> list[Delivery]:
        """Send to every configured channel, or to ``channels`` only (a retry)."""
        settings = self.settings()
        return send_alerts(
            alerts, settings if channels is None else only_channels(settings, channels)
        )
