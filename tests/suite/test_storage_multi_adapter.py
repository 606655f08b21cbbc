"""Test 07 against the embedded platform (ci profile): healthy, it passes; with
PostgreSQL cut at its fault proxy for part of the run, the breaker opens and the blocking
"no breaker opens" check fails. The derived figures are tested on fabricated scrapes first."""

from __future__ import annotations

import threading

import pytest

from nightly_pipeline.chaos import ProxyControl
from nightly_pipeline.loadgen import Recorder
from nightly_pipeline.suite.catalog import select_tests
from nightly_pipeline.suite.sampling import Samples, Scrape, labelled_growth
from tests.suite.platforms import assert_blocking_passed, ci_platform, run_ci, scenario_module

STORAGE = select_tests("07")[0]
storage = scenario_module("07")
COLD_EVERY = storage.KNOBS.cold_every
OPEN = ("storage_circuit_breaker_transitions_total", (("adapter", "pg"), ("state", "open")))


def _scrape(at: float, opens: float | None = None, **counters: float) -> Scrape:
    api = {(name, ()): v for name, v in counters.items()}
    if opens is not None:
        api[OPEN] = opens
    return Scrape(at, {"api": api}, {})


def test_the_mix_is_40_30_30_and_most_reads_are_warm() -> None:
    assert [storage.MIX.count(k) for k in ("pg", "stream", "cache")] == [4, 3, 3]
    mix = storage.StorageMix(keys=("a", "b"), cold_every=COLD_EVERY)
    keys = [mix.cache_key() for _ in range(10 * COLD_EVERY)]
    assert sum(k in ("a", "b") for k in keys) == 10 * (COLD_EVERY - 1)


def test_a_breaker_series_that_appears_mid_run_counts_from_zero() -> None:
    samples = Samples(
        scrapes=[
            _scrape(0, storage_retries_total=0),
            _scrape(1, opens=1, storage_retries_total=4),
            _scrape(2, opens=2, storage_retries_total=9),
        ]
    )
    assert labelled_growth(samples, OPEN[0], state="open") == 2
    unreadable = Samples(scrapes=[Scrape(0.0, {}, {"api": "connection refused"})])
    assert labelled_growth(unreadable, OPEN[0], state="open") is None


def test_derive_takes_the_warm_up_out_of_the_hit_ratio() -> None:
    samples = Samples(
        scrapes=[
            _scrape(
                0, storage_cache_hits_total=0, storage_cache_misses_total=0, storage_retries_total=0
            ),
            _scrape(
                1,
                storage_cache_hits_total=90,
                storage_cache_misses_total=74,
                storage_retries_total=2,
            ),
        ]
    )
    recorder = Recorder(0.0)
    # what the scenario records: a warm-up of 64 misses, 200 requests in all
    recorder.counter("storage_warmup_hits", 0.5, value=0.0)
    recorder.counter("storage_warmup_misses", 0.5, value=64.0)
    recorder.counter("storage_requests_sent", 0.5, value=200.0)
    storage.derive(samples, recorder, 1.0)
    assert recorder.stats("storage_cache_hit_ratio")["value"] == pytest.approx(0.9)
    assert recorder.stats("storage_breaker_opens")["count"] == 0
    assert recorder.kind("storage_breaker_opens") == "counter"
    assert recorder.stats("storage_retry_ratio")["value"] == pytest.approx(0.01)


@pytest.fixture(scope="module")
def platform(tmp_path_factory, system_dir):
    with ci_platform(tmp_path_factory, system_dir, "storage") as up:
        yield up


def _run(platform, tmp_path):
    return run_ci(STORAGE, platform.target(), tmp_path)


def test_storage_multi_adapter_passes_on_the_healthy_platform(platform, tmp_path) -> None:
    outcome = _run(platform, tmp_path)
    checks = assert_blocking_passed(outcome)
    assert checks["no_breaker_opens"].observed == 0
    assert checks["cache_hit_ratio_over_85pct"].observed > 0  # the cache serves (WARN: printed)


def test_postgres_cut_mid_run_opens_the_breaker_and_fails(platform, tmp_path) -> None:
    control = ProxyControl(platform.endpoints.postgres_proxy_control)
    cut = threading.Timer(1.5, control.cut)
    restore = threading.Timer(4.0, control.restore)
    cut.start()
    restore.start()
    try:
        outcome = _run(platform, tmp_path)
    finally:
        cut.cancel()
        restore.cancel()
        control.restore()
        control.close()
    failed = {c.check.name: c.observed for c in outcome.checks if not c.passed}
    print("07 cut:", failed)
    assert failed.get("no_breaker_opens", 0) >= 1
    assert outcome.blocking_failed and outcome.record.status == "failed"
