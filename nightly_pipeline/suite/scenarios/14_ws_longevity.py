"""Test 14, WebSocket longevity: long-lived sockets that each ping on a heartbeat and carry
about one message an interval, for the whole run. The server must close none of them
(``ws_disconnects``, ``ws_heartbeat_terminate_total``), every ping must get its pong
within the heartbeat (``ws_missed_pongs``; round trips ``ws_ping_rtt_ms``), memory must
stay flat, and the frames the platform sends must grow like the load: a straight line
(``frame_growth_residual_pct``).

Layout: one user per socket (the sockets scale with the load: 100, 20 at ci; a target
with fewer users gives some users several sockets); each user owns one conversation with
the next user (a ring), so a message reaches two sockets. The load posts one message per
socket per message interval (``sockets / interval`` messages a second, round-robin over
the conversations): each socket sends one message an interval and receives two (its own
and its neighbour's). Delivery by message id is recorded as figures (the ``delivery``
asset); loss and duplicates are judged by Tests 01 and 04.

The heartbeat is the client's: one platform serves the whole night with its own
``ws_heartbeat_s`` (30 s), so each socket pings at the test's heartbeat and times the
pong: a pong later than the heartbeat is a missed pong (blocking), a p99 round trip
over 100 ms a warning. A profile shorter than the plan scales the intervals with the
run, never the checks: heartbeat = min(30 s, duration / 12), message interval =
min(60 s, duration / 6) (nightly 30 s / 60 s over 30 min; smoke 5 s / 10 s over 60 s;
ci 0.5 s / 1 s over 6 s).

Frame linearity: ``ws_frame_sent_total`` from the target's /metrics (one scrape a
second), fitted by least squares over the scrapes strictly inside its growth (the first
one after it started growing up to the last one before it stopped, so the seconds the
load began and ended in are left out); the RMS of the residuals as a percentage of the
growth over that window (the fitted frames a second are kept as ``frame_growth_per_s``).
A warning, not a blocking check: a stall or a burst (the delivery path pausing, then
catching up) shows here, while what it breaks for the sockets (disconnects, missed
pongs) is blocking here and lost messages in Tests 01 and 04.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx
import numpy as np

from nightly_pipeline.loadgen import LoadResult
from nightly_pipeline.loadgen.recorder import Recorder
from nightly_pipeline.suite.context import ScenarioContext
from nightly_pipeline.suite.messaging_load import (
    MessagingKnobs,
    MessagingRun,
    run_messaging_load,
)
from nightly_pipeline.suite.sampling import Samples, scrape
from nightly_pipeline.suite.spec import Check, TestSpec, scales_with_load
from nightly_pipeline.suite.target import Target

FRAMES = "ws_frame_sent_total"


@dataclass(frozen=True)
class Cadence:
    """The intervals of one run: the client's heartbeat and the message interval."""

    heartbeat_s: float
    message_interval_s: float
    sockets: int

    @property
    def rate(self) -> float:
        """Messages a second: one per socket per message interval."""
        return self.sockets / self.message_interval_s


@dataclass(frozen=True)
class WsLongevityKnobs:
    sockets: int = scales_with_load(100)
    heartbeat_s: float = 30.0  # the client's ping interval, at the plan's duration
    message_interval_s: float = 60.0  # one message per socket per interval
    heartbeats_at_least: int = 12  # a shorter run pings at least this often per socket
    messages_at_least: int = 6  # ... and sends at least this many messages per socket
    payload_bytes: int = 1024
    drain_s: float = 15.0
    drain_stall_s: float = 10.0
    max_vus: int = 100

    def cadence(self, duration_s: float) -> Cadence:
        return Cadence(
            heartbeat_s=min(self.heartbeat_s, duration_s / self.heartbeats_at_least),
            message_interval_s=min(self.message_interval_s, duration_s / self.messages_at_least),
            sockets=self.sockets,
        )

    def messaging(self) -> MessagingKnobs:
        """A user, a socket and a two-user conversation per socket."""
        return MessagingKnobs(
            payload_bytes=self.payload_bytes,
            conversations=self.sockets,
            participants=2,
            pool=self.sockets,
            sockets=self.sockets,
            drain_s=self.drain_s,
            drain_stall_s=self.drain_stall_s,
            max_vus=self.max_vus,
        )


KNOBS = WsLongevityKnobs()

SPEC = TestSpec(
    id="14",
    name="ws_longevity",
    duration_s=1800,
    rate=KNOBS.sockets / KNOBS.message_interval_s,
    knobs=KNOBS,
    description="100 long-lived WebSockets: heartbeats, a message a minute each, 30 min",
    assets=("websocket", "delivery", "resources"),
    checks=(
        Check(
            "zero_ws_disconnects",
            on="websocket",
            metric="ws_disconnects",
            expr="count==0",
            severity="error",
            plan="Zero disconnects",
            unit="count",
        ),
        Check(
            "zero_heartbeat_terminations",
            on="websocket",
            metric="ws_heartbeat_terminate_total",
            expr="count==0",
            severity="error",
            plan="ws_heartbeat_terminate_total == 0",
            unit="count",
        ),
        Check(
            "no_missed_pongs",
            on="websocket",
            metric="ws_missed_pongs",
            expr="count==0",
            severity="error",
            plan="Heartbeats steady (every ping answered within the heartbeat)",
            unit="count",
        ),
        Check(
            "ping_p99_under_100ms",
            on="websocket",
            metric="ws_ping_rtt_ms",
            expr="p(99)<100",
            severity="warn",
            plan="Heartbeats steady (ping round trip)",
            unit="ms",
        ),
        Check(
            "memory_growth_under_5pct",
            on="resources",
            metric="process_rss_growth_pct",
            expr="max<5",
            severity="error",
            plan="Memory growth < 5%",
            unit="%",
        ),
        Check(
            "frames_sent_grow_linearly",
            on="websocket",
            metric="frame_growth_residual_pct",
            expr="max<5",
            severity="warn",
            plan="ws_frame_sent_total growing linearly",
            unit="%",
        ),
    ),
)


