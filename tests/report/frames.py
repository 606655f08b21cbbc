"""Frames for the report tests: two tests over eight nights, one regression (with change
nights, a first bad night and a failed night), baselines and one in-run series.

History, verdicts and baselines are hand-built with the metric names a run stores
(``suite.results.metric_rows``); the in-run series is a real run's rows written through
the store (``tests.real_rows``), which has no RSS series: no run writes one. Two profiles on one
night: see test_report_profiles."""

from __future__ import annotations

import tempfile
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from nightly_pipeline.store import MetricStore
from tests.real_rows import RATE, Run, write_run

NIGHT = date(2026, 11, 20)
NIGHTS = [NIGHT - timedelta(days=i) for i in range(7, -1, -1)]  # 8 nights, oldest first
EVIL = '<script>console.error("pwned")</script><img src=x onerror="console.error(1)">'
SOAK = "01_message_soak"
CRUD = f"crud_{EVIL}"
FAILED_NIGHT = NIGHTS[5]  # 2026-11-18: message_soak failed
FIRST_BAD = NIGHTS[4]  # 2026-11-17: the step up
KEY_METRICS = ("http_req_duration.p95", "http_req_duration.p99", "http_req_failed.rate")
OTHER_METRICS = ("http_req_duration.p50", "engine.generator_bound")
UNITS = {"http_req_failed.rate": "ratio", "engine.generator_bound": "bool"}


def _value(test: str, metric: str, i: int) -> float:
    base = {"p50": 20.0, "p95": 50.0, "p99": 80.0}.get(metric.rsplit(".", 1)[1], 0.001)
    if test == SOAK and metric == "http_req_duration.p95" and i >= 4:
        return base * 1.3  # the regression: +30 % from FIRST_BAD on
    return base * (1 + 0.01 * (i % 3))


def history() -> pl.DataFrame:
    rows = []
    for i, night in enumerate(NIGHTS):
        for test in (SOAK, CRUD):
            status = "failed" if (test == SOAK and night == FAILED_NIGHT) else "passed"
            for metric in KEY_METRICS + OTHER_METRICS:
                value = _value(test, metric, i)
                unit = UNITS.get(metric, "ms")
                rows.append((night, "ci", test, metric, "{}", value, unit, status))
    # A tagged metric and a NaN night: neither charted by default.
    rows.append(
        (NIGHT, "ci", SOAK, "http_req_duration.p95", '{"name":"post"}', 51.0, "ms", "passed")
    )
    rows.append(
        (NIGHTS[2], "ci", CRUD, "http_req_duration.p50", "{}", float("nan"), "ms", "passed")
    )
    schema = ["night", "profile", "test", "metric", "tags", "value", "unit", "status"]
    return pl.DataFrame(rows, schema=schema, orient="row")


def results() -> pl.DataFrame:
    rows = [
        (NIGHT, "ci", SOAK, "failed", 31.5, False, 2, "p(95)<100 failed\n<b>bold?</b>", "r1"),
        (NIGHT, "ci", CRUD, "passed", 12.0, False, 0, "", "r1"),
        (NIGHTS[6], "ci", SOAK, "passed", 30.0, False, 0, "", "r0"),  # another night
    ]
    schema = [
        "night", "profile", "test", "status", "duration_s", "generator_bound",
        "failed_thresholds", "detail", "run_id",
    ]  # fmt: skip
    return pl.DataFrame(rows, schema=schema, orient="row")


def verdicts() -> pl.DataFrame:
    rows = []
    for test in (SOAK, CRUD):
        for metric in KEY_METRICS + OTHER_METRICS:
            regressed = test == SOAK and metric == "http_req_duration.p95"
            rows.append(
                {
                    "night": NIGHT, "profile": "ci", "test": test, "metric": metric,
                    "tags": "{}", "direction": "lower",
                    "verdict": "regression" if regressed else "stable",
                    "first_bad_night": FIRST_BAD if regressed else None,
                    "magnitude": 0.3 if regressed else 0.01,
                    "confidence": 0.9999 if regressed else 0.2,
                    "baseline_mean": 50.0, "latest_value": 65.0, "nights": 8,
                    "skipped_nights": 0, "plan_rule_fired": regressed,
                    "change_nights": [NIGHTS[2], FIRST_BAD] if regressed else [],
                }
            )  # fmt: skip
    rows[-1]["verdict"] = "improvement"  # CRUD engine.generator_bound: non-key, still charted
    rows[-1]["magnitude"] = -0.2
    return pl.DataFrame(rows, schema_overrides={"change_nights": pl.List(pl.Date)})


def baselines() -> pl.DataFrame:
    rows = []
    for test in (SOAK, CRUD):
        for metric in KEY_METRICS:
            mean = _value(test, metric, 0)
            rows.append(
                {
                    "computed_for": NIGHT, "profile": "ci", "test": test, "metric": metric,
                    "tags": "{}", "mean": mean, "std": mean * 0.02, "low": mean * 0.96,
                    "high": mean * 1.04, "n": 4, "first_night": NIGHTS[0],
                    "last_night": NIGHTS[3],
                }
            )  # fmt: skip
    return pl.DataFrame(rows)


SERIES_LATENCY_MS = 50.0
FAILING_EVERY = 5
"""In the series' run every 5th request of a second fails: 2 of its 10 requests."""
RSS_MB = (100.0, 100.5, 101.0, 102.0, 103.0, 104.0)
"""The api process's RSS as the sampler read it: the soak's run stores its growth only."""


def series(
    seconds: int = 30, *, test: str = SOAK, profile: str = "ci", compacted: bool = False
) -> pl.DataFrame:
    """``MetricStore.series`` of one run of ``test`` that ``tests.real_rows`` wrote: per
    second http_reqs, http_req_duration (every request SERIES_LATENCY_MS) and
    http_req_failed (every FAILING_EVERY-th request). The soak's run also stores its RSS
    growth, as a whole-run metric: no run has a per-second RSS series. ``compacted``:
    as the store holds it once a newer night made it old and ``compact`` ran (per-minute
    rows)."""
    run = Run(
        profile, test, seconds=seconds, latency_ms=SERIES_LATENCY_MS,
        failing_every=FAILING_EVERY, rss_mb=RSS_MB if test == SOAK else (),
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        store = MetricStore(Path(tmp) / "metrics.duckdb")
        write_run(store, NIGHT, run)
        if compacted:
            write_run(store, NIGHT + timedelta(days=1), run)
            store.compact(keep_nights=1)
        return store.series(NIGHT, test, profile)


FAILED_PER_SECOND = RATE // FAILING_EVERY


def nights() -> pl.DataFrame:
    rows = [(NIGHT, 2, 1, 1, 0), (NIGHTS[6], 1, 1, 0, 0), (NIGHTS[0], 2, 2, 0, 0)]
    schema = ["night", "tests", "passed", "failed", "errored"]
    return pl.DataFrame(rows, schema=schema, orient="row")
