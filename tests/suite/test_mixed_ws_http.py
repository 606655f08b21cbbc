"""Test 04 end to end against the embedded platform (ci profile): healthy, 50 sockets get
every message; with the API stalled past the heartbeat grace, the server terminates the
sockets and the blocking disconnect check fails; a gateway that sends some frames twice
fails the duplicate check; a dispatcher that deletes what it could not write, cut from
Redis, fails the loss check.

The platform pings every ``HEARTBEAT_S`` (30 s by default): a short heartbeat makes the
healthy run prove that the sockets answer pings under load, and lets a few seconds'
stall of the API process (a long GC pause, CPU starvation) trip the server's
terminate-on-missing-pong (close 1001) within the ci profile's seconds.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx
import pytest

from nightly_pipeline.chaos import ProxyControl
from nightly_pipeline.suite.catalog import select_tests
from nightly_pipeline.suite.sampling import parse_metrics
from tests.suite.platforms import assert_blocking_passed, ci_platform, metric, run_ci

MIXED = select_tests("04")[0]
SOCKETS = MIXED.spec.knobs.sockets
HEARTBEAT_S = 1.5
STALL_S = 3 * HEARTBEAT_S  # > 1.5 heartbeats without a pong: the server terminates


@pytest.fixture(scope="module")
def platform(tmp_path_factory, system_dir):
    overrides = {"ws_heartbeat_s": HEARTBEAT_S}
    with ci_platform(tmp_path_factory, system_dir, "mixed", overrides=overrides) as up:
        yield up


def _run(platform, tmp_path):
    return run_ci(MIXED, platform.target(), tmp_path)


def test_mixed_ws_http_passes_on_the_healthy_platform(platform, tmp_path) -> None:
    outcome = _run(platform, tmp_path)
    checks = assert_blocking_passed(outcome)  # e2e_p95_under_500ms is WARN: printed
    assert checks["zero_ws_disconnects"].observed == 0
    assert checks["zero_message_loss"].observed == 0
    assert checks["each_message_delivered_once"].observed == 0
    expected = [m.value for m in outcome.record.metrics if m.metric == "delivery_expected.count"]
    # ~600 messages, each to 3 users x 5 devices
    assert expected and expected[0] >= 0.9 * 100 * 6 * 15


def _open_sockets(url: str) -> float:
    try:
        values = parse_metrics(httpx.get(url, timeout=1.0, trust_env=False).text)
    except (httpx.HTTPError, ValueError):
        return 0.0
    return values.get(("ws_open_connections", ()), 0.0)


def _stall_api_once_connected(platform, done: threading.Event) -> None:
    """Once the run's sockets are open, SIGSTOP the API for STALL_S, then SIGCONT."""
    api = platform.endpoints.pids["api"]
    deadline = time.monotonic() + 30
    while _open_sockets(platform.metrics_urls["api"]) < SOCKETS:
        if time.monotonic() > deadline or done.is_set():
            return
        time.sleep(0.1)
    time.sleep(0.5)
    os.kill(api, signal.SIGSTOP)
    try:
        done.wait(STALL_S)
    finally:
        os.kill(api, signal.SIGCONT)


def test_an_api_stalled_past_the_heartbeat_fails_the_disconnect_check(platform, tmp_path) -> None:
    done = threading.Event()
    stall = threading.Thread(target=_stall_api_once_connected, args=(platform, done))
    stall.start()
    try:
        outcome = _run(platform, tmp_path)
    finally:
        done.set()
        stall.join()
    checks = {c.check.name: c for c in outcome.checks}
    assert not checks["zero_ws_disconnects"].passed, outcome.record.detail
    assert checks["zero_ws_disconnects"].observed > 0
    assert outcome.blocking_failed and outcome.record.status == "failed"


REDIS_LATENCY_MS = 150.0
"""Added each way on the Redis fault proxy. A delivery crosses it several times (the
POST's lookups, the dispatcher's XADD, the API's Pub/Sub): P95 comes out near 2 s at
ci, well over the 500 ms target and well under the 15 s drain."""


def test_a_slow_redis_link_fails_the_e2e_latency_check_but_loses_nothing(
    platform, tmp_path
) -> None:
    """Fault: latency on the Redis proxy. The warn check ``e2e_delivery_ms p(95)<500`` fails;
    the blocking delivery checks still pass (slow is not lost)."""
    with ProxyControl(platform.endpoints.redis_proxy_control, proxy="redis") as proxy:
        proxy.set_latency(REDIS_LATENCY_MS)
        try:
            outcome = _run(platform, tmp_path)
        finally:
            proxy.set_latency(0)
    checks = {c.check.name: c for c in outcome.checks}
    print("04 slow redis:", {m: (c.passed, c.observed) for m, c in checks.items()})
    e2e = checks["e2e_p95_under_500ms"]
    assert not e2e.passed and e2e.observed >= 500, outcome.record.detail
    assert e2e.check.severity == "warn"
    for blocking in ("zero_ws_disconnects", "zero_message_loss", "each_message_delivered_once"):
        assert checks[blocking].passed, outcome.record.detail
    assert not outcome.blocking_failed and outcome.record.status == "passed"


DUPLICATE_EVERY = 5


@pytest.fixture(scope="module")
def careless(tmp_path_factory, system_dir):
    """A gateway that sends every 5th message twice (``ws_duplicate_every``), and a
    dispatcher that deletes the outbox rows whose XADD failed (``dlq_on_redis_error``
    off; harmless while its Redis link is up)."""
    overrides = {"ws_duplicate_every": DUPLICATE_EVERY, "dlq_on_redis_error": False}
    with ci_platform(tmp_path_factory, system_dir, "careless", overrides=overrides) as up:
        yield up


def test_a_gateway_that_delivers_frames_twice_fails_the_duplicate_check(careless, tmp_path) -> None:
    """Fault: the testbed's ``ws_duplicate_every`` (5). Every message arrives, each 5th
    one twice at every socket of its recipients: the blocking
    ``each_message_delivered_once`` check fails; loss and disconnect checks pass."""
    outcome = _run(careless, tmp_path)
    checks = {c.check.name: c for c in outcome.checks}
    twice = checks["each_message_delivered_once"]
    expected = metric(outcome, "delivery_expected.count")
    assert not twice.passed, outcome.record.detail
    assert 0.5 * expected / DUPLICATE_EVERY <= twice.observed <= expected / DUPLICATE_EVERY + 15
    for truthful in ("zero_message_loss", "zero_ws_disconnects"):
        assert checks[truthful].passed, (truthful, outcome.record.detail)
    assert outcome.blocking_failed and outcome.record.status == "failed"


def test_a_dispatcher_that_drops_what_it_could_not_write_fails_the_loss_check(
    careless, tmp_path
) -> None:
    """Fault: ``dlq_on_redis_error`` off and the dispatcher's own Redis link
    (``redis-dispatcher`` proxy) cut for the whole run: every XADD fails and its rows are
    deleted, lost for good. The blocking ``zero_message_loss`` check fails; the
    sockets, on the API's own link, stay open."""
    link = careless.link_controls()["redis-dispatcher"]
    with ProxyControl(link, proxy="redis-dispatcher") as proxy, proxy.down():
        outcome = _run(careless, tmp_path)
    checks = {c.check.name: c for c in outcome.checks}
    lost = checks["zero_message_loss"]
    assert not lost.passed, outcome.record.detail
    assert lost.observed == metric(outcome, "delivery_expected.count") > 0
    assert checks["zero_ws_disconnects"].passed, outcome.record.detail
    assert outcome.blocking_failed and outcome.record.status == "failed"
