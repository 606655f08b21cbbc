"""Discord webhook: ``{"content": summary, "embeds": [one per alert], "allowed_mentions"}``.

Limits kept (Discord's): content 2,000 characters; at most 10 embeds; embed title 256,
description 4,096, 25 fields of name 256 / value 1,024, footer 2,048, and 6,000 across
all embeds of a message — descriptions shrink first, then trailing embeds are dropped
and counted as omitted. Mentions are disabled, so a detail cannot ping @everyone.
"""

from __future__ import annotations

from typing import Any

from nightly_pipeline.alerts.channel import WebhookChannel
from nightly_pipeline.alerts.formatting import (
    Message,
    alert_facts,
    alert_headline,
    omitted_note,
    text_length,
    truncate,
)
from nightly_pipeline.alerts.model import Alert

MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_TITLE = 256
MAX_DESCRIPTION = 4096
MAX_FIELD_NAME = 256
MAX_FIELD_VALUE = 1024
MAX_FOOTER = 2048
MAX_EMBEDS_TOTAL = 6000
MAX_FACT = 300
"""Our own bound of a fact's value, well under Discord's, so one embed always fits."""
MAX_REPORT_FIELD = 512
MIN_DESCRIPTION = 200
"""Descriptions are not shrunk below this to fit the total; embeds are dropped instead."""

COLOURS = {"regression": 0xE67E22, "check_failed": 0xE74C3C, "run_failed": 0x992D22}
SHOWN_FACTS = ("Metric", "Magnitude", "First bad night", "Night")


def _embed(alert: Alert, description_limit: int) -> dict[str, Any]:
    embed: dict[str, Any] = {
        "title": truncate(alert_headline(alert), MAX_TITLE),
        "color": COLOURS.get(alert.kind, 0x95A5A6),
        "fields": [
            {
                "name": truncate(label, MAX_FIELD_NAME),
                "value": truncate(value, min(MAX_FACT, MAX_FIELD_VALUE)),
                "inline": True,
            }
            for label, value in alert_facts(alert)
            if label in SHOWN_FACTS
        ],
        "footer": {"text": truncate(f"nightly_pipeline · {alert.kind}", MAX_FOOTER)},
    }
    if alert.detail:
        embed["description"] = truncate(alert.detail, min(description_limit, MAX_DESCRIPTION))
    if url := alert.report_url:
        if url.startswith(("http://", "https://")) and len(url) <= 2048:
            embed["url"] = url  # Discord rejects the whole message for an invalid URL
        embed["fields"].append(
            {"name": "Report", "value": truncate(url, MAX_REPORT_FIELD), "inline": False}
        )
    return embed


def embed_size(embed: dict[str, Any]) -> int:
    """Characters Discord counts towards the 6,000 total of a message's embeds."""
    size = text_length(embed.get("title", "")) + text_length(embed.get("description", ""))
    size += text_length(embed.get("footer", {}).get("text", ""))
    size += sum(text_length(f["name"]) + text_length(f["value"]) for f in embed["fields"])
    return size


def _fit(alerts: tuple[Alert, ...]) -> list[dict[str, Any]]:
    """Embeds for ``alerts`` within the per-message total, as many as fit."""
    alerts = alerts[:MAX_EMBEDS]
    while alerts:
        fixed = sum(embed_size(_embed(a, 0)) for a in alerts)
        share = (MAX_EMBEDS_TOTAL - fixed) // len(alerts)
        if share >= MIN_DESCRIPTION or not any(a.detail for a in alerts):
            embeds = [_embed(a, max(share, 0)) for a in alerts]
            if sum(embed_size(e) for e in embeds) <= MAX_EMBEDS_TOTAL:
                return embeds
        alerts = alerts[:-1]
    return []


def discord_payload(message: Message) -> dict[str, Any]:
    """The webhook JSON for one message."""
    embeds = _fit(message.alerts)
    mentions = {"parse": []}
    if not embeds:  # cannot happen with our bounds; the plain text then says it all
        return {"content": truncate(message.text, MAX_CONTENT), "allowed_mentions": mentions}
    omitted = message.total - len(embeds)
    tail = []
    if omitted:
        tail.append(omitted_note(omitted))
    if url := message.report_url:
        tail.append(f"Report: {url}")
    tail_text = truncate("\n".join(tail), MAX_CONTENT // 2)
    head = f"**{message.title}**"
    budget = MAX_CONTENT - (text_length(tail_text) + 1 if tail_text else 0)
    content = truncate(head, budget) + (f"\n{tail_text}" if tail_text else "")
    return {"content": content, "embeds": embeds, "allowed_mentions": mentions}


class DiscordChannel(WebhookChannel):
    name = "discord"

    def render(self, message: Message) -> dict[str, Any]:
        return discord_payload(message)
