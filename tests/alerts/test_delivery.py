"""send_alerts against real loopback HTTP receivers (Slack- and Discord-shaped)."""

from __future__ import annotations

import logging
import socket
from dataclasses import replace
from datetime import date

import pytest

from nightly_pipeline.alerts import Alert, AlertSettings, send_alerts
from tests.alerts.conftest import FakeClock
from tests.alerts.receiver import Receiver, Reply

NIGHT = date(2025, 3, 14)
REPORT = "http://127.0.0.1:3000/reports/2025-03-14.html"


def regression(test: str = "01_message_soak", **changes: object) -> Alert:
    alert = Alert(
        kind="regression",
        night=NIGHT,
        test=test,
        metric="http_req_duration.p95",
        magnitude=0.123,
        first_bad_night=date(2025, 3, 12),
        detail="smoke: 91.2 vs baseline 81.2 (confidence 0.999)",
        report_url=REPORT,
    )
    return replace(alert, **changes)


def settings(slack: Receiver | None = None, discord: Receiver | None = None, **kw: object):
    return AlertSettings(
        slack_webhook_url=slack.url if slack else None,
        discord_webhook_url=discord.url if discord else None,
        **kw,  # type: ignore[arg-type]
    )


def send(alerts, s, clock: FakeClock):
    return send_alerts(alerts, s, sleep=clock.sleep, clock=clock.now)


def test_regression_arrives_at_slack_and_discord(slack, discord, clock) -> None:
    deliveries = send([regression()], settings(slack, discord), clock)

    assert [(d.channel, d.ok, d.attempts, d.dry_run) for d in deliveries] == [
        ("slack", True, 1, False),
        ("discord", True, 1, False),
    ]
    assert deliveries[1].status_code == 204 and deliveries[0].night == NIGHT

    [s] = slack.requests
    assert s.path == "/hooks/T000/B000/secret"
    assert s.headers["Content-Type"] == "application/json"
    body = s.json()
    assert set(body) == {"text", "blocks"}
    assert body["blocks"][0]["type"] == "header"
    section = body["blocks"][1]
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    for needle in ("01_message_soak", "http_req_duration.p95", "+12.3 %", "2025-03-12"):
        assert needle in body["text"] and needle in section["text"]["text"]
    assert f"<{REPORT}|Report>" in section["text"]["text"]
    assert REPORT in body["text"] and "2025-03-14" in body["text"]

    [d] = discord.requests
    body = d.json()
    assert set(body) == {"content", "embeds", "allowed_mentions"}
    assert body["allowed_mentions"] == {"parse": []}
    assert "2025-03-14" in body["content"] and REPORT in body["content"]
    [embed] = body["embeds"]
    assert "01_message_soak" in embed["title"] and "+12.3 %" in embed["title"]
    assert embed["url"] == REPORT
    assert embed["description"] == regression().detail
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields == {
        "Metric": "http_req_duration.p95",
        "Magnitude": "+12.3 %",
        "First bad night": "2025-03-12",
        "Night": "2025-03-14",
        "Report": REPORT,
    }


def test_three_alerts_of_one_night_make_one_message_per_channel(slack, discord, clock) -> None:
    failed = Alert("check_failed", NIGHT, "04_mixed_ws_http", None, None, None, "p95 > 500", None)
    alerts = [regression("01_a"), regression("02_b", magnitude=0.5), failed]

    deliveries = send(alerts, settings(slack, discord), clock)

    assert [(d.channel, d.ok, d.alerts) for d in deliveries] == [
        ("slack", True, 3),
        ("discord", True, 3),
    ]
    assert len(slack.requests) == 1 and len(discord.requests) == 1
    text = slack.requests[0].json()["text"]
    assert text.startswith("Nightly alerts 2025-03-14: 1 failed check, 2 regressions")
    assert all(name in text for name in ("01_a", "02_b", "04_mixed_ws_http", "+50.0 %"))
    embeds = discord.requests[0].json()["embeds"]
    assert [e["title"].split(":")[0] for e in embeds] == [
        "Check failed",
        "Regression",
        "Regression",
    ]


