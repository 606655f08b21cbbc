"""Slack/Discord alerting as a Dagster resource."""

import os

import dagster as dg

from nightly_pipeline.alerts import Alert, AlertSettings, Delivery, send_alerts, settings_from_env


class AlertsResource(dg.ConfigurableResource):
    """Webhook URLs and dry-run; empty fields fall back to the NIGHTLY_* environment
    variables (see nightly_pipeline.alerts), so a deployment configures them once."""

    slack_webhook_url: str = ""
    discord_webhook_url: str = ""
    dry_run: bool = False

    def settings(self) -> AlertSettings:
        # A resource is an entry point: the environment is read here, not below.
        base = settings_from_env(os.environ)
        return AlertSettings(
            slack_webhook_url=self.slack_webhook_url or base.slack_webhook_url,
            discord_webhook_url=self.discord_webhook_url or base.discord_webhook_url,
            dry_run=self.dry_run or base.dry_run,
        )

    def send(self, alerts: list[Alert]) -> list[Delivery]:
        return send_alerts(alerts, self.settings())