def scenario(ctx: ScenarioContext[WsLongevityKnobs]) -> LoadResult:
    cadence = ctx.knobs.cadence(ctx.duration_s)
    ctx.progress(
        f"{ctx.spec.key}: a ping every {cadence.heartbeat_s:g} s and a message every"
        f" {cadence.message_interval_s:g} s per socket"
    )
    closes_before = close_codes(ctx.target)  # before any socket opens

    def judge_more(run: MessagingRun, result: LoadResult) -> None:
        listener = run.listener
        record_heartbeats(result.recorder, listener.ping_rtts_ms, listener.missed_pongs)
        closes = {
            code: n - closes_before.get(code, 0.0)
            for code, n in close_codes(ctx.target).items()
            if n > closes_before.get(code, 0.0)
        }
        seen = evidence(
            len(run.sockets), listener.ws_disconnects, closes, listener.missed_pongs, cadence
        )
        for metric, line in seen:
            result.add_evidence(metric, line)

    return run_messaging_load(
        ctx,
        ctx.knobs.messaging(),
        rate=cadence.rate,
        ping_every_s=cadence.heartbeat_s,
        judge_more=judge_more,
    )


def record_heartbeats(recorder: Recorder, rtts_ms: Sequence[float], missed: int) -> None:
    at = time.perf_counter()
    for rtt in rtts_ms:
        recorder.trend("ws_ping_rtt_ms", rtt, at)
    recorder.counter("ws_missed_pongs", at, value=float(missed))


def close_codes(target: Target) -> dict[str, float]:
    """``ws_close_total`` by close code, summed over the target's endpoints; empty when
    unreadable (it only words the evidence)."""
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        now = scrape(target.metrics_urls, client, time.monotonic())
    return now.by_label("ws_close_total", "code")


def evidence(
    sockets: int,
    disconnects: int,
    closes: Mapping[str, float],
    missed: int,
    cadence: Cadence,
) -> list[tuple[str, str]]:
    """(metric, line) for what a failing check should name: how many sockets the
    server closed and with which codes, how many pings went unanswered."""
    lines = []
    codes = ", ".join(f"{code} x{n:g}" for code, n in sorted(closes.items()))
    if disconnects:
        lines.append(
            (
                "ws_disconnects",
                f"the server closed {disconnects} of {sockets} sockets"
                + (f" (ws_close_total by code: {codes})" if codes else ""),
            )
        )
    if closes.get("1001"):
        lines.append(
            (
                "ws_heartbeat_terminate_total",
                f"{closes['1001']:g} sockets closed 1001 (heartbeat timeout or shutdown)"
                f" while they pinged every {cadence.heartbeat_s:g} s",
            )
        )
    if missed:
        lines.append(
            (
                "ws_missed_pongs",
                f"{missed} pings got no pong within the {cadence.heartbeat_s:g} s heartbeat",
            )
        )
    return lines


@dataclass(frozen=True)
class LinearFit:
    slope_per_s: float
    residual_pct: float  # RMS residual / growth over the window, %
    points: int


def growth_window(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (time, count) points strictly inside a counter's growth: from the first
    scrape after it started growing to the last one before it stopped (the seconds in
    which the load began and ended are partial, so left out)."""
    grew = [i for i in range(1, len(points)) if points[i][1] > points[i - 1][1]]
    if not grew:
        return []
    return list(points[grew[0] : grew[-1]])


def linear_fit(points: Sequence[tuple[float, float]]) -> LinearFit | None:
    """Least-squares line through the growth window; None under 3 points or no growth."""
    window = growth_window(points)
    if len(window) < 3:
        return None
    t = np.array([p[0] for p in window])
    y = np.array([p[1] for p in window])
    grown = y[-1] - y[0]
    if grown <= 0:
        return None
    slope, intercept = np.polyfit(t, y, 1)
    rms = math.sqrt(float(np.mean((y - (slope * t + intercept)) ** 2)))
    return LinearFit(float(slope), 100.0 * rms / float(grown), len(window))


def frame_points(samples: Samples) -> list[tuple[float, float]]:
    return [(s.at, v) for s in samples.scrapes if (v := s.total(FRAMES)) is not None]


def derive(samples: Samples, recorder: Recorder, at: float) -> None:
    """The frames the platform sent, fitted by a line: residual % and frames a second."""
    fit = linear_fit(frame_points(samples))
    if fit is not None:
        recorder.gauge("frame_growth_residual_pct", fit.residual_pct, at)
        recorder.gauge("frame_growth_per_s", fit.slope_per_s, at)
