"""Memory growth from what the suite could see of the target (``suite.memory``), and a
check the target cannot support carried through judging and the store rows as "not
measurable on this target": neither passed nor failed, never failing the test.

Pure data: the samples are built here as the sampler records them (the end-to-end runs
against the embedded platform are in test_memory_from_metrics.py)."""

from __future__ import annotations

import math

import pytest

from nightly_pipeline.loadgen import Recorder
from nightly_pipeline.loadgen.thresholds import NOT_MEASURABLE
from nightly_pipeline.suite.catalog import select_tests
from nightly_pipeline.suite.memory import RSS_GAUGE, memory_growth, rss_from_metrics
from nightly_pipeline.suite.results import threshold_rows
from nightly_pipeline.suite.runner import (
    add_target_metrics,
    blocking_failed,
    describe_failures,
    judge,
)
from nightly_pipeline.suite.sampling import ProcessSample, Samples, Scrape

(SOAK,) = select_tests("01")
URLS = {"api": "http://127.0.0.1:1/metrics", "consumer": "http://127.0.0.1:2/metrics"}
MB = 2.0**20


def _scrapes(rss_mb: dict[str, list[float]], errors: dict[str, str] | None = None) -> list[Scrape]:
    """One scrape a second; endpoint -> its RSS gauge per second (a NaN: the endpoint
    answered without the gauge), each endpoint also exporting a lag gauge."""
    seconds = max(len(v) for v in rss_mb.values())
    out = []
    for t in range(seconds):
        values = {}
        for endpoint, series in rss_mb.items():
            samples = {("messaging_consumer_lag_seconds", ()): 0.1}
            if not math.isnan(series[t]):
                samples[(RSS_GAUGE, ())] = series[t] * MB
            values[endpoint] = samples
        out.append(Scrape(float(t), values, errors or {}))
    return out


def test_rss_is_read_per_endpoint_from_the_process_collector_gauge() -> None:
    samples = Samples(scrapes=_scrapes({"api": [100.0, 101.0], "consumer": [math.nan] * 2}))
    assert rss_from_metrics(samples) == {"api": [(0.0, 100.0), (1.0, 101.0)]}


@pytest.mark.parametrize(
    ("api", "consumer", "growth"),
    [
        ([100.0] * 20, [50.0] * 20, 0.0),  # flat
        ([100.0 + t for t in range(20)], [50.0] * 20, pytest.approx(15 / 104 * 100, rel=0.02)),
        ([100.0] * 20, [50.0 + t for t in range(20)], pytest.approx(15 / 54 * 100, rel=0.02)),
    ],
)
def test_without_pids_growth_is_the_largest_of_the_endpoints(api, consumer, growth) -> None:
    """The largest post-warm-up growth of any endpoint: a leak in any one process shows."""
    memory = memory_growth(Samples(scrapes=_scrapes({"api": api, "consumer": consumer})), URLS)
    assert (memory.source, memory.not_measurable) == ("/metrics", "")
    assert memory.growth_pct == growth


def test_pids_when_the_suite_has_them_win_over_metrics() -> None:
    points = [ProcessSample(float(t), 200.0, 0.0, 0) for t in range(10)]
    samples = Samples(
        scrapes=_scrapes({"api": [100.0 + 10 * t for t in range(10)]}),
        processes={"api": points},
    )
    memory = memory_growth(samples, URLS)
    assert (memory.source, memory.growth_pct) == ("pids", 0.0)


def test_endpoints_that_answered_without_the_gauge_make_memory_not_measurable() -> None:
    samples = Samples(scrapes=_scrapes({"api": [math.nan] * 5, "consumer": [math.nan] * 5}))
    memory = memory_growth(samples, URLS)
    assert memory.growth_pct is None
    assert RSS_GAUGE in memory.not_measurable and "api, consumer" in memory.not_measurable


def test_a_target_without_metrics_urls_is_not_measurable_and_says_how_to_fix_it() -> None:
    memory = memory_growth(Samples(scrapes=[Scrape(0.0, {}, {})]), {})
    assert memory.growth_pct is None and "metrics_urls" in memory.not_measurable


