"""Hand-built frames for the report tests: two tests over eight nights, one regression
(with change nights, a first bad night and a failed night), baselines and one series.
Two profiles on one night: see test_report_profiles (rows written through the store)."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

NIGHT = date(2026, 11, 20)
NIGHTS = [NIGHT - timedelta(days=i) for i in range(7, -1, -1)]  # 8 nights, oldest first
EVIL = '<script>console.error("pwned")</script><img src=x onerror="console.error(1)">'
SOAK = "message_soak"
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


def series(
    seconds: int = 30, *, rss: bool = True, test: str = SOAK, profile: str = "ci"
) -> pl.DataFrame:
    """MetricStore.series columns for one test: http_reqs, latency, failures, RSS."""
    rows = []
    for s in range(seconds):
        base = {"tags": "{}", "second": s, "count": None, "errors": None, "mean": None}
        base |= {"p50": None, "p95": None, "p99": None, "max": None, "value": None}
        rows.append(base | {"metric": "http_reqs", "count": 100, "value": 100.0 + s % 5})
        rows.append(
            base | {"metric": "http_req_duration", "count": 100, "errors": s % 2,
                    "mean": 21.0, "p50": 20.0, "p95": 50.0 + s, "p99": 80.0 + s, "max": 120.0}
        )  # fmt: skip
        rows.append(base | {"metric": "http_req_failed", "count": 100, "value": (s % 2) / 100})
        if rss:
            rows.append(base | {"metric": "resources.rss_mb", "tags": '{"process":"api"}',
                                "value": 100.0 + s * 0.1})  # fmt: skip
    frame = pl.DataFrame(rows)
    head = {"night": NIGHT, "profile": profile, "test": test}
    return frame.select(*(pl.lit(v).alias(k) for k, v in head.items()), pl.all())


def nights() -> pl.DataFrame:
    rows = [(NIGHT, 2, 1, 1, 0), (NIGHTS[6], 1, 1, 0, 0), (NIGHTS[0], 2, 2, 0, 0)]
    schema = ["night", "tests", "passed", "failed", "errored"]
    return pl.DataFrame(rows, schema=schema, orient="row")
