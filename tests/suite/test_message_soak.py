"""Test 01 end to end against the embedded platform (ci profile): healthy, it passes;
with the consumer stopped, the blocking loss check fails; with PostgreSQL cut, the error
rate check; with an API that leaks, the memory check."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from nightly_pipeline.chaos import ProxyControl
from nightly_pipeline.suite.catalog import select_tests
from tests.suite.platforms import ci_platform, run_ci

SOAK = select_tests("01")[0]


@pytest.fixture(scope="module")
def platform(tmp_path_factory, system_dir):
    with ci_platform(tmp_path_factory, system_dir, "soak") as up:
        yield up


def _run(platform, tmp_path):
    return run_ci(SOAK, platform.target(), tmp_path)


def test_message_soak_passes_on_the_healthy_platform(platform, tmp_path) -> None:
    outcome = _run(platform, tmp_path)
    checks = {c.check.name: (c.passed, c.observed) for c in outcome.checks}
    assert outcome.record.status == "passed", outcome.record.detail
    assert checks["zero_message_loss"] == (True, 0)
    sent = [m.value for m in outcome.record.metrics if m.metric == "delivery_expected.count"]
    assert sent and sent[0] >= 0.9 * 100 * 6 * 3  # ~600 messages x 3 participants


def test_a_stopped_consumer_fails_the_blocking_loss_check(platform, tmp_path) -> None:
    consumer = platform.endpoints.pids["consumer"]
    os.kill(consumer, signal.SIGSTOP)
    try:
        outcome = _run(platform, tmp_path)
    finally:
        os.kill(consumer, signal.SIGCONT)
    failed = {c.check.name for c in outcome.checks if not c.passed}
    assert "zero_message_loss" in failed
    assert outcome.blocking_failed and outcome.record.status == "failed"


CUT_FROM_S, CUT_UNTIL_S = 1.5, 2.5


def test_a_postgres_cut_fails_the_blocking_http_error_rate_check(platform, tmp_path) -> None:
    """Fault: PostgreSQL cut at its fault proxy for 1 s of the run. The POSTs of that
    second fail, so ``http_req_failed rate<0.001`` fails and the run is failed."""
    control = ProxyControl(platform.endpoints.postgres_proxy_control)
    cut = threading.Timer(CUT_FROM_S, control.cut)
    restore = threading.Timer(CUT_UNTIL_S, control.restore)
    cut.start()
    restore.start()
    try:
        outcome = _run(platform, tmp_path)
    finally:
        cut.cancel()
        restore.cancel()
        control.restore()
        control.close()
    checks = {c.check.name: c for c in outcome.checks}
    print("01 pg cut:", {m: (c.passed, c.observed) for m, c in checks.items()})
    failed = checks["error_rate_under_0_1pct"]
    assert not failed.passed and failed.observed >= 0.001, outcome.record.detail
    assert failed.check.severity == "error"
    assert outcome.blocking_failed and outcome.record.status == "failed"


LEAK_BYTES = 1 << 20


@pytest.fixture(scope="module")
def leaking(tmp_path_factory, system_dir):
    overrides = {"leak_bytes_per_message": LEAK_BYTES}
    with ci_platform(tmp_path_factory, system_dir, "leak", overrides=overrides) as up:
        yield up


def test_an_api_that_leaks_fails_the_blocking_memory_check(leaking, tmp_path) -> None:
    """Fault: the API keeps 1 MiB per accepted message (the testbed's
    ``leak_bytes_per_message`` knob): ~100 MiB over the ci run, so
    ``process_rss_growth_pct max<10`` fails while every message is still delivered."""
    outcome = _run(leaking, tmp_path)
    checks = {c.check.name: (c.passed, c.observed) for c in outcome.checks}
    assert checks["memory_growth_under_10pct"][0] is False
    assert checks["memory_growth_under_10pct"][1] > 10
    assert checks["zero_message_loss"] == (True, 0)
    assert outcome.blocking_failed and outcome.record.status == "failed"
