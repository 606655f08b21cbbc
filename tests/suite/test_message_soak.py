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
from nightly_pipeline.suite.progress import TestProgress
from tests.suite.platforms import assert_blocking_passed, ci_platform, metric, run_ci

SOAK = select_tests("01")[0]


@pytest.fixture(scope="module")
def platform(tmp_path_factory, system_dir):
    with ci_platform(tmp_path_factory, system_dir, "soak") as up:
        yield up


def _run(platform, tmp_path):
    return run_ci(SOAK, platform.target(), tmp_path)


def test_message_soak_passes_on_the_healthy_platform(platform, tmp_path) -> None:
    outcome = _run(platform, tmp_path)
    checks = assert_blocking_passed(outcome)
    assert checks["zero_message_loss"].observed == 0
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


CUT_FOR_S = 1.0


def test_a_postgres_cut_fails_the_blocking_http_error_rate_check(platform, tmp_path) -> None:
    """Fault: PostgreSQL cut at its fault proxy for 1 s of the load, from its first
    report (about 1 s in; not a timer from the test's start: on a loaded host the log-ins
    before the load can outlast it). The POSTs of that second fail, so
    ``http_req_failed rate<0.001`` fails and the run is failed."""
    control = ProxyControl(platform.endpoints.postgres_proxy_control)
    restore = threading.Timer(CUT_FOR_S, control.restore)
    cut = threading.Event()

    def cut_once_loading(report: TestProgress) -> None:
        if report.phase == "load" and not cut.is_set():
            cut.set()
            control.cut()
            restore.start()

    try:
        outcome = run_ci(SOAK, platform.target(), tmp_path, watch=cut_once_loading)
    finally:
        restore.cancel()
        control.restore()
        control.close()
    assert cut.is_set(), "the load never reported: no cut was made"
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


DUPLICATE_EVERY, CORRUPT_EVERY = 5, 7


@pytest.fixture(scope="module")
def garbling(tmp_path_factory, system_dir):
    """A gateway that sends every 5th message twice and flips a byte of every 7th."""
    overrides = {"ws_duplicate_every": DUPLICATE_EVERY, "ws_corrupt_every": CORRUPT_EVERY}
    with ci_platform(tmp_path_factory, system_dir, "garble", overrides=overrides) as up:
        yield up


def test_a_gateway_that_duplicates_and_corrupts_frames_fails_the_delivery_checks(
    garbling, tmp_path
) -> None:
    """Faults: the testbed's ``ws_duplicate_every`` (5) and ``ws_corrupt_every`` (7).
    Every message still arrives, but some twice and some with a flipped byte: the
    blocking duplicate and corruption checks fail, the loss and error checks pass."""
    outcome = _run(garbling, tmp_path)
    checks = {c.check.name: c for c in outcome.checks}
    expected = metric(outcome, "delivery_expected.count")
    twice = checks["each_message_delivered_once"]
    assert not twice.passed, outcome.record.detail
    # each 5th message once more at each of its 3 recipients' sockets
    assert 0.5 * expected / DUPLICATE_EVERY <= twice.observed <= expected / DUPLICATE_EVERY + 3
    corrupted = checks["zero_corrupted_messages"]
    assert not corrupted.passed and corrupted.observed > 0, outcome.record.detail
    for truthful in ("zero_message_loss", "error_rate_under_0_1pct", "zero_dead_letters"):
        assert checks[truthful].passed, (truthful, outcome.record.detail)
    assert outcome.blocking_failed and outcome.record.status == "failed"


@pytest.fixture(scope="module")
def refusing(tmp_path_factory, system_dir):
    """A dispatcher whose stream key holds a string: Redis refuses every XADD. Rows die
    at their 3rd refusal (``dispatch_max_attempts``; 8 by default), ~0.3 s after the
    first, so the dead letters of a 6 s run do not wait on the backoff."""
    overrides = {"stream_writable": False, "dispatch_max_attempts": 3}
    with ci_platform(tmp_path_factory, system_dir, "refuse", overrides=overrides) as up:
        yield up


def test_a_stream_redis_refuses_to_write_fails_the_dead_letter_check(refusing, tmp_path) -> None:
    """Fault: the testbed's ``stream_writable`` off (every XADD answered WRONGTYPE). The
    API accepts every post; the dispatcher's rows die as dead letters, so the blocking
    ``zero_dead_letters`` check fails (and, nothing delivered, the loss check)."""
    outcome = _run(refusing, tmp_path)
    checks = {c.check.name: c for c in outcome.checks}
    dead = checks["zero_dead_letters"]
    assert not dead.passed and dead.observed > 0, outcome.record.detail
    assert dead.observed <= metric(outcome, "delivery_expected.count") / 3  # per message
    assert not checks["zero_message_loss"].passed
    assert checks["error_rate_under_0_1pct"].passed, outcome.record.detail
    assert outcome.blocking_failed and outcome.record.status == "failed"
