"""Slack incoming webhook: ``{"text": fallback, "blocks": [header, sections, context]}``.

Limits kept (Slack's Block Kit): at most 50 blocks, header text 150 characters, section
text 3,000; the fallback ``text`` is the plain rendering (3,000). User text is escaped
for mrkdwn (``& < >``), so a detail cannot ping ``<!channel>`` or forge a link.
"""

from __future__ import annotations

from typing import Any

from nightly_pipeline.alerts.channel import WebhookChannel
from nightly_pipeline.alerts.formatting import (
    KIND_LABELS,
    Message,
    alert_facts,
    format_magnitude,
    omitted_note,
    text_length,
    truncate,
)
from nightly_pipeline.alerts.model import Alert

MAX_HEADER = 150
MAX_SECTION = 3000
MAX_DETAIL = 1500


def escape(text: str) -> str:
    """Escape Slack's mrkdwn control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link(url: str, label: str) -> str:
    """``<url|label>`` for an http(s) URL Slack can parse; the escaped text otherwise."""
    if url.startswith(("http://", "https://")) and not any(c in url for c in "<>| \n"):
        return f"<{url}|{escape(label)}>"
    return escape(url)


def _section(alert: Alert) -> dict[str, Any]:
    kind = KIND_LABELS.get(alert.kind, alert.kind)
    head = f"*{escape(kind)}* · `{escape(alert.test)}`"
    if alert.metric:
        head += f" · `{escape(alert.metric)}`"
    if magnitude := format_magnitude(alert.magnitude):
        head += f" *{magnitude}*"
    facts = " · ".join(
        f"{label}: {escape(value)}"
        for label, value in alert_facts(alert)
        if label in ("First bad night", "Night")
    )
    lines = [head, facts]
    tail = f"\n{link(alert.report_url, 'Report')}" if alert.report_url else ""
    if alert.detail:
        budget = MAX_SECTION - text_length("\n".join(lines)) - text_length(tail) - 1
        quoted = ">" + escape(alert.detail).replace("\n", "\n>")
        lines.append(truncate(quoted, min(MAX_DETAIL, budget)))
    text = "\n".join(lines) + tail
    return {"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, MAX_SECTION)}}


def slack_payload(message: Message) -> dict[str, Any]:
    """The webhook JSON for one message."""
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": truncate(message.title, MAX_HEADER)},
        }
    ]
    for alert in message.alerts:
        blocks.append(_section(alert))
    if message.omitted:
        notes = [omitted_note(message.omitted)]
        if url := message.report_url:
            notes.append(link(url, "full report"))
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(notes)}]}
        )
    return {"text": message.text, "blocks": blocks[:50]}


class SlackChannel(WebhookChannel):
    name = "slack"

    def render(self, message: Message) -> dict[str, Any]:
        return slack_payload(message)
