"""Test 05, large payloads: 64 KiB messages at a fixed rate. Every frame's ciphertext
must hash to the sha256 it was sent with, the platform must reject none
(``messaging_payload_rejects_total``), drop no frame for backpressure
(``ws_overload_total``), and its processes' memory must not keep growing."""

from __future__ import annotations

from nightly_pipeline.loadgen import LoadResult
from nightly_pipeline.suite.context import ScenarioContext
from nightly_pipeline.suite.messaging_load import MessagingKnobs, run_messaging_load
from nightly_pipeline.suite.spec import Check, TestSpec

KNOBS = MessagingKnobs(payload_bytes=64 * 1024, conversations=10, participants=3, pool=13)

SPEC = TestSpec(
    id="05",
    name="large_payload",
    duration_s=900,
    rate=100,
    knobs=KNOBS,
    description="64 KiB payloads: integrity, memory and backpressure",
    assets=("latency", "delivery", "resources"),
    checks=(
        Check(
            "zero_corrupted_messages",
            on="delivery",
            metric="delivery_corrupted",
            expr="count==0",
            severity="error",
            plan="No payload corruption (hash check)",
            unit="count",
        ),
        Check(
            "zero_payload_rejects",
            on="delivery",
            metric="messaging_payload_rejects_total",
            expr="count==0",
            severity="error",
            plan="messaging_payload_rejects_total == 0",
            unit="count",
        ),
        Check(
            "memory_growth_under_10pct",
            on="resources",
            metric="process_rss_growth_pct",
            expr="max<10",
            severity="error",
            plan="Memory growth < 10% over 15 minutes",
            unit="%",
        ),
        Check(
            "no_backpressure_drops",
            on="delivery",
            metric="ws_overload_total",
            expr="count==0",
            severity="error",
            plan="ws_overload_total == 0 (no backpressure drops)",
            unit="count",
        ),
    ),
)


def scenario(ctx: ScenarioContext[MessagingKnobs]) -> LoadResult:
    return run_messaging_load(ctx)
