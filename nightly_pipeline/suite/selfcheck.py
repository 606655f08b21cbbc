"""The engine self-check: a fixed-rate run against the built-in loopback echo target.

It proves, on the machine at hand, that the generator keeps its schedule (not
``generator_bound``), loses no request and sees sub-millisecond service times from a
trivial target — the precondition for trusting any latency verdict of the real suite.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime

from nightly_pipeline.loadgen import (
    ConstantArrivalRate,
    LoadResult,
    LoadTest,
    Progress,
    RunBounds,
    run_load,
)
from nightly_pipeline.loadgen.fleet_wire import FleetSettings
from nightly_pipeline.loadgen.scenario import GetPath
from nightly_pipeline.store import TestResultRecord
from nightly_pipeline.suite.results import build_test_record
from nightly_pipeline.testbed.echo import http_server

TEST_NAME = "engine_selfcheck"

THRESHOLDS = {
    "http_req_failed": ["rate==0"],
    "dropped_iterations": ["count==0"],
    "http_req_duration": ["p(95)<50"],
    "iteration_scheduling_lag": ["p(99)<25"],
}


@dataclass(frozen=True)
class SelfcheckConfig:
    rate: float = 500.0
    duration_s: float = 10.0
    workers: int = 1
    max_vus: int = 200
    fleet_broker: str | None = None
    """Generate on ``workers`` generator fleet workers (Celery, loadgen/fleet.py) on
    this Redis broker; they load the echo target on their own loopback, so they run on
    this host (the fleet's own check; a fleet of other hosts needs a target they reach)."""


@dataclass(frozen=True)
class SelfcheckOutcome:
    result: LoadResult
    record: TestResultRecord


def run_selfcheck(
    config: SelfcheckConfig,
    *,
    night: date,
    profile: str,
    run_id: str | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> SelfcheckOutcome:
    """Start the echo target, load it at ``config.rate``, stop it; return result and record."""
    started = datetime.now(UTC)
    with http_server() as target:
        result = run_load(
            LoadTest(
                ConstantArrivalRate(
                    rate=config.rate,
                    bounds=RunBounds(config.duration_s),
                    max_vus=config.max_vus,
                ),
                GetPath("/"),
                target.url,
                thresholds=THRESHOLDS,
                workers=config.workers,
                fleet=FleetSettings(config.fleet_broker) if config.fleet_broker else None,
            ),
            progress,
        )
    record = build_test_record(
        result,
        night=night,
        profile=profile,
        test=TEST_NAME,
        run_id=run_id or uuid.uuid4().hex,
        started_at=started,
        finished_at=datetime.now(UTC),
    )
    return SelfcheckOutcome(result, record)
