"""A seeded history written into a real store: what the history assets and sensors read."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from nightly_pipeline.store import MetricRow, MetricStore, TestResultRecord

FIRST_NIGHT = date(2026, 11, 1)
STEP_NIGHT = date(2026, 11, 16)
"""From this night on, the soak test's p95 latency is 25 % worse."""


def seed_history(path: Path, nights: int = 22, seed: int = 11) -> MetricStore:
    """``nights`` nights of two tests at 3 % noise; the soak's p95 steps up at STEP_NIGHT."""
    rng = random.Random(seed)
    store = MetricStore(path)
    for n in range(nights):
        night = FIRST_NIGHT + timedelta(days=n)
        started = datetime(night.year, night.month, night.day, 2, 10, tzinfo=UTC)
        step = 1.25 if night >= STEP_NIGHT else 1.0
        for test, metrics in {
            "01_message_soak": {
                "http_req_duration.p95": 40.0 * step,
                "http_reqs.rate": 500.0,
            },
            "02_conversation_crud": {"http_req_duration.p95": 20.0, "http_reqs.rate": 200.0},
        }.items():
            rows = tuple(
                MetricRow(name, value * rng.gauss(1.0, 0.03), "ms" if "duration" in name else "1/s")
                for name, value in metrics.items()
            )
            store.write_test_result(
                TestResultRecord(
                    night=night,
                    profile="nightly",
                    test=test,
                    run_id=f"run-{night}",
                    status="passed",
                    started_at=started,
                    finished_at=started + timedelta(minutes=30),
                    metrics=rows,
                )
            )
    return store
