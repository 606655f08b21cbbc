"""Test 10, pool exhaustion: messages posted at a fixed rate while a lock held on the
messages table (``pg_lock``: a stuck migration or batch job) makes every write wait, so
the API's PostgreSQL pool (20 connections) fills with waiting requests. The API must
time its waits out (``storage_errors_total{type="TimeoutError"}``), open its circuit
breaker, answer 503 instead of hanging, survive (the same pid), and close the breaker
again once the lock is gone; the pipeline must be steady again within 60 s and every
acknowledged message delivered.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nightly_pipeline.loadgen import LoadResult
from nightly_pipeline.suite.chaos_run import (
    FaultStep,
    chaos_backend,
    record_crashes,
    run_chaos_messaging,
)
from nightly_pipeline.suite.context import ScenarioContext
from nightly_pipeline.suite.messaging_load import MessagingKnobs
from nightly_pipeline.suite.spec import Check, TestSpec


@dataclass(frozen=True)
class PoolExhaustionKnobs:
    lock_at: float = 0.15  # of the load's length
    lock_for: float = 0.3  # of the load's length
    min_length_s: float = 15.0
    """The load runs at least this long, whatever the profile: the pool fills (20
    connections), waits time out (2 s), the breaker opens and stays open (5 s), and
    traffic must still flow after that for its trial call to close it again."""
    table: str = "messages"  # every POST /v1/messages writes it
    messaging: MessagingKnobs = field(
        default_factory=lambda: MessagingKnobs(
            payload_bytes=1024, conversations=10, participants=3, pool=13, drain_s=60.0
        )
    )


KNOBS = PoolExhaustionKnobs()

SPEC = TestSpec(
    id="10",
    name="pool_exhaustion",
    duration_s=600,
    rate=200,
    knobs=KNOBS,
    description="a held table lock fills the PostgreSQL pool; timeouts, breaker, recovery",
    assets=("latency", "storage", "recovery", "delivery"),
    checks=(
        Check(
            "timeouts_counted",
            on="storage",
            metric="storage_errors_total{type:TimeoutError}",
            expr="count>0",
            severity="error",
            plan="storage_errors_total{type=TimeoutError} > 0",
            unit="count",
        ),
        Check(
            "breaker_opens",
            on="storage",
            metric="storage_circuit_breaker_transitions_total{state:open}",
            expr="count>0",
            severity="error",
            plan="storage_circuit_breaker_transitions{state=open} > 0",
            unit="count",
        ),
        Check(
            "breaker_closes_again",
            on="storage",
            metric="storage_circuit_breaker_transitions_total{state:closed}",
            expr="count>0",
            severity="error",
            plan="storage_circuit_breaker_transitions{state=closed} > 0 (recovery)",
            unit="count",
        ),
        Check(
            "api_never_crashes",
            on="recovery",
            metric="processes_crashed",
            expr="count==0",
            severity="error",
            plan="Validate recovery after load drops (no crash)",
            unit="count",
        ),
        Check(
            "recovers_within_60s",
            on="recovery",
            metric="time_to_recover_s",
            expr="max<60",
            severity="warn",
            plan="P95 latency spike -> recovery",
            unit="s",
        ),
        Check(
            "zero_message_loss",
            on="delivery",
            metric="delivery_lost",
            expr="count==0",
            severity="error",
            plan="Every acknowledged message delivered after recovery",
            unit="count",
        ),
    ),
)


def scenario(ctx: ScenarioContext[PoolExhaustionKnobs]) -> LoadResult:
    knobs = ctx.knobs
    length = max(ctx.duration_s, knobs.min_length_s)
    lock = FaultStep(
        "messages-lock",
        "pg_lock",
        {"table": knobs.table},
        at_s=knobs.lock_at * length,
        hold_s=knobs.lock_for * length,
    )
    backend = chaos_backend(ctx)
    before = dict(backend.pids())
    run = run_chaos_messaging(ctx, knobs.messaging, [lock], duration_s=length)
    record_crashes(ctx, run, backend, before, ["api"])
    return run.result
