"""Pure parts: settings, destinations, retry timing, formatting (table-driven)."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime

import httpx
import pytest

from nightly_pipeline.alerts import (
    Alert,
    AlertSettings,
    build_messages,
    check_destination,
    discord_payload,
    format_magnitude,
    settings_from_env,
    slack_payload,
)
from nightly_pipeline.alerts.config import redact
from nightly_pipeline.alerts.formatting import MAX_TEXT, text_length, truncate
from nightly_pipeline.alerts.webhook import RetryPolicy, parse_retry_after

NIGHT = date(2025, 3, 14)


def alert(kind="regression", test="01_message_soak", **kw) -> Alert:
    base = dict(
        night=NIGHT,
        metric="http_req_duration.p95",
        magnitude=0.123,
        first_bad_night=date(2025, 3, 12),
        detail="d",
        report_url="https://ci.example/r.html",
    )
    return Alert(kind=kind, test=test, **(base | kw))


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, AlertSettings(None, None, dry_run=False)),
        (
            {
                "NIGHTLY_SLACK_WEBHOOK_URL": " https://hooks.slack.com/services/x ",
                "NIGHTLY_DISCORD_WEBHOOK_URL": "",
                "NIGHTLY_ALERTS_DRY_RUN": "Yes",
            },
            AlertSettings("https://hooks.slack.com/services/x", None, dry_run=True),
        ),
        ({"NIGHTLY_ALERTS_DRY_RUN": "0"}, AlertSettings(None, None)),
        ({"NIGHTLY_ALERTS_DRY_RUN": "on"}, AlertSettings(None, None, dry_run=True)),
    ],
)
def test_settings_from_env(env, expected) -> None:
    assert settings_from_env(env) == expected


def test_settings_from_env_rejects_an_unknown_dry_run_value() -> None:
    with pytest.raises(ValueError, match="NIGHTLY_ALERTS_DRY_RUN='ture'"):
        settings_from_env({"NIGHTLY_ALERTS_DRY_RUN": "ture"})


@pytest.mark.parametrize(
    ("url", "allow", "refused"),
    [
        ("http://127.0.0.1:8080/h", (), None),
        ("http://[::1]:8080/h", (), None),
        ("http://localhost/h", (), None),
        ("https://hooks.slack.com/services/T/B/x", (), None),
        ("https://discord.com/api/webhooks/1/x", (), None),
        ("http://hooks.slack.com/services/T/B/x", (), "requires https"),
        ("https://chat.corp.example/hooks/x", (), "not allowed"),
        ("https://chat.corp.example/hooks/x", ("chat.corp.example",), None),
        ("ftp://127.0.0.1/x", (), "must be http(s)"),
        ("not a url", (), "must be http(s)"),
    ],
)
def test_check_destination(url, allow, refused) -> None:
    why = check_destination(url, allow)
    assert why is None if refused is None else refused in (why or "")


def test_redact_hides_the_webhook_secret() -> None:
    assert redact("https://hooks.slack.com/services/T/B/secret") == "https://hooks.slack.com/…"
    assert redact("http://127.0.0.1:9/x") == "http://127.0.0.1:9/…"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("7", 7.0),
        ("0.25", 0.25),
        ("-3", 0.0),
        ("soon", None),
        ("nan", None),
        ("Fri, 14 Mar 2025 02:10:30 GMT", 30.0),
    ],
)
def test_parse_retry_after(value, expected) -> None:
    now = datetime(2025, 3, 14, 2, 10, 0, tzinfo=UTC)
    assert parse_retry_after(value, now=now) == expected


def test_backoff_is_exponential_jittered_and_capped() -> None:
    policy = RetryPolicy(backoff_base_s=0.5, backoff_max_s=3.0)
    rng = random.Random(1)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (9, 3.0)]:
        waits = {policy.backoff(attempt, rng) for _ in range(50)}
        assert all(ceiling / 2 <= w <= ceiling for w in waits) and len(waits) > 1


@pytest.mark.parametrize(
    ("magnitude", "text"),
    [(0.123, "+12.3 %"), (-0.05, "-5.0 %"), (0.0, "+0.0 %"), (2.0, "+200.0 %"), (None, None)],
)
def test_format_magnitude(magnitude, text) -> None:
    assert format_magnitude(magnitude) == text


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("short", 10, "short"),
        ("exactly10!", 10, "exactly10!"),
        ("abcdefghijk", 5, "abcd…"),
        ("🚨🚨🚨", 4, "🚨…"),  # an emoji is two UTF-16 units; never split
        ("ab   cdef", 6, "ab…"),
        ("abc", 0, ""),
    ],
)
def test_truncate(text, limit, expected) -> None:
    out = truncate(text, limit)
    assert out == expected and text_length(out) <= limit


def test_messages_are_batched_per_night_and_bounded() -> None:
    alerts = [alert(test=f"t{i:02d}") for i in range(14)]
    alerts.append(alert("run_failed", "suite", metric=None, magnitude=None, first_bad_night=None))
    alerts.append(alert(night=date(2025, 3, 13)))

    older, latest = build_messages(alerts)

    assert (older.night, older.total) == (date(2025, 3, 13), 1)
    assert latest.night == NIGHT and latest.total == 15
    assert len(latest.alerts) == 10 and latest.omitted == 5
    assert latest.alerts[0].kind == "run_failed"  # most severe first
    assert latest.title == "Nightly alerts 2025-03-14: 1 failed run, 14 regressions"
    assert "… and 5 more alerts not shown" in latest.text
    assert latest.text.endswith("Report: https://ci.example/r.html")


def test_long_text_keeps_the_report_link() -> None:
    alerts = [alert(test="t" * 400 + str(i), detail="x" * 2000) for i in range(10)]
    [message] = build_messages(alerts)
    assert text_length(message.text) <= MAX_TEXT
    assert message.text.endswith("Report: https://ci.example/r.html")


def test_check_failed_without_metric_or_link_renders() -> None:
    failed = alert("check_failed", metric=None, magnitude=None, first_bad_night=None)
    failed = Alert(**{**failed.__dict__, "report_url": None})
    [message] = build_messages([failed])
    slack = slack_payload(message)
    discord = discord_payload(message)
    assert "Check failed" in slack["blocks"][1]["text"]["text"]
    assert "Report" not in slack["blocks"][1]["text"]["text"]
    [embed] = discord["embeds"]
    assert "url" not in embed and [f["name"] for f in embed["fields"]] == ["Night"]


def test_user_text_cannot_ping_or_forge_links() -> None:
    evil = alert(detail="<!channel> @everyone <https://x|click> & more")
    [message] = build_messages([evil])
    section = slack_payload(message)["blocks"][1]["text"]["text"]
    assert "<!channel>" not in section and "&lt;!channel&gt;" in section
    assert "&amp; more" in section
    assert discord_payload(message)["allowed_mentions"] == {"parse": []}


def test_invalid_report_url_is_not_an_embed_url() -> None:
    [message] = build_messages([alert(report_url="file:///tmp/r.html")])
    [embed] = discord_payload(message)["embeds"]
    assert "url" not in embed and embed["fields"][-1]["value"] == "file:///tmp/r.html"
    assert "<file:" not in slack_payload(message)["blocks"][1]["text"]["text"]


def test_payloads_are_json_serialisable() -> None:
    [message] = build_messages([alert()])
    for payload in (slack_payload(message), discord_payload(message)):
        assert httpx.Request("POST", "http://127.0.0.1/", json=payload).content
