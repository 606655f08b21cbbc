"""Test 11, cascading failure: messages posted at a fixed rate while PostgreSQL is
killed, then Redis, then both are started again. While they are down the platform must
degrade, not fail: only 503s (no other 5xx, no request left without an answer), ``/readyz``
naming the dependency that is down, no process of its own crashing; after the restore it
must be steady again within 60 s, with every acknowledged message delivered once, intact
(Redis restarts from its append-only file; PostgreSQL from crash recovery).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from nightly_pipeline.loadgen import LoadResult
from nightly_pipeline.suite.chaos_run import (
    ChaosRun,
    FaultStep,
    chaos_backend,
    python_activity,
    record_crashes,
    run_chaos_messaging,
)
from nightly_pipeline.suite.context import ScenarioContext
from nightly_pipeline.suite.messaging_load import MessagingKnobs
from nightly_pipeline.suite.spec import Check, TestSpec

PLATFORM = ("api", "dispatcher", "consumer")
"""The platform's own processes: none may crash when a datastore goes away."""


@dataclass(frozen=True)
class CascadingFailureKnobs:
    postgres_at: float = 0.2  # of the load's length
    redis_at: float = 0.35
    restore_at: float = 0.65  # both started again
    probe_after_s: float = 1.0  # /readyz read this long after each kill
    messaging: MessagingKnobs = field(
        default_factory=lambda: MessagingKnobs(
            payload_bytes=1024, conversations=10, participants=3, pool=13, drain_s=90.0
        )
    )


KNOBS = CascadingFailureKnobs()

SPEC = TestSpec(
    id="11",
    name="cascading_failure",
    duration_s=900,
    rate=200,
    knobs=KNOBS,
    description="kill PostgreSQL, then Redis, restore both: 503s, not crashes; recovery",
    assets=("degradation", "recovery", "delivery"),
    checks=(
        Check(
            "only_503_while_down",
            on="degradation",
            metric="fault_errors_not_503",
            expr="count==0",
            severity="error",
            plan="Services return 503 (not crash) when deps down",
            unit="count",
        ),
        Check(
            "readyz_names_the_dependency",
            on="degradation",
            metric="readyz_unnamed",
            expr="count==0",
            severity="error",
            plan="Health checks report degraded state",
            unit="count",
        ),
        Check(
            "platform_never_crashes",
            on="degradation",
            metric="processes_crashed",
            expr="count==0",
            severity="error",
            plan="Verify: System never fully crashes",
            unit="count",
        ),
        Check(
            "recovers_within_60s",
            on="recovery",
            metric="time_to_recover_s",
            expr="max<60",
            severity="error",
            plan="Auto-recovery within 60s of service restoration",
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
        Check(
            "zero_corrupted_messages",
            on="delivery",
            metric="delivery_corrupted",
            expr="count==0",
            severity="error",
            plan="No data corruption",
            unit="count",
        ),
    ),
)


def scenario(ctx: ScenarioContext[CascadingFailureKnobs]) -> LoadResult:
    knobs, length = ctx.knobs, ctx.duration_s
    steps = [
        _kill(name, at * length, (knobs.restore_at - at) * length, knobs.probe_after_s)
        for name, at in (("postgres", knobs.postgres_at), ("redis", knobs.redis_at))
    ]
    backend = chaos_backend(ctx)
    before = dict(backend.pids())
    run = run_chaos_messaging(ctx, knobs.messaging, steps)
    record_crashes(ctx, run, backend, before, PLATFORM)
    record_degradation(run)
    return run.result


def _kill(name: str, at_s: float, hold_s: float, probe_after_s: float) -> FaultStep:
    probe = python_activity("probe", f"readyz-names-{name}", "readyz_names", dependency=name)
    probe["pauses"] = {"before": probe_after_s}
    return FaultStep(f"{name}-down", "kill", {"process": name}, at_s, hold_s, [probe])


def record_degradation(run: ChaosRun) -> None:
    rec, at = run.result.recorder, time.perf_counter()
    not_503 = sum(
        rec.stats(key.name, dict(key.tags), exact=True).get("count", 0)
        for key in rec.metric_keys()
        if key.name == "fault_errors" and dict(key.tags).get("status", "503") != "503"
    )
    rec.counter("fault_errors_not_503", at, value=float(not_503))
    unnamed = [
        name
        for name in ("postgres", "redis")
        if run.probe_output(f"readyz-names-{name}") is not True
    ]
    rec.counter("readyz_unnamed", at, value=float(len(unnamed)))
