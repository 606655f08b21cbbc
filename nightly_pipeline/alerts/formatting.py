"""Alerts → channel-neutral messages: one message per night, bounded in size.

A ``Message`` carries the alerts it lists (at most ``max_alerts``), how many more were
left out, and a plain-text rendering; the channel modules turn it into their JSON.
Every alert names its kind, test, profile (when about one profile's run), metric,
magnitude (``+12.3 %``), first bad night, the night, the detail and the report link
when given.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from nightly_pipeline.alerts.model import KINDS, Alert

MAX_ALERTS_PER_MESSAGE = 10
"""Alerts listed in one message; the rest are counted ("… and 4 more")."""
MAX_TEXT = 3000
"""Bound of the plain-text rendering (characters, counted as UTF-16 code units)."""
MAX_DETAIL = 500
"""Bound of one alert's detail in the plain-text rendering."""
ELLIPSIS = "…"

KIND_LABELS = {
    "regression": "Regression",
    "check_failed": "Check failed",
    "run_failed": "Run failed",
}

_COUNTED = {
    "regression": ("regression", "regressions"),
    "check_failed": ("failed check", "failed checks"),
    "run_failed": ("failed run", "failed runs"),
}


@dataclass(frozen=True)
class Message:
    """The alerts of one night, as sent to every channel."""

    night: date
    alerts: tuple[Alert, ...]
    """The alerts listed, most severe kind first."""
    omitted: int
    """Alerts of this night not listed (beyond the size bound)."""
    title: str
    text: str
    """Plain text of the whole message, at most ``MAX_TEXT`` long."""

    @property
    def total(self) -> int:
        return len(self.alerts) + self.omitted

    @property
    def report_url(self) -> str | None:
        """The report link when every listed alert shares one."""
        urls = {a.report_url for a in self.alerts}
        return urls.pop() if len(urls) == 1 else None


def text_length(text: str) -> int:
    """Length as Discord and Slack count it (UTF-16 code units; >= ``len``)."""
    return len(text.encode("utf-16-le")) // 2


def truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-16 code units, ending in "…" when cut.

    Never splits a code point (a surrogate pair or a multi-byte character).
    """
    if text_length(text) <= limit:
        return text
    if limit <= 0:
        return ""
    budget = limit - 1  # room for the ellipsis (one code unit)
    out: list[str] = []
    for ch in text:
        size = 2 if ord(ch) > 0xFFFF else 1
        if size > budget:
            break
        out.append(ch)
        budget -= size
    return "".join(out).rstrip() + ELLIPSIS


def format_magnitude(magnitude: float | None) -> str | None:
    """``0.123`` → ``"+12.3 %"``; None when there is no magnitude."""
    if magnitude is None:
        return None
    if math.isnan(magnitude):
        return "n/a"
    return f"{magnitude * 100:+.1f} %"


def alert_headline(alert: Alert) -> str:
    """``Regression: 01_message_soak (ci) · http_req_duration.p95 +12.3 %``."""
    profile = f" ({alert.profile})" if alert.profile else ""
    parts = [f"{KIND_LABELS.get(alert.kind, alert.kind)}: {alert.test}{profile}"]
    if alert.metric:
        parts.append(alert.metric)
    magnitude = format_magnitude(alert.magnitude)
    head = " · ".join(parts)
    return f"{head} {magnitude}" if magnitude else head


def alert_facts(alert: Alert) -> list[tuple[str, str]]:
    """Labelled facts of one alert, only those given (detail and link excluded)."""
    facts = [("Kind", alert.kind), ("Test", alert.test)]
    if alert.profile:
        facts.append(("Profile", alert.profile))
    if alert.metric:
        facts.append(("Metric", alert.metric))
    magnitude = format_magnitude(alert.magnitude)
    if magnitude:
        facts.append(("Magnitude", magnitude))
    if alert.first_bad_night:
        facts.append(("First bad night", alert.first_bad_night.isoformat()))
    facts.append(("Night", alert.night.isoformat()))
    return facts


def alert_text(alert: Alert, *, with_link: bool = True) -> str:
    """Plain text of one alert: headline, facts, detail, report link."""
    facts = [f"{k.lower()} {v}" for k, v in alert_facts(alert) if k in ("First bad night", "Night")]
    lines = [alert_headline(alert), "  " + " · ".join(facts)]
    if alert.detail:
        lines.append("  " + truncate(alert.detail, MAX_DETAIL))
    if with_link and alert.report_url:
        lines.append(f"  report: {alert.report_url}")
    return "\n".join(lines)


def message_title(night: date, alerts: Sequence[Alert]) -> str:
    """``Nightly alerts 2025-01-07: 1 failed check, 2 regressions``."""
    counts = Counter(a.kind for a in alerts)
    parts = []
    for kind in KINDS:
        if n := counts.get(kind, 0):
            one, many = _COUNTED[kind]
            parts.append(f"{n} {one if n == 1 else many}")
    return f"Nightly alerts {night.isoformat()}: {', '.join(parts)}"


def omitted_note(omitted: int) -> str:
    return f"… and {omitted} more alert{'s' if omitted != 1 else ''} not shown"


def build_messages(
    alerts: Sequence[Alert], *, max_alerts: int = MAX_ALERTS_PER_MESSAGE
) -> list[Message]:
    """One message per night (oldest night first), each listing at most ``max_alerts``."""
    by_night: dict[date, list[Alert]] = defaultdict(list)
    for alert in alerts:
        by_night[alert.night].append(alert)
    order = {kind: i for i, kind in enumerate(KINDS)}
    messages = []
    for night in sorted(by_night):
        group = sorted(by_night[night], key=lambda a: order.get(a.kind, len(order)))
        shown, omitted = tuple(group[:max_alerts]), max(0, len(group) - max_alerts)
        title = message_title(night, group)
        messages.append(Message(night, shown, omitted, title, _text(title, shown, omitted)))
    return messages


def _text(title: str, shown: Sequence[Alert], omitted: int) -> str:
    urls = {a.report_url for a in shown}
    common = urls.pop() if len(urls) == 1 else None
    body = "\n\n".join([title, *(alert_text(a, with_link=common is None) for a in shown)])
    tail = "\n\n".join(
        ([omitted_note(omitted)] if omitted else []) + ([f"Report: {common}"] if common else [])
    )
    if not tail:
        return truncate(body, MAX_TEXT)
    # The tail (what was left out, the report link) survives a cut of the body.
    tail = truncate(tail, MAX_TEXT // 2)
    return truncate(body, MAX_TEXT - text_length(tail) - 2) + "\n\n" + tail
