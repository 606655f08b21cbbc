"""Sampling a target: real HTTP /metrics (good, malformed, down) and real processes."""

from __future__ import annotations

import os
import tracemalloc

import httpx
import pytest

from nightly_pipeline.suite.sampling import (
    ProcessSample,
    ProcessSeries,
    Sampler,
    counter_delta,
    gauge_max,
    labelled_growth,
    parse_metrics,
    scrape,
    unreadable,
)
from tests.text_server import TextServer


@pytest.fixture
def metrics_server():
    server = TextServer("/metrics")
    yield server
    server.close()


def _exposition(delivered: float, lag: float) -> str:
    return (
        "# TYPE messaging_consumer_delivered_total counter\n"
        f"messaging_consumer_delivered_total {delivered}\n"
        "# TYPE messaging_consumer_lag_seconds gauge\n"
        f"messaging_consumer_lag_seconds {lag}\n"
        "# TYPE ws_close_total counter\n"
        f'ws_close_total{{code="1000"}} 2\nws_close_total{{code="1002"}} {lag}\n'
    )


def test_parse_reads_labels_and_refuses_malformed_text() -> None:
    parsed = parse_metrics(_exposition(5, 0.25))
    assert parsed[("ws_close_total", (("code", "1002"),))] == 0.25
    with pytest.raises(ValueError):
        parse_metrics("ws_close_total{code= 1")


def test_a_counter_by_label_sums_every_endpoint_and_skips_samples_without_it() -> None:
    """Test 14 words its evidence with the close codes of every endpoint summed; a
    sample with no ``code`` is not a code of its own."""
    one, two = TextServer("/metrics"), TextServer("/metrics")
    try:
        one.text = _exposition(5, 3)
        two.text = _exposition(1, 4) + "ws_close_total 9\n"
        with httpx.Client(trust_env=False) as client:
            now = scrape({"a": one.url, "b": two.url}, client, 0.0)
    finally:
        for server in (one, two):
            server.server.shutdown()
            server.server.server_close()
    assert now.by_label("ws_close_total", "code") == {"1000": 4.0, "1002": 7.0}
    assert now.by_label("messaging_consumer_lag_seconds", "code") == {}


def test_counters_and_gauges_over_scrapes(metrics_server) -> None:
    sampler = Sampler({"api": metrics_server.url}, {}, interval_s=3600)
    metrics_server.text = _exposition(10, 0.5)
    with sampler:
        metrics_server.text = _exposition(40, 2.0)
        sampler.sample_once()
        metrics_server.text = _exposition(3, 1.0)  # restarted: counts from zero again
    samples = sampler.samples
    assert counter_delta(samples, "messaging_consumer_delivered_total") == 30 + 3
    assert gauge_max(samples, "messaging_consumer_lag_seconds") == 2.0
    assert counter_delta(samples, "ws_close_total", code="1000") == 0
    assert counter_delta(samples, "no_such_metric") is None
    assert unreadable(samples) == {}


def _started_at(start: float, delivered: float) -> str:
    return f"process_start_time_seconds {start}\n" + _exposition(delivered, 0.0)


def test_a_restart_that_got_past_the_old_value_before_a_scrape_counts_from_zero(
    metrics_server,
) -> None:
    """Test 08's consumer reclaims its predecessor's pending entries as it starts: 148 by
    its first scrape, past the 88 of the process before it. Its new start time is what
    shows the restart (a counter that only went up would have grown by 60)."""
    sampler = Sampler({"consumer": metrics_server.url}, {}, interval_s=3600)
    metrics_server.text = _started_at(1000.0, 80)
    with sampler:
        metrics_server.text = _started_at(1000.0, 88)
        sampler.sample_once()
        metrics_server.text = _started_at(1050.0, 148)  # killed, started again
    assert counter_delta(sampler.samples, "messaging_consumer_delivered_total") == 8 + 148
    assert labelled_growth(sampler.samples, "ws_close_total", code="1002") == 0


def test_each_endpoints_restart_is_its_own(metrics_server) -> None:
    """Summed over endpoints, one process's restart is hidden by another's growth."""
    other = TextServer("/metrics")
    try:
        sampler = Sampler({"a": metrics_server.url, "b": other.url}, {}, interval_s=3600)
        metrics_server.text, other.text = _exposition(50, 0), _exposition(0, 0)
        with sampler:
            metrics_server.text, other.text = _exposition(10, 0), _exposition(60, 0)
    finally:
        other.close()
    # a: restarted, 10 from zero; b: 60 more. The sums alone (50 -> 70) say 20.
    assert counter_delta(sampler.samples, "messaging_consumer_delivered_total") == 70


def test_unreadable_endpoints_are_named_not_raised(metrics_server) -> None:
    metrics_server.text = "this is { not prometheus"
    urls = {"api": metrics_server.url, "consumer": "http://127.0.0.1:9/metrics"}
    with Sampler(urls, {}, interval_s=3600) as sampler:
        pass
    errors = unreadable(sampler.samples)
    assert "malformed Prometheus text" in errors["api"]
    assert "ConnectError" in errors["consumer"]
    assert gauge_max(sampler.samples, "messaging_consumer_lag_seconds") is None


def test_process_samples_follow_a_real_process_and_its_memory() -> None:
    with Sampler({}, {"self": os.getpid()}, interval_s=3600) as sampler:
        ballast = bytearray(64 * 2**20)  # 64 MiB more RSS
        ballast[::4096] = b"x" * len(ballast[::4096])
        sampler.sample_once()
    first, grown, *_ = sampler.samples.processes["self"]
    assert grown.rss_mb - first.rss_mb > 50
    assert grown.open_files > 0 and grown.cpu_s >= first.cpu_s
    del ballast


def test_process_samples_cost_a_few_bytes_each_whatever_the_run_length() -> None:
    """A sampler's per-process series (one sample a second, for the run's length) reads
    back every sample exactly, and holds 32 bytes a sample, not a ~180-byte object."""

    def sample(t: int) -> ProcessSample:
        return ProcessSample(t * 1.001, 200.0 + t / 7, t / 3, 40 + t % 5)

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        series = ProcessSeries()
        for t in range(3600):  # an hour, a sample a second, each a new object as taken
            series.append(sample(t))
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    taken = [sample(t) for t in range(3600)]
    assert list(series) == taken and series == taken and series[-2:] == taken[-2:]
    assert held < 40 * len(taken), held
    with Sampler({}, {"self": os.getpid()}, interval_s=3600) as sampler:
        pass
    assert isinstance(sampler.samples.processes["self"], ProcessSeries)