def test_an_unreadable_endpoint_is_a_failure_not_a_skip() -> None:
    """The consumer's /metrics never answered: maybe it has the gauge; the check must fail
    (named unreadable), not be excused."""
    scrapes = _scrapes({"api": [math.nan] * 5}, errors={"consumer": "ConnectError"})
    memory = memory_growth(Samples(scrapes=scrapes), URLS)
    assert (memory.growth_pct, memory.not_measurable) == (None, "")


def _judged(samples: Samples):
    recorder = Recorder(0.0)
    evidence: dict[str, list[str]] = {}
    note = lambda metric, line: evidence.setdefault(metric, []).append(line)  # noqa: E731
    unsupported = add_target_metrics(recorder, SOAK.spec, samples, 1.0, URLS, note)
    return judge(SOAK.spec, recorder, evidence, unsupported)


def test_a_not_measurable_check_is_neither_passed_nor_failed_and_fails_nothing() -> None:
    samples = Samples(scrapes=_scrapes({"api": [math.nan] * 5, "consumer": [math.nan] * 5}))
    checks, results = _judged(samples)
    memory = next(c for c in checks if c.check.name == "memory_growth_under_10pct")
    assert memory.check.severity == "error"  # a blocking check ...
    assert not memory.passed and not memory.failed  # ... skipped, visibly
    assert RSS_GAUGE in memory.not_measurable and math.isnan(memory.observed)
    assert not blocking_failed((memory,))
    detail = describe_failures((memory,), {})
    assert f"memory_growth_under_10pct (process_rss_growth_pct max<10): {NOT_MEASURABLE}" in detail
    (row,) = [r for r in threshold_rows(results) if r.metric == "process_rss_growth_pct"]
    # stored as the check's own severity, not judged (passed NULL), with the reason
    assert (row.severity, row.passed, row.observed) == ("error", None, None)
    assert row.not_measurable and RSS_GAUGE in row.not_measurable


def test_a_measured_leak_from_metrics_fails_the_blocking_memory_check() -> None:
    leaking = [100.0 + 2 * t for t in range(30)]
    checks, results = _judged(Samples(scrapes=_scrapes({"api": leaking, "consumer": [50.0] * 30})))
    memory = next(c for c in checks if c.check.name == "memory_growth_under_10pct")
    assert memory.failed and memory.observed > 10 and not memory.not_measurable
    assert blocking_failed((memory,))
    (row,) = [r for r in threshold_rows(results) if r.metric == "process_rss_growth_pct"]
    assert (row.passed, row.severity) == (False, "error")


def test_a_failing_memory_check_names_the_process_that_grew_and_from_what_to_what() -> None:
    """Seen at full length: "observed 20.15" and an empty detail, three processes watched."""
    points = {
        "api": [ProcessSample(float(t), 100.0, 0.0, 0) for t in range(30)],
        "consumer": [ProcessSample(float(t), 40.0 + t, 0.0, 0) for t in range(30)],
        "dispatcher": [ProcessSample(float(t), 50.0 + t / 10, 0.0, 0) for t in range(30)],
    }
    checks, _ = _judged(Samples(scrapes=[], processes=points))
    memory = next(c for c in checks if c.check.name == "memory_growth_under_10pct")
    assert memory.failed
    top, others = memory.detail.split("; ")[-2:]
    assert top.startswith("consumer (pids): RSS 46.0 → 69.0 MB")
    assert others == "others: dispatcher +4.5 %, api +0.0 %"


def test_a_passing_memory_check_carries_no_detail() -> None:
    flat = {"api": [ProcessSample(float(t), 100.0, 0.0, 0) for t in range(30)]}
    checks, _ = _judged(Samples(scrapes=[], processes=flat))
    memory = next(c for c in checks if c.check.name == "memory_growth_under_10pct")
    assert memory.passed and memory.detail == ""
