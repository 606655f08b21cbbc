"""A writer process for test_store_concurrency: waits for "go", then writes as fast as it can.

Usage: python concurrent_writer.py DB WORKER COUNT N_METRICS N_SECONDS

Prints "ready" once imported, waits for a line on stdin, opens the store (so that the
creation of the file races too), writes COUNT results for nights 2024-01-01 + i of test
"t-WORKER", and prints a JSON line with the start and end time of every write.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from nightly_pipeline.store import MetricRow, MetricStore, SeriesRow, TestResultRecord, ThresholdRow


def record(worker: str, i: int, n_metrics: int, n_seconds: int) -> TestResultRecord:
    night = date(2024, 1, 1) + timedelta(days=i)
    started = datetime(night.year, night.month, night.day, 2, 10, tzinfo=UTC)
    return TestResultRecord(
        night=night,
        profile="ci",
        test=f"t-{worker}",
        run_id=f"{worker}-{i}",
        status="passed",
        started_at=started,
        finished_at=started + timedelta(seconds=n_seconds),
        metrics=tuple(MetricRow(f"m{k}", float(i), "ms") for k in range(n_metrics)),
        series=tuple(
            SeriesRow(f"m{k}", s, count=s, p95=float(i))
            for k in range(n_metrics)
            for s in range(n_seconds)
        ),
        thresholds=(ThresholdRow("m0", "p(95)<100", "run", True, float(i)),),
    )


def main(argv: list[str]) -> None:
    db, worker, count, n_metrics, n_seconds = argv
    records = [record(worker, i, int(n_metrics), int(n_seconds)) for i in range(int(count))]
    print("ready", flush=True)
    sys.stdin.readline()
    store = MetricStore(Path(db))
    spans = []
    for rec in records:
        began = time.time()
        store.write_test_result(rec)
        spans.append((began, time.time()))
    print(json.dumps({"worker": worker, "spans": spans}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
