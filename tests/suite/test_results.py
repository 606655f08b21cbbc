"""A load result becomes store records: names, units, per-second errors, verdict."""

from __future__ import annotations

from datetime import UTC, date, datetime

from nightly_pipeline.loadgen import LoadResult, Recorder
from nightly_pipeline.loadgen.thresholds import ThresholdEvaluator, parse_thresholds
from nightly_pipeline.suite.results import build_test_record


def _result(thresholds: dict) -> LoadResult:
    rec = Recorder(run_start=0.0)
    for i in range(10):  # second 0: 10 requests, 2 failed; second 1: 5 requests
        rec.trend("http_req_duration", 10.0 + i, 0.5)
        rec.rate("http_req_failed", i < 2, 0.5)
        rec.counter("http_reqs", 0.5)
    for _ in range(5):
        rec.trend("http_req_duration", 50.0, 1.5, {"name": "login"})
        rec.rate("http_req_failed", False, 1.5)
        rec.counter("http_reqs", 1.5)
    rec.close_all()
    evaluator = ThresholdEvaluator(parse_thresholds(thresholds), rec)
    return LoadResult(rec, evaluator.final(), {}, None, 3.0, False)


def _record(result: LoadResult):
    now = datetime.now(UTC)
    return build_test_record(
        result,
        night=date(2026, 11, 20),
        profile="ci",
        test="t",
        run_id="r",
        started_at=now,
        finished_at=now,
    )


def test_metrics_are_named_stat_by_stat_with_units_and_tags() -> None:
    record = _record(_result({"http_req_duration": ["p(95)<100"]}))
    metrics = {(m.metric, tuple(sorted(m.tags.items()))): m for m in record.metrics}
    assert metrics[("http_reqs.count", ())].value == 15
    assert metrics[("http_req_failed.rate", ())].value == 2 / 15
    assert metrics[("http_req_duration.max", ())].unit == "ms"
    assert metrics[("http_req_duration.p50", (("name", "login"),))].value == 50.0
    assert metrics[("engine.scheduling_lag.p99", ())].value == 3.0
    assert record.status == "passed" and record.detail == ""


def test_a_gauge_is_stored_in_the_unit_its_name_says() -> None:
    """Seen in a real report before: ``RSS growth 0.543`` with no unit."""
    result = _result({})
    for name in (
        "process_rss_growth_pct",
        "time_to_recover_s",
        "frame_growth_per_s",
        "pel_at_kill",
    ):
        result.recorder.gauge(name, 1.0, 2.5)
    record = _record(result)
    units = {m.metric: m.unit for m in record.metrics}
    assert units["process_rss_growth_pct.value"] == "%"
    assert units["process_rss_growth_pct.max"] == "%"
    assert units["time_to_recover_s.value"] == "s"
    assert units["frame_growth_per_s.value"] == "1/s"
    assert units["pel_at_kill.value"] == ""  # the name does not say


def test_latency_series_carry_the_seconds_failed_requests() -> None:
    record = _record(_result({}))
    rows = {(s.metric, s.second): s for s in record.series if not s.tags}
    assert rows[("http_req_duration", 0)].errors == 2
    assert rows[("http_req_duration", 1)].errors == 0
    assert rows[("http_req_duration", 0)].count == 10


def test_a_failed_threshold_fails_the_test_and_says_why() -> None:
    record = _record(_result({"http_req_failed": ["rate<0.1"]}))
    assert record.status == "failed"
    assert "http_req_failed rate<0.1 observed 0.133" in record.detail
    (row,) = record.thresholds
    assert not row.passed and row.scope == "run"
