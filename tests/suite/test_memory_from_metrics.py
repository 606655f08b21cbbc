"""Test 01's memory check on an external target (a target file: no pids), end to end
against the embedded platform at the ci profile: judged from each endpoint's
``process_resident_memory_bytes``, which is the process's real RSS; it passes on the
healthy platform and fails on one that leaks; a target whose /metrics lacks the gauge
shows it as not measurable, with the reason, and the test is not failed."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from pathlib import Path

import httpx
import psutil
import pytest

from nightly_pipeline.suite.catalog import select_tests
from nightly_pipeline.suite.memory import RSS_GAUGE, memory_growth, rss_from_metrics
from nightly_pipeline.suite.sampling import Samples, parse_metrics
from nightly_pipeline.suite.target import Target, load_target
from nightly_pipeline.testbed.embedded import Platform
from tests.suite.metrics_filter import filtered_metrics
from tests.suite.platforms import assert_blocking_passed, ci_platform, run_ci

(SOAK,) = select_tests("01")
MEMORY = "memory_growth_under_10pct"
PASSWORD_ENV = "NIGHTLY_MEMORY_TEST_PASSWORD"


@pytest.fixture(scope="module")
def platform(tmp_path_factory, system_dir):
    with ci_platform(tmp_path_factory, system_dir, "memory") as up:
        yield up


def external(up: Platform, directory: Path, metrics_urls: dict[str, str]) -> Target:
    """``up`` as a target file describes a deployed platform (README: external target
    mode), read by ``load_target``: no pids, no chaos handles."""
    file = directory / "target.json"
    ws = up.base_url.replace("http://", "ws://", 1)
    raw = {
        "name": "external-memory",
        "base_url": up.base_url,
        "ws_url": f"{ws}/v1/ws",
        "metrics_urls": metrics_urls,
        "users": sorted(up.users),
        "password_env": PASSWORD_ENV,
    }
    file.write_text(json.dumps(raw))
    target = load_target(file, {PASSWORD_ENV: up.password})
    assert not target.pids and target.chaos is None
    return target


def test_memory_is_judged_from_metrics_and_passes_on_the_healthy_platform(
    platform, tmp_path
) -> None:
    target = external(platform, tmp_path, dict(platform.metrics_urls))
    outcome = run_ci(SOAK, target, tmp_path / "run")
    checks = assert_blocking_passed(outcome)
    memory = checks[MEMORY]
    assert memory.passed and not memory.not_measurable, outcome.record.detail
    assert math.isfinite(memory.observed) and memory.observed < 10
    print(f"01 external memory growth from /metrics: {memory.observed:+.2f} %")


def test_the_metrics_gauge_is_each_processs_real_rss(platform) -> None:
    """Each endpoint's gauge against psutil's RSS of the process behind it, read one
    after the other (within 10 %: the process allocates between the two reads)."""
    pids = platform.pids()
    compared = 0
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        for name, url in platform.metrics_urls.items():
            exported = parse_metrics(client.get(url).text)[(RSS_GAUGE, ())]
            real = psutil.Process(pids[name]).memory_info().rss
            print(f"{name}: /metrics {exported / 2**20:.1f} MiB, psutil {real / 2**20:.1f} MiB")
            assert exported == pytest.approx(real, rel=0.10), name
            compared += 1
    assert compared >= 3  # api, dispatcher, consumer


def test_one_run_judged_from_pids_and_from_metrics_agrees(platform, tmp_path) -> None:
    """The embedded target offers both: the same run's samples judged from the pids (as
    the embedded suite does) and from ``/metrics`` alone (as an external target is) give
    the same RSS and the same growth within a percentage point (each /metrics reading is
    taken a few ms before the pid's, so allocations in between differ)."""
    captured: list[Samples] = []
    probe = dataclasses.replace(SOAK, derive=lambda samples, _rec, _at: captured.append(samples))
    run_ci(probe, platform.target(), tmp_path)
    (samples,) = captured
    by_pids = memory_growth(samples, platform.metrics_urls)
    by_metrics = memory_growth(dataclasses.replace(samples, processes={}), platform.metrics_urls)
    assert (by_pids.source, by_metrics.source) == ("pids", "/metrics")
    print(f"01 growth: pids {by_pids.growth_pct:+.2f} %, /metrics {by_metrics.growth_pct:+.2f} %")
    assert by_metrics.growth_pct == pytest.approx(by_pids.growth_pct, abs=1.0)
    series = rss_from_metrics(samples)
    for name, points in samples.processes.items():
        last_pid, last_metrics = points[-1].rss_mb, series[name][-1][1]
        print(f"{name}: last RSS pid {last_pid:.1f} MiB, /metrics {last_metrics:.1f} MiB")
        assert last_metrics == pytest.approx(last_pid, rel=0.05), name


@pytest.fixture(scope="module")
def leaking(tmp_path_factory, system_dir):
    overrides = {"leak_bytes_per_message": 1 << 20}
    with ci_platform(tmp_path_factory, system_dir, "memory-leak", overrides=overrides) as up:
        yield up


def test_an_api_that_leaks_fails_the_memory_check_judged_from_metrics(leaking, tmp_path) -> None:
    """Fault: the API keeps 1 MiB per accepted message (``leak_bytes_per_message``): the
    growth seen in its ``process_resident_memory_bytes`` fails the blocking check."""
    target = external(leaking, tmp_path, dict(leaking.metrics_urls))
    outcome = run_ci(SOAK, target, tmp_path / "run")
    memory = next(c for c in outcome.checks if c.check.name == MEMORY)
    assert memory.failed and memory.observed > 10, outcome.record.detail
    assert outcome.blocking_failed and outcome.record.status == "failed"


def test_metrics_without_the_gauge_make_the_check_not_measurable_not_failed(
    platform, tmp_path
) -> None:
    """The platform's own /metrics, served without the ``process_*`` families (an
    exporter without Prometheus' process collector): the memory check is skipped with
    the reason, every other blocking check still judged and passing, the test passed."""
    with contextlib.ExitStack() as serving:
        bare = {
            name: serving.enter_context(filtered_metrics(url, "process_"))
            for name, url in platform.metrics_urls.items()
        }
        assert RSS_GAUGE not in httpx.get(bare["api"], trust_env=False).text
        target = external(platform, tmp_path, bare)
        outcome = run_ci(SOAK, target, tmp_path / "run")
    memory = next(c for c in outcome.checks if c.check.name == MEMORY)
    assert not memory.passed and not memory.failed, outcome.record.detail
    assert RSS_GAUGE in memory.not_measurable
    assert "api, consumer, dispatcher" in memory.not_measurable
    assert not outcome.blocking_failed and outcome.record.status == "passed"
    assert f"{MEMORY} (process_rss_growth_pct max<10): not measurable on this target" in (
        outcome.record.detail
    )
    for c in outcome.checks:
        if c.check.severity == "error" and c.check.name != MEMORY:
            assert c.passed, (c.check.name, outcome.record.detail)
