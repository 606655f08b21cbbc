"""Test 08, consumer resilience: messages posted at a fixed rate while the consumer is
killed with SIGKILL mid-stream and started again. Every acknowledged message must still
reach every participant once, intact (the new consumer reclaims the dead one's pending
entries with XAUTOCLAIM), the delivery pipeline must be steady again within 30 s, and
the entries reclaimed must be exactly those pending at the kill.

The load sends ``messages`` (10,000 at the plan's load) at the rate, or runs the
profile's duration if that is shorter; the kill comes at ``kill_at`` of it, the restart
``down_s`` later. For ``slow_reads_s`` before the kill the consumer's link to Redis is
slow (``read_delay_ms`` on what Redis sends it): entries Redis has handed out (pending
from then on) take that long to reach the consumer, so the kill leaves a real pending
list behind, as a consumer killed under load does (a healthy, fast consumer at a low
rate may have none at that instant).
The kill waits for the moment a read hands entries out (``XPENDING`` polled every 5 ms
until it rises: even with slow replies a consumer's pending list is empty between its
acknowledgement and its next read, measured up to 0.75 s at a time at 500 msg/s, and a
count merely seen may be acknowledged before a kill through Docker's API lands). ``pel_at_kill`` is
``XPENDING`` read right after the kill (nothing reads the stream then; it must be > 0,
or the reclaim check would prove nothing); ``pel_reclaim_gap`` is its distance to the
growth of ``messaging_consumer_pel_reclaimed_total``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from nightly_pipeline.loadgen import LoadResult
from nightly_pipeline.loadgen.recorder import Recorder
from nightly_pipeline.suite.chaos_run import FaultStep, python_activity, run_chaos_messaging
from nightly_pipeline.suite.context import ScenarioContext
from nightly_pipeline.suite.messaging_load import MessagingKnobs
from nightly_pipeline.suite.sampling import Samples, counter_delta
from nightly_pipeline.suite.spec import Check, TestSpec, scales_with_load

RECLAIMED = "messaging_consumer_pel_reclaimed_total"


@dataclass(frozen=True)
class ConsumerResilienceKnobs:
    messages: int = scales_with_load(10_000)
    kill_at: float = 0.5  # of the load's length
    down_s: float = 5.0  # the consumer stays dead this long
    slow_reads_s: float = 2.5
    read_delay_ms: int = 200
    wait_pending_s: float = 10.0  # the kill waits (at most this) for entries pending
    stream: str = "messaging:stream"  # the platform's (CONTRACT.md)
    group: str = "delivery"
    messaging: MessagingKnobs = field(
        default_factory=lambda: MessagingKnobs(
            payload_bytes=1024, conversations=10, participants=3, pool=13, drain_s=60.0
        )
    )


KNOBS = ConsumerResilienceKnobs()

SPEC = TestSpec(
    id="08",
    name="consumer_resilience",
    duration_s=900,
    rate=500,
    knobs=KNOBS,
    description="kill -9 the consumer mid-stream and restart it; every message delivered once",
    assets=("delivery", "recovery"),
    checks=(
        Check(
            "zero_message_loss",
            on="delivery",
            metric="delivery_lost",
            expr="count==0",
            severity="error",
            plan="Zero message loss via PEL recovery",
            unit="count",
        ),
        Check(
            "each_message_delivered_once",
            on="delivery",
            metric="delivery_duplicated",
            expr="count==0",
            severity="error",
            plan="messaging_consumer_delivered_total == 10,000 (eventually), once each",
            unit="count",
        ),
        Check(
            "zero_corrupted_messages",
            on="delivery",
            metric="delivery_corrupted",
            expr="count==0",
            severity="error",
            plan="Every acknowledged message delivered intact",
            unit="count",
        ),
        Check(
            "recovers_within_30s",
            on="recovery",
            metric="time_to_recover_s",
            expr="max<30",
            severity="error",
            plan="Recovery time < 30s",
            unit="s",
        ),
        Check(
            "kill_left_pending_entries",
            on="recovery",
            metric="pel_at_kill",
            expr="value>0",
            severity="error",
            plan="PEL size at the kill (XPENDING): a kill that leaves none proves no reclaim",
            unit="count",
        ),
        Check(
            "pel_reclaimed_equals_pel",
            on="recovery",
            metric="pel_reclaim_gap",
            expr="value==0",
            severity="error",
            plan="messaging_consumer_pel_reclaimed_total == messages in PEL",
            unit="count",
        ),
    ),
)


def scenario(ctx: ScenarioContext[ConsumerResilienceKnobs]) -> LoadResult:
    knobs = ctx.knobs
    length = min(ctx.duration_s, knobs.messages / ctx.rate)
    kill = FaultStep(
        "consumer-kill",
        "kill",
        {"process": "consumer"},
        at_s=knobs.kill_at * length,
        hold_s=knobs.down_s,
        before=[
            python_activity(
                "probe",
                "pending-before-kill",
                "wait_for_pending",
                stream=knobs.stream,
                group=knobs.group,
                timeout_s=knobs.wait_pending_s,
            )
        ],
        probes=[
            python_activity(
                "probe", "pel-at-kill", "stream_pending", stream=knobs.stream, group=knobs.group
            )
        ],
    )
    slow = FaultStep(
        "slow-reads",
        "link_toxic",
        {
            "proxy": "redis-consumer",
            "toxic": "latency",
            "stream": "downstream",
            "attributes": {"latency": knobs.read_delay_ms},
        },
        at_s=max(0.0, kill.at_s - knobs.slow_reads_s),
        hold_s=min(knobs.slow_reads_s, kill.at_s),  # removed just after the kill
    )
    run = run_chaos_messaging(ctx, knobs.messaging, [kill, slow], duration_s=length)
    pel = run.probe_output("pel-at-kill")
    if isinstance(pel, int):
        run.result.recorder.gauge("pel_at_kill", float(pel), time.perf_counter())
    return run.result


def derive(samples: Samples, recorder: Recorder, at: float) -> None:
    """The reclaimed entries against the PEL at the kill (the restarted consumer's
    counter starts at zero: its growth is what it reclaimed)."""
    pel = recorder.stats("pel_at_kill").get("value")
    reclaimed = counter_delta(samples, RECLAIMED)
    if pel is not None and reclaimed is not None:
        recorder.gauge("pel_reclaim_gap", abs(reclaimed - pel), at)
