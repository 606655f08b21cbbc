"""Settings from the environment (entry points only) and the destination check.

Environment variables, read by ``settings_from_env`` — call it from an entry point (CLI,
Dagster resource) and pass the result down; nothing else in this package reads them:

    NIGHTLY_SLACK_WEBHOOK_URL    Slack incoming-webhook URL; unset or empty: no Slack
    NIGHTLY_DISCORD_WEBHOOK_URL  Discord webhook URL; unset or empty: no Discord
    NIGHTLY_ALERTS_DRY_RUN       1/true/yes/on: build and log messages, send nothing;
                                 0/false/no/off or empty: send (default)

Webhook URLs carry a secret: they are never logged; logs show scheme and host only.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Mapping

import httpx

from nightly_pipeline.alerts.model import AlertSettings

SLACK_URL_ENV = "NIGHTLY_SLACK_WEBHOOK_URL"
DISCORD_URL_ENV = "NIGHTLY_DISCORD_WEBHOOK_URL"
DRY_RUN_ENV = "NIGHTLY_ALERTS_DRY_RUN"

WEBHOOK_HOSTS = frozenset(
    {"hooks.slack.com", "discord.com", "discordapp.com", "ptb.discord.com", "canary.discord.com"}
)
"""The services' own webhook hosts: allowed by configuring a URL, HTTPS only."""

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def settings_from_env(env: Mapping[str, str]) -> AlertSettings:
    """Alert settings from ``env`` (pass ``os.environ`` at an entry point).

    Raises ValueError for an unrecognised ``NIGHTLY_ALERTS_DRY_RUN`` value: a typo must
    neither send real alerts nor silently suppress them.
    """
    raw = env.get(DRY_RUN_ENV, "").strip().lower()
    if raw not in _TRUE | _FALSE:
        raise ValueError(
            f"{DRY_RUN_ENV}={env[DRY_RUN_ENV]!r}: expected one of "
            f"{', '.join(sorted(_TRUE | _FALSE - {''}))}"
        )
    return AlertSettings(
        slack_webhook_url=env.get(SLACK_URL_ENV, "").strip() or None,
        discord_webhook_url=env.get(DISCORD_URL_ENV, "").strip() or None,
        dry_run=raw in _TRUE,
    )


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and literal loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_destination(url: str, allow_hosts: Collection[str] = ()) -> str | None:
    """Why alerts may not be sent to ``url``; None when they may.

    Allowed: loopback (http or https), Slack's and Discord's webhook hosts (https), and
    hosts named in ``allow_hosts`` (http or https). Redirects are never followed, so the
    check holds for the whole delivery.
    """
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        return f"invalid webhook URL ({type(exc).__name__})"
    host = parsed.host.lower()
    if parsed.scheme not in ("http", "https") or not host:
        return f"webhook URL must be http(s) with a host, got {redact(url)}"
    if is_loopback_host(host) or host in {h.lower() for h in allow_hosts}:
        return None
    if host in WEBHOOK_HOSTS:
        return None if parsed.scheme == "https" else f"{host} requires https"
    return (
        f"webhook host {host!r} is not allowed: alerts go to loopback, Slack/Discord "
        f"webhook hosts, or hosts listed in allow_hosts"
    )


def redact(url: str) -> str:
    """``scheme://host[:port]/…`` — the webhook path is a secret and never shown."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "<invalid url>"
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}/…"
