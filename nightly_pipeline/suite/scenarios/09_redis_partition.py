"""Test 09, Redis partition: messages posted at a fixed rate while Redis is cut off from
the dispatcher (its own proxy disabled: connections closed, new ones refused), then
healed; then the same for the consumer's link. While the dispatcher cannot publish, the
outbox rows stay as its dead-letter queue (``messaging_dispatch_dlq_total{sink="redis"}``)
and are published when Redis is back (``messaging_dispatch_published_total`` grows again);
the pipeline must be steady within 60 s of each heal and no acknowledged message lost.

Each process reaches Redis through a proxy of its own (``redis`` for the API,
``redis-dispatcher``, ``redis-consumer``), so a partition cuts one process off, not all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from nightly_pipeline.loadgen import LoadResult
from nightly_pipeline.suite.chaos_run import FaultStep, python_activity, run_chaos_messaging
from nightly_pipeline.suite.context import ScenarioContext
from nightly_pipeline.suite.messaging_load import MessagingKnobs
from nightly_pipeline.suite.spec import Check, TestSpec

PUBLISHED = "messaging_dispatch_published_total"


@dataclass(frozen=True)
class RedisPartitionKnobs:
    dispatcher_at: float = 0.15  # of the load's length
    consumer_at: float = 0.55
    partition_for: float = 0.2
    resume_probe_s: float = 1.0  # published_total read twice this far apart after the heal
    messaging: MessagingKnobs = field(
        default_factory=lambda: MessagingKnobs(
            payload_bytes=1024, conversations=10, participants=3, pool=13, drain_s=90.0
        )
    )


KNOBS = RedisPartitionKnobs()

SPEC = TestSpec(
    id="09",
    name="redis_partition",
    duration_s=600,
    rate=500,
    knobs=KNOBS,
    description="Redis cut off from the dispatcher, then the consumer; outbox as DLQ, healing",
    assets=("dispatch", "recovery", "delivery"),
    checks=(
        Check(
            "dlq_writes_during_partition",
            on="dispatch",
            metric="messaging_dispatch_dlq_total{sink:redis}",
            expr="count>0",
            severity="error",
            plan="messaging_dispatch_dlq_total{sink=redis} > 0",
            unit="count",
        ),
        Check(
            "publishing_resumes",
            on="dispatch",
            metric="published_after_heal",
            expr="count>0",
            severity="error",
            plan="messaging_dispatch_published_total resumes after recovery",
            unit="count",
        ),
        Check(
            "recovers_within_60s",
            on="recovery",
            metric="time_to_recover_s",
            expr="max<60",
            severity="error",
            plan="Validate automatic recovery (< 60s)",
            unit="s",
        ),
        Check(
            "zero_message_loss",
            on="delivery",
            metric="delivery_lost",
            expr="count==0",
            severity="error",
            plan="No permanent message loss",
            unit="count",
        ),
        Check(
            "each_message_delivered_once",
            on="delivery",
            metric="delivery_duplicated",
            expr="count==0",
            severity="error",
            plan="No permanent message loss (each message delivered once)",
            unit="count",
        ),
    ),
)


def scenario(ctx: ScenarioContext[RedisPartitionKnobs]) -> LoadResult:
    knobs, length = ctx.knobs, ctx.duration_s
    dispatcher_metrics = ctx.target.metrics_urls.get("dispatcher")
    steps = [
        FaultStep(
            "dispatcher-partition",
            "link_down",
            {"proxy": "redis-dispatcher"},
            at_s=knobs.dispatcher_at * length,
            hold_s=knobs.partition_for * length,
            after_revert=[
                _published(f"published-{n}", dispatcher_metrics, knobs.resume_probe_s * n)
                for n in (0, 1)
            ],
        ),
        FaultStep(
            "consumer-partition",
            "link_down",
            {"proxy": "redis-consumer"},
            at_s=knobs.consumer_at * length,
            hold_s=knobs.partition_for * length,
        ),
    ]
    run = run_chaos_messaging(ctx, knobs.messaging, steps)
    first, second = (run.probe_output(f"published-{n}") for n in (0, 1))
    if isinstance(first, float) and isinstance(second, float) and min(first, second) >= 0:
        grown = second - first
        run.result.recorder.counter("published_after_heal", time.perf_counter(), value=grown)
    return run.result


def _published(name: str, url: str | None, pause_s: float) -> dict:
    probe = python_activity("probe", name, "metric_value", name=PUBLISHED, url=url)
    if pause_s:
        probe["pauses"] = {"before": pause_s}
    return probe
