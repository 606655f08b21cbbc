"""Test 05 end to end against the embedded platform (ci profile): healthy, 64 KiB
messages arrive intact with no rejects, no overload and stable memory; on a platform
whose payload limit is below 64 KiB every message is rejected (413) and the blocking
reject check fails with the platform's own counter; on one whose gateway flips a byte of
some bodies and whose API leaks, the corruption and memory checks fail."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from nightly_pipeline.suite.catalog import select_tests
from tests.suite.platforms import assert_blocking_passed, ci_platform, run_ci

LARGE = select_tests("05")[0]
KIB = 1024


def _platform(tmp_path_factory, system_dir, name: str, **overrides):
    return ci_platform(tmp_path_factory, system_dir, name, overrides=overrides)


@pytest.fixture(scope="module")
def platform(tmp_path_factory, system_dir):
    with _platform(tmp_path_factory, system_dir, "large") as up:
        yield up


@pytest.fixture
def limited_platform(tmp_path_factory, system_dir):
    """A platform misconfigured with a 32 KiB payload limit (the default is 128 KiB)."""
    with _platform(tmp_path_factory, system_dir, "limited", max_payload_bytes=32 * KIB) as up:
        yield up


def _run(platform, tmp_path):
    return run_ci(LARGE, platform.target(), tmp_path)


def test_large_payload_passes_on_the_healthy_platform(platform, tmp_path) -> None:
    outcome = _run(platform, tmp_path)
    checks = assert_blocking_passed(outcome)
    assert checks["zero_corrupted_messages"].observed == 0
    assert checks["zero_payload_rejects"].observed == 0
    assert checks["no_backpressure_drops"].observed == 0
    expected = [m.value for m in outcome.record.metrics if m.metric == "delivery_expected.count"]
    assert expected and expected[0] >= 0.9 * 20 * 6 * 3  # ~120 messages x 3 participants


def test_a_payload_limit_below_64_kib_fails_the_reject_check(limited_platform, tmp_path) -> None:
    outcome = _run(limited_platform, tmp_path)
    checks = {c.check.name: c for c in outcome.checks}
    rejects = checks["zero_payload_rejects"]
    assert not rejects.passed and rejects.observed >= 0.9 * 20 * 6
    assert outcome.blocking_failed and outcome.record.status == "failed"


TINY_SEND_QUEUE = 2
STALL_FROM_S, STALL_UNTIL_S = 1.5, 3.5
"""The consumer is stopped for these seconds of the run: the backlog it then publishes
in one pipeline reaches each socket as a burst of frames."""


@pytest.fixture
def tiny_queue_platform(tmp_path_factory, system_dir):
    """A platform whose sockets queue at most 2 frames (the default is 1,000)."""
    with _platform(tmp_path_factory, system_dir, "tinyqueue", ws_send_queue=TINY_SEND_QUEUE) as up:
        yield up


def test_a_tiny_send_queue_under_a_burst_fails_the_backpressure_check(
    tiny_queue_platform, tmp_path
) -> None:
    """Fault: ``ws_send_queue`` 2, and a 2 s consumer stall that turns the backlog into
    a burst. The gateway refuses frames (``ws_overload_total``): the blocking check fails."""
    consumer = tiny_queue_platform.endpoints.pids["consumer"]
    stop = threading.Timer(STALL_FROM_S, os.kill, (consumer, signal.SIGSTOP))
    resume = threading.Timer(STALL_UNTIL_S, os.kill, (consumer, signal.SIGCONT))
    stop.start()
    resume.start()
    try:
        outcome = _run(tiny_queue_platform, tmp_path)
    finally:
        stop.cancel()
        resume.cancel()
        os.kill(consumer, signal.SIGCONT)
    checks = {c.check.name: c for c in outcome.checks}
    print("05 tiny queue:", {m: (c.passed, c.observed) for m, c in checks.items()})
    overload = checks["no_backpressure_drops"]
    assert not overload.passed and overload.observed > 0, outcome.record.detail
    assert outcome.blocking_failed and outcome.record.status == "failed"


CORRUPT_EVERY = 4
LEAK_BYTES = 1 << 20


@pytest.fixture
def garbling_leaking_platform(tmp_path_factory, system_dir):
    """A gateway that flips a byte of every 4th message's ciphertext, and an API that
    keeps 1 MiB for good per accepted message."""
    with _platform(
        tmp_path_factory,
        system_dir,
        "garbleleak",
        ws_corrupt_every=CORRUPT_EVERY,
        leak_bytes_per_message=LEAK_BYTES,
    ) as up:
        yield up


def test_a_corrupting_leaking_platform_fails_the_corruption_and_memory_checks(
    garbling_leaking_platform, tmp_path
) -> None:
    """Faults: the testbed's ``ws_corrupt_every`` (4) and ``leak_bytes_per_message``
    (1 MiB, ~120 MiB over the ci run). The hash check finds the flipped bodies and the
    API's RSS keeps growing: both blocking checks fail; every message still arrives,
    none is rejected, no frame is dropped."""
    outcome = _run(garbling_leaking_platform, tmp_path)
    checks = {c.check.name: c for c in outcome.checks}
    print("05 garbling+leaking:", {m: (c.passed, c.observed) for m, c in checks.items()})
    corrupted = checks["zero_corrupted_messages"]
    assert not corrupted.passed and corrupted.observed > 0, outcome.record.detail
    memory = checks["memory_growth_under_10pct"]
    assert not memory.passed and memory.observed > 10, outcome.record.detail
    for truthful in ("zero_payload_rejects", "no_backpressure_drops"):
        assert checks[truthful].passed and checks[truthful].observed == 0, truthful
    assert outcome.blocking_failed and outcome.record.status == "failed"