def test_alerts_of_two_nights_make_two_messages(slack, clock) -> None:
    older = regression(night=date(2025, 3, 12))
    deliveries = send([regression(), older], settings(slack), clock)
    assert [d.night for d in deliveries] == [date(2025, 3, 12), NIGHT]
    assert len(slack.requests) == 2


def test_500_is_retried_then_succeeds(slack, clock) -> None:
    slack.then(Reply(500, body=b"boom"))

    [delivery] = send([regression()], settings(slack, backoff_base_s=1.0), clock)

    assert delivery.ok and delivery.attempts == 2 and delivery.error is None
    assert len(slack.requests) == 2
    assert len(clock.sleeps) == 1 and 0.5 <= clock.sleeps[0] <= 1.0  # jittered backoff


def test_backoff_grows_exponentially_and_is_capped(slack, clock) -> None:
    slack.then(Reply(503), times=5)
    s = settings(slack, max_attempts=6, backoff_base_s=1.0, backoff_max_s=4.0)

    [delivery] = send([regression()], s, clock)

    assert delivery.ok and delivery.attempts == 6
    ceilings = [1, 2, 4, 4, 4]
    assert all(c / 2 <= w <= c for w, c in zip(clock.sleeps, ceilings, strict=True))


def test_429_retry_after_is_honoured(discord, clock) -> None:
    discord.then(Reply(429, {"Retry-After": "7"}, b'{"retry_after": 7.0}'))

    [delivery] = send([regression()], settings(discord=discord), clock)

    assert delivery.ok and delivery.attempts == 2
    assert clock.sleeps == [7.0]


def test_429_retry_after_is_capped(slack, clock) -> None:
    slack.then(Reply(429, {"Retry-After": "3600"}))

    [delivery] = send([regression()], settings(slack, retry_after_max_s=20), clock)

    assert delivery.ok and clock.sleeps == [20]


def test_404_is_not_retried(slack, clock, caplog) -> None:
    slack.then(Reply(404, body=b"no_service"), times=3)

    with caplog.at_level(logging.WARNING, "nightly_pipeline.alerts"):
        [delivery] = send([regression()], settings(slack), clock)

    assert not delivery.ok and delivery.attempts == 1 and delivery.status_code == 404
    assert delivery.error == "HTTP 404: no_service"
    assert len(slack.requests) == 1 and clock.sleeps == []
    assert "404" in caplog.text and "secret" not in caplog.text  # the URL is not logged


def test_webhook_that_never_answers_fails_after_bounded_attempts(slack, discord, clock, caplog):
    slack.then(Reply(hang=True), times=3)

    with caplog.at_level(logging.ERROR, "nightly_pipeline.alerts"):
        deliveries = send(
            [regression()], settings(slack, discord, timeout_s=0.2, max_attempts=3), clock
        )

    failed, delivered = deliveries
    assert failed.channel == "slack" and not failed.ok and failed.attempts == 3
    assert failed.status_code is None and "Timeout" in (failed.error or "")
    assert len(slack.requests) == 3 and len(clock.sleeps) == 2
    assert delivered.channel == "discord" and delivered.ok  # one failure spares the other
    assert "failed after 3 attempt(s)" in caplog.text and "secret" not in caplog.text


def test_connection_refused_is_retried_then_reported(clock) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    url = f"http://127.0.0.1:{port}/hook"

    [delivery] = send([regression()], AlertSettings(url, None, max_attempts=3), clock)

    assert not delivery.ok and delivery.attempts == 3
    assert (delivery.error or "").startswith("ConnectError")


