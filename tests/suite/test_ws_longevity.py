"""Test 14 against the embedded platform (ci profile): healthy, every socket pings on its
heartbeat, stays open and the test passes; each blocking check fails against a really
broken platform — a heartbeat timeout shorter than the client's pings (the testbed knob
``ws_heartbeat_timeout_s``: the server terminates healthy sockets), an API stalled past
the heartbeat (pings unanswered), an API that leaks (memory) — and neither a success, a
failure nor a Ctrl-C leaves a socket or a process behind. The scaled intervals, the
linear fit and the evidence are tested without a platform first."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from nightly_pipeline.loadgen import Recorder
from nightly_pipeline.suite.catalog import select_tests
from nightly_pipeline.suite.profiles import PROFILES
from nightly_pipeline.suite.runner import judge
from nightly_pipeline.suite.sampling import Samples, Scrape, parse_metrics
from tests.processes import group_killed_on_exit, interrupt
from tests.suite.platforms import (
    assert_blocking_passed,
    ci_platform,
    metric,
    run_ci,
    scenario_module,
)

LONGEVITY = select_tests("14")[0]
longevity = scenario_module("14")
CI = PROFILES["ci"].plan(LONGEVITY.spec)
CADENCE = CI.knobs.cadence(CI.duration_s)
SOCKETS = CADENCE.sockets
FRAMES = longevity.FRAMES

# ---------------------------------------------------------------- without a platform


@pytest.mark.parametrize(
    ("profile", "heartbeat_s", "message_interval_s", "sockets"),
    [("ci", 0.5, 1.0, 20), ("smoke", 5.0, 10.0, 100), ("nightly", 30.0, 60.0, 100)],
)
def test_the_intervals_scale_with_the_run_and_each_socket_sends_one_message_an_interval(
    profile, heartbeat_s, message_interval_s, sockets
) -> None:
    plan = PROFILES[profile].plan(LONGEVITY.spec)
    cadence = plan.knobs.cadence(plan.duration_s)
    assert (cadence.heartbeat_s, cadence.message_interval_s, cadence.sockets) == (
        heartbeat_s,
        message_interval_s,
        sockets,
    )
    assert cadence.rate == pytest.approx(sockets / message_interval_s)
    assert plan.duration_s / cadence.heartbeat_s >= 12  # a dozen pings a socket at least


def test_the_layout_gives_each_socket_a_user_and_a_two_user_conversation() -> None:
    load = CI.knobs.messaging()
    assert (load.sockets, load.pool, load.conversations, load.participants) == (20, 20, 20, 2)


def _points(values: list[float]) -> list[tuple[float, float]]:
    return [(float(t), v) for t, v in enumerate(values)]


def test_a_steady_count_fits_a_line_and_the_partial_seconds_are_left_out() -> None:
    # idle for 3 s, 40 frames/s from t=3.5 to t=13.5 (a half second at each end), idle
    values = [0, 0, 0, 0] + [20 + 40 * k for k in range(10)] + [400, 400, 400]
    assert longevity.growth_window(_points(values)) == _points(values)[4:14]
    fit = longevity.linear_fit(_points(values))
    assert fit is not None and fit.points == 10
    assert fit.slope_per_s == pytest.approx(40)
    assert fit.residual_pct == pytest.approx(0, abs=1e-9)


def test_a_stall_then_a_catch_up_leaves_a_residual_over_the_bound() -> None:
    """The delivery path stops for 10 s of 40, then delivers the backlog at once."""
    values = [0] + [40 * k for k in range(1, 16)] + [600] * 10 + [1000 + 40 * k for k in range(15)]
    fit = longevity.linear_fit(_points(values))
    assert fit is not None and fit.residual_pct > 5
    check = LONGEVITY.spec.check("frames_sent_grow_linearly")
    rec = Recorder(0.0)
    rec.gauge("frame_growth_residual_pct", fit.residual_pct, 1.0)
    outcome = next(o for o in judge(LONGEVITY.spec, rec)[0] if o.check == check)
    assert not outcome.passed and outcome.observed == pytest.approx(fit.residual_pct)


def test_a_count_that_never_grows_is_no_figure_and_fails_the_check_on_no_data() -> None:
    samples = Samples(
        scrapes=[Scrape(float(t), {"api": {(FRAMES, ()): 7.0}}, {}) for t in range(9)]
    )
    assert longevity.linear_fit(longevity.frame_points(samples)) is None
    rec = Recorder(0.0)
    longevity.derive(samples, rec, 1.0)
    check = LONGEVITY.spec.check("frames_sent_grow_linearly")
    assert not next(o for o in judge(LONGEVITY.spec, rec)[0] if o.check == check).passed


def test_derive_reads_the_frame_counter_from_the_scrapes() -> None:
    scrapes = [Scrape(float(t), {"api": {(FRAMES, ()): 10.0 * t}}, {}) for t in range(8)]
    rec = Recorder(0.0)
    longevity.derive(Samples(scrapes=scrapes), rec, 1.0)
    assert rec.stats("frame_growth_per_s")["value"] == pytest.approx(10)
    assert rec.stats("frame_growth_residual_pct")["value"] == pytest.approx(0, abs=1e-9)


def test_the_evidence_names_the_close_codes_and_the_missed_pongs() -> None:
    lines = dict(longevity.evidence(20, 20, {"1001": 20.0}, 3, CADENCE))
    assert lines["ws_disconnects"] == (
        "the server closed 20 of 20 sockets (ws_close_total by code: 1001 x20)"
    )
    assert "20 sockets closed 1001" in lines["ws_heartbeat_terminate_total"]
    assert lines["ws_missed_pongs"] == "3 pings got no pong within the 0.5 s heartbeat"
    assert longevity.evidence(20, 0, {}, 0, CADENCE) == []


# ---------------------------------------------------------------- against the platform


@pytest.fixture(scope="module")
def platform(tmp_path_factory, system_dir):
    with ci_platform(tmp_path_factory, system_dir, "longevity") as up:
        yield up


def _open_sockets(url: str) -> float:
    try:
        values = parse_metrics(httpx.get(url, timeout=1.0, trust_env=False).text)
    except (httpx.HTTPError, ValueError):
        return -1.0
    return values.get(("ws_open_connections", ()), 0.0)


def _assert_nothing_left(platform) -> None:
    """No listener process of ours alive, no socket open on the platform (the server
    notes a close a moment after the client's close handshake: polled, bounded)."""
    assert [pid for pid in _listeners_of(os.getpid()) if _alive(pid)] == []
    deadline = time.monotonic() + 10
    while (still := _open_sockets(platform.metrics_urls["api"])) != 0:
        assert time.monotonic() < deadline, f"{still:g} sockets still open on the platform"
        time.sleep(0.1)


def test_ws_longevity_passes_on_the_healthy_platform(platform, tmp_path) -> None:
    """Every blocking check passes with nothing lost, closed or missed; the WARN targets
    (ping p99, linear frame growth) are printed, not required: timing on a busy machine."""
    outcome = run_ci(LONGEVITY, platform.target(), tmp_path)
    checks = {
        c.check.name: (c.passed, c.observed) for c in assert_blocking_passed(outcome).values()
    }
    assert checks["zero_ws_disconnects"] == (True, 0)
    assert checks["zero_heartbeat_terminations"] == (True, 0)
    assert checks["no_missed_pongs"] == (True, 0)
    # the load really ran: ~20 msg/s for 6 s, each to 2 sockets; every socket pinged
    # about every 0.5 s for the whole load
    assert metric(outcome, "delivery_expected.count") >= 0.9 * CADENCE.rate * CI.duration_s * 2
    assert metric(outcome, "delivery_lost.count") == 0
    assert metric(outcome, "ws_ping_rtt_ms.count") >= SOCKETS * (CI.duration_s / 0.5 - 2)
    assert metric(outcome, "frame_growth_per_s.value") > 0  # the platform's own count grew
    _assert_nothing_left(platform)


STALL_S = 4 * CADENCE.heartbeat_s  # every socket's ping in the stall goes unanswered


def _stall_api_once_connected(platform, done: threading.Event) -> None:
    """Once the run's sockets are open, SIGSTOP the API for STALL_S, then SIGCONT."""
    api = platform.endpoints.pids["api"]
    deadline = time.monotonic() + 60
    while _open_sockets(platform.metrics_urls["api"]) < SOCKETS:
        if time.monotonic() > deadline or done.is_set():
            return
        time.sleep(0.05)
    os.kill(api, signal.SIGSTOP)
    try:
        done.wait(STALL_S)
    finally:
        os.kill(api, signal.SIGCONT)


def test_an_api_stalled_past_the_heartbeat_fails_the_missed_pong_check(platform, tmp_path) -> None:
    """Fault: the API process stopped for 4 heartbeats once the sockets are open: the
    pings of that window get no pong within the heartbeat. The server's own timeout
    (45 s) is far off, so no socket is closed: only the pong check fails."""
    done = threading.Event()
    stall = threading.Thread(target=_stall_api_once_connected, args=(platform, done))
    stall.start()
    try:
        outcome = run_ci(LONGEVITY, platform.target(), tmp_path)
    finally:
        done.set()
        stall.join()
    checks = {c.check.name: c for c in outcome.checks}
    print("14 stalled:", {n: (c.passed, c.observed) for n, c in checks.items()})
    missed = checks["no_missed_pongs"]
    assert not missed.passed and missed.observed >= SOCKETS, outcome.record.detail
    assert "pings got no pong within the 0.5 s heartbeat" in missed.detail
    assert checks["zero_ws_disconnects"].passed and checks["zero_ws_disconnects"].observed == 0
    assert checks["zero_heartbeat_terminations"].passed
    assert outcome.blocking_failed and outcome.record.status == "failed"
    _assert_nothing_left(platform)


BROKEN_TIMEOUT_S = 0.25  # the client pings every 0.5 s at ci: healthy sockets look dead


@pytest.fixture(scope="module")
def hasty(tmp_path_factory, system_dir):
    overrides = {"ws_heartbeat_timeout_s": BROKEN_TIMEOUT_S}
    with ci_platform(tmp_path_factory, system_dir, "hasty", overrides=overrides) as up:
        yield up


def test_a_heartbeat_timeout_shorter_than_the_pings_fails_the_disconnect_checks(
    hasty, tmp_path
) -> None:
    """Fault: the testbed's ``ws_heartbeat_timeout_s`` at 0.25 s while each socket pings
    every 0.5 s: the gateway terminates every socket (1001), each once; the two blocking
    socket checks fail on the count and name the close code."""
    outcome = run_ci(LONGEVITY, hasty.target(), tmp_path)
    checks = {c.check.name: c for c in outcome.checks}
    print("14 hasty timeout:", {n: (c.passed, c.observed) for n, c in checks.items()})
    disconnects = checks["zero_ws_disconnects"]
    assert not disconnects.passed and disconnects.observed == SOCKETS, outcome.record.detail
    assert f"1001 x{SOCKETS}" in disconnects.detail
    terminated = checks["zero_heartbeat_terminations"]
    assert not terminated.passed and terminated.observed == SOCKETS, outcome.record.detail
    assert outcome.blocking_failed and outcome.record.status == "failed"
    _assert_nothing_left(hasty)


LEAK_BYTES = 1 << 20


@pytest.fixture(scope="module")
def leaking(tmp_path_factory, system_dir):
    overrides = {"leak_bytes_per_message": LEAK_BYTES}
    with ci_platform(tmp_path_factory, system_dir, "longevity-leak", overrides=overrides) as up:
        yield up


def test_an_api_that_leaks_fails_the_memory_check(leaking, tmp_path) -> None:
    """Fault: the API keeps 1 MiB per accepted message (``leak_bytes_per_message``):
    ~120 MiB over the ci run, so ``process_rss_growth_pct max<5`` fails while the
    sockets stay open and answer every ping."""
    outcome = run_ci(LONGEVITY, leaking.target(), tmp_path)
    checks = {c.check.name: c for c in outcome.checks}
    print("14 leak:", {n: (c.passed, c.observed) for n, c in checks.items()})
    memory = checks["memory_growth_under_5pct"]
    assert not memory.passed and memory.observed > 5, outcome.record.detail
    assert checks["zero_ws_disconnects"].passed and checks["no_missed_pongs"].passed
    assert outcome.blocking_failed and outcome.record.status == "failed"


def _listeners_of(pid: int) -> set[int]:
    try:
        family = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return set()
    found = set()
    for proc in family:
        try:
            if "nightly_pipeline.suite.ws_listen" in " ".join(proc.cmdline()):
                found.add(proc.pid)
        except psutil.Error:
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_ctrl_c_during_the_run_leaves_no_listener_and_exits_130(tmp_path: Path) -> None:
    """``nightly run --tests 14`` at ci, Ctrl-C (SIGINT to the process group) once its
    load runs: exit 130, and the listener processes it had started are gone with the
    platform."""
    home = tmp_path / "home"
    argv = [sys.executable, "-m", "nightly_pipeline.cli", "--store", str(home / "metrics.duckdb")]
    argv += ["run", "--profile", "ci", "--tests", "14", "--night", "2026-11-20"]
    child = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    seen, listeners = [], set()
    with group_killed_on_exit(child):
        assert child.stdout is not None
        for line in child.stdout:  # ends at EOF if the run dies first
            seen.append(line)
            if "14_ws_longevity load" in line:  # the load's first second: sockets open
                listeners = _listeners_of(child.pid)
                break
        out = interrupt(child)
    out = "".join(seen) + out
    assert child.returncode == 130, out
    assert listeners, f"no listener process seen under the run:\n{out}"
    assert [pid for pid in listeners if _alive(pid)] == []
