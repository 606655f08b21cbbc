"""Turn a load run into the store's records: summary metrics, per-second series, verdicts.

Metric names in the store are ``<k6 metric>.<stat>`` (``http_req_duration.p95``) with
the submetric's tags in ``tags``, so every night's figures line up in long format.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime

from nightly_pipeline.loadgen import LoadResult, ThresholdResult
from nightly_pipeline.loadgen.metrics_stats import COUNTER, GAUGE, RATE, TREND
from nightly_pipeline.store import MetricRow, SeriesRow, TestResultRecord, ThresholdRow

STATS_BY_KIND: dict[str, tuple[tuple[str, str, str], ...]] = {
    # (stat in the recorder's flat map, name in the store, unit)
    TREND: (
        ("avg", "avg", "ms"),
        ("min", "min", "ms"),
        ("med", "p50", "ms"),
        ("p(90)", "p90", "ms"),
        ("p(95)", "p95", "ms"),
        ("p(99)", "p99", "ms"),
        ("max", "max", "ms"),
        ("count", "count", "count"),
    ),
    COUNTER: (("count", "count", "count"), ("rate", "rate", "1/s")),
    RATE: (("rate", "rate", "ratio"), ("passes", "true", "count"), ("fails", "false", "count")),
    GAUGE: (("value", "value", ""), ("min", "min", ""), ("max", "max", "")),
}


def metric_rows(result: LoadResult) -> list[MetricRow]:
    """Whole-run figures of every (metric, tags) the run recorded, plus engine health."""
    rec = result.recorder
    rows: list[MetricRow] = []
    for key in rec.metric_keys():
        tags = dict(key.tags)
        stats = rec.stats(key.name, tags, exact=True)
        for stat, name, unit in STATS_BY_KIND[rec.kind(key.name)]:
            value = stats.get(stat)
            if value is not None:
                rows.append(MetricRow(f"{key.name}.{name}", float(value), unit, tags))
    rows.append(MetricRow("engine.scheduling_lag.p99", result.scheduling_lag_p99_ms, "ms"))
    rows.append(MetricRow("engine.generator_bound", float(result.generator_bound), "bool"))
    return rows


def series_rows(result: LoadResult) -> list[SeriesRow]:
    """Per-second rows; HTTP latency rows carry that second's failed requests as errors."""
    raw = result.recorder.series_rows()
    failed_per_second = {
        r["second"]: round(r["value"] * r["count"])
        for r in raw
        if r["metric"] == "http_req_failed" and not r["tags"]
    }
    out = []
    for r in raw:
        errors = r["errors"]
        if r["metric"].startswith("http_req_") and not r["tags"] and r["p50"] is not None:
            errors = failed_per_second.get(r["second"], 0)
        out.append(
            SeriesRow(
                r["metric"],
                r["second"],
                r["tags"],
                r["count"],
                errors,
                r["mean"],
                r["p50"],
                r["p95"],
                r["p99"],
                r["max"],
                r["value"],
            )
        )
    return out


def threshold_rows(
    results: Iterable[ThresholdResult],
    severity: str = "error",
    severity_of: Mapping[tuple[str, str], str] | None = None,
) -> list[ThresholdRow]:
    """Store rows of threshold verdicts; ``severity_of`` maps (selector, expression) to a
    check's severity, ``severity`` is the default."""
    return [
        ThresholdRow(
            t.metric,
            t.expression,
            t.scope,  # type: ignore[arg-type]
            t.passed,
            t.observed,
            t.window_start,
            t.window_end,
            (severity_of or {}).get((t.selector, t.expression), severity),
            dict(t.tags),
        )
        for t in results
    ]


def build_test_record(
    result: LoadResult,
    *,
    night: date,
    profile: str,
    test: str,
    run_id: str,
    started_at: datetime,
    finished_at: datetime,
) -> TestResultRecord:
    """The whole record of one test for one night, ready for ``MetricStore.write_test_result``."""
    failed = [t for t in result.thresholds if not t.passed]
    if result.aborted:
        detail = f"aborted: {result.aborted}"
    elif failed:
        detail = "; ".join(f"{t.selector} {t.expression} observed {t.observed:g}" for t in failed)
    else:
        detail = ""
    return TestResultRecord(
        night=night,
        profile=profile,
        test=test,
        run_id=run_id,
        status="passed" if result.passed else "failed",
        started_at=started_at,
        finished_at=finished_at,
        detail=detail,
        generator_bound=result.generator_bound,
        metrics=tuple(metric_rows(result)),
        series=tuple(series_rows(result)),
        thresholds=tuple(threshold_rows(result.thresholds)),
    )