def test_total_time_budget_stops_retries(slack, clock) -> None:
    slack.then(Reply(500), times=10)
    s = settings(slack, max_attempts=10, backoff_base_s=4, backoff_max_s=4, max_total_s=10)

    [delivery] = send([regression()], s, clock)

    assert not delivery.ok and sum(clock.sleeps) < 10
    assert delivery.attempts < 10 and "time budget" in (delivery.error or "")


def test_dry_run_sends_nothing(slack, discord, clock, caplog) -> None:
    with caplog.at_level(logging.INFO, "nightly_pipeline.alerts"):
        deliveries = send([regression()], settings(slack, discord, dry_run=True), clock)

    assert [(d.channel, d.ok, d.attempts, d.dry_run) for d in deliveries] == [
        ("slack", True, 0, True),
        ("discord", True, 0, True),
    ]
    assert slack.requests == [] and discord.requests == []
    assert "dry run" in caplog.text and "01_message_soak" in caplog.text
    assert "secret" not in caplog.text


def test_destination_not_allowed_is_refused_without_sending(clock, caplog) -> None:
    s = AlertSettings("https://evil.example.com/hook", None)
    with caplog.at_level(logging.ERROR, "nightly_pipeline.alerts"):
        [delivery] = send([regression()], s, clock)
    assert not delivery.ok and delivery.attempts == 0
    assert "not allowed" in (delivery.error or "")


def test_invalid_settings_are_reported_not_raised(slack, clock) -> None:
    [delivery] = send([regression()], settings(slack, max_attempts=0), clock)
    assert not delivery.ok and "max_attempts" in (delivery.error or "")
    assert slack.requests == []


def test_no_alerts_or_no_channel_sends_nothing(slack, clock) -> None:
    assert send([], settings(slack), clock) == []
    assert send([regression()], AlertSettings(None, None), clock) == []
    assert slack.requests == []


@pytest.mark.parametrize("detail", ["x" * 20_000, "🚨" * 9_000, "line\n" * 3_000])
def test_overlong_detail_is_truncated_within_limits(slack, discord, clock, detail) -> None:
    alerts = [regression(f"{i:02d}_test", detail=detail) for i in range(12)]

    deliveries = send(alerts, settings(slack, discord), clock)

    assert all(d.ok for d in deliveries)
    body = discord.requests[0].json()
    u16 = lambda s: len(s.encode("utf-16-le")) // 2  # noqa: E731 — Discord counts UTF-16
    assert u16(body["content"]) <= 2000 and len(body["embeds"]) <= 10
    total = 0
    for embed in body["embeds"]:
        assert u16(embed["title"]) <= 256 and u16(embed["description"]) <= 4096
        assert embed["description"].endswith("…")
        assert len(embed["fields"]) <= 25
        assert all(u16(f["name"]) <= 256 and u16(f["value"]) <= 1024 for f in embed["fields"])
        total += u16(embed["title"]) + u16(embed["description"]) + u16(embed["footer"]["text"])
        total += sum(u16(f["name"]) + u16(f["value"]) for f in embed["fields"])
    assert total <= 6000
    assert "more alert" in body["content"] and REPORT in body["content"]

    body = slack.requests[0].json()
    assert len(body["blocks"]) <= 50 and u16(body["text"]) <= 3000
    assert u16(body["blocks"][0]["text"]["text"]) <= 150
    sections = [b for b in body["blocks"] if b["type"] == "section"]
    assert len(sections) == 10
    assert all(u16(b["text"]["text"]) <= 3000 for b in sections)
    assert all(f"<{REPORT}|Report>" in b["text"]["text"] for b in sections)
    assert "2 more alerts" in body["blocks"][-1]["elements"][0]["text"]


def test_the_loopback_guard_stops_any_other_destination(clock) -> None:
    s = AlertSettings("https://alerts.invalid/hook", None, allow_hosts=("alerts.invalid",))
    with pytest.raises(pytest.fail.Exception, match=r"alerts\.invalid"):
        send([regression()], s, clock)
