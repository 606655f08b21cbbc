"""Test 01, message soak: 1 KiB encrypted messages posted at a fixed rate, each verified
to reach every participant's WebSocket exactly once, intact, while the target's lags,
dead letters and memory are watched.

Ten conversations of three participants (a ring over 13 users), one listening socket
per participant; the messages are judged by id after a drain (``suite.messaging_load``).
"""

from __future__ import annotations

from nightly_pipeline.loadgen import LoadResult
from nightly_pipeline.suite.context import ScenarioContext
from nightly_pipeline.suite.messaging_load import MessagingKnobs, run_messaging_load
from nightly_pipeline.suite.spec import Check, TestSpec

KNOBS = MessagingKnobs(payload_bytes=1024, conversations=10, participants=3, pool=13)

SPEC = TestSpec(
    id="01",
    name="message_soak",
    duration_s=1800,
    rate=500,
    knobs=KNOBS,
    description="1 KiB encrypted messages at a sustained rate; every one delivered once, intact",
    assets=("latency", "delivery", "resources"),
    checks=(
        Check(
            "post_p95_under_100ms",
            on="latency",
            metric="http_req_duration{name:post_message}",
            expr="p(95)<100",
            severity="warn",
            plan="P95 latency < 100ms",
            unit="ms",
        ),
        Check(
            "error_rate_under_0_1pct",
            on="latency",
            metric="http_req_failed",
            expr="rate<0.001",
            severity="error",
            plan="Error rate < 0.1%",
            unit="ratio",
        ),
        Check(
            "dispatch_lag_under_5s",
            on="delivery",
            metric="messaging_dispatch_lag_seconds",
            expr="max<5",
            severity="warn",
            plan="Dispatch lag < 5s",
            unit="s",
        ),
        Check(
            "consumer_lag_under_5s",
            on="delivery",
            metric="messaging_consumer_lag_seconds",
            expr="max<5",
            severity="warn",
            plan="Consumer lag < 5s",
            unit="s",
        ),
        Check(
            "zero_dead_letters",
            on="delivery",
            metric="messaging_outbox_dead_total",
            expr="count==0",
            severity="error",
            plan="messaging_outbox_dead_total == 0 (zero dead letters)",
            unit="count",
        ),
        Check(
            "zero_message_loss",
            on="delivery",
            metric="delivery_lost",
            expr="count==0",
            severity="error",
            plan="Zero message loss",
            unit="count",
        ),
        Check(
            "each_message_delivered_once",
            on="delivery",
            metric="delivery_duplicated",
            expr="count==0",
            severity="error",
            plan="Zero message loss (each message delivered once)",
            unit="count",
        ),
        Check(
            "zero_corrupted_messages",
            on="delivery",
            metric="delivery_corrupted",
            expr="count==0",
            severity="error",
            plan="1KB encrypted payloads arrive intact (sha256)",
            unit="count",
        ),
        Check(
            "memory_growth_under_10pct",
            on="resources",
            metric="process_rss_growth_pct",
            expr="max<10",
            severity="error",
            plan="Memory stable (no leaks)",
            unit="%",
        ),
    ),
)


def scenario(ctx: ScenarioContext[MessagingKnobs]) -> LoadResult:
    return run_messaging_load(ctx)
