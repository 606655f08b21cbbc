"""Carries out one executor config inside one process's event loop.

Open model (arrival-rate executors): each iteration starts at its absolute deadline;
when ``max_vus`` iterations are already in flight the due one is dropped and counted.
Closed model (constant-vus): each VU loops, starting its next iteration when the
previous one ends. Both stop by themselves at the end of the duration or after
``max_iterations``, give in-flight iterations ``graceful_stop_s`` and then cancel
them (counted as ``interrupted_iterations``).

Metrics recorded here: ``iterations``, ``iteration_duration`` (from the scheduled
start), ``iteration_scheduling_lag`` (actual minus scheduled start, open model),
``dropped_iterations``, ``late_iterations``, ``interrupted_iterations``,
``iteration_errors{error}`` (a scenario that raised).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from nightly_pipeline.loadgen.executors import ConstantVus, RunBounds
from nightly_pipeline.loadgen.http_client import HttpClient
from nightly_pipeline.loadgen.recorder import Recorder
from nightly_pipeline.loadgen.vu import RecordingHttp, Vu

MIN_SLEEP_S = 0.001
YIELD_EVERY = 64
"""Start at most this many overdue iterations before letting responses in."""


@dataclass
class Execution:
    """Everything an executor runtime needs from the process around it."""

    scenario: object
    recorder: Recorder
    client: HttpClient
    base_ws_url: str
    allow_hosts: tuple[str, ...]
    run_start: float
    late_threshold_s: float = 0.010
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    counts: dict[str, int] = field(
        default_factory=lambda: {"started": 0, "dropped": 0, "interrupted": 0, "errors": 0}
    )

    def vu(self, vu_id: int, iteration: int, scheduled_at: float, state: dict) -> Vu:
        http = RecordingHttp(self.client, self.recorder, scheduled_at)
        return Vu(
            vu_id,
            iteration,
            scheduled_at,
            self.recorder,
            http,
            self.base_ws_url,
            self.allow_hosts,
            self.run_start,
            state,
        )

    async def run_iteration(self, vu: Vu) -> None:
        """Run one iteration; a scenario that raises is counted, never fatal."""
        rec = self.recorder
        try:
            await self.scenario.iteration(vu)  # type: ignore[attr-defined]
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the scenario's bug or the target's: count, go on
            self.counts["errors"] += 1
            rec.counter("iteration_errors", time.perf_counter(), tags={"error": type(exc).__name__})
        end = time.perf_counter()
        rec.counter("iterations", end)
        rec.trend("iteration_duration", (end - vu.scheduled_at) * 1000.0, end)


async def run_open_model(
    offsets: Iterator[float], max_vus: int, bounds: RunBounds, ex: Execution
) -> None:
    """Start iterations at their deadlines; drop (and count) those with no free VU."""
    rec = ex.recorder
    end = ex.run_start + bounds.duration_s
    limit = bounds.max_iterations
    free_vus = list(range(max_vus - 1, -1, -1))
    states: list[dict] = [{} for _ in range(max_vus)]
    inflight: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()
    since_yield = 0
    index = 0

    def finished(task: asyncio.Task[None], vu_id: int) -> None:
        inflight.discard(task)
        free_vus.append(vu_id)

    for offset in offsets:
        deadline = ex.run_start + offset
        if deadline >= end or ex.stop.is_set() or (limit is not None and index >= limit):
            break
        now = time.perf_counter()
        if deadline > now:
            since_yield = 0
            stopped = False
            while deadline > now and not stopped:  # timers may fire early: never start early
                stopped = await _sleep_or_stop(ex.stop, deadline - now)
                now = time.perf_counter()
            if stopped:
                break
        elif since_yield >= YIELD_EVERY:
            since_yield = 0
            await asyncio.sleep(0)
            now = time.perf_counter()
        since_yield += 1
        lag = now - deadline
        rec.trend("iteration_scheduling_lag", lag * 1000.0, now)
        if lag > ex.late_threshold_s:
            rec.counter("late_iterations", now)
        if not free_vus:
            ex.counts["dropped"] += 1
            rec.counter("dropped_iterations", now)
            index += 1
            continue
        vu_id = free_vus.pop()
        task = loop.create_task(ex.run_iteration(ex.vu(vu_id, index, deadline, states[vu_id])))
        inflight.add(task)
        task.add_done_callback(lambda t, v=vu_id: finished(t, v))
        ex.counts["started"] += 1
        index += 1
    await _drain(inflight, bounds.graceful_stop_s, ex)


async def run_closed_model(config: ConstantVus, ex: Execution) -> None:
    """Each VU loops iterations back to back until the duration or the count runs out."""
    bounds = config.bounds
    end = ex.run_start + bounds.duration_s
    budget = [bounds.max_iterations if bounds.max_iterations is not None else -1]

    async def vu_loop(vu_id: int) -> None:
        state: dict = {}
        iteration = 0
        while time.perf_counter() < end and not ex.stop.is_set() and budget[0] != 0:
            budget[0] -= 1
            ex.counts["started"] += 1
            await ex.run_iteration(ex.vu(vu_id, iteration, time.perf_counter(), state))
            iteration += 1

    pending = {asyncio.create_task(vu_loop(v)) for v in range(config.vus)}
    stopper = asyncio.create_task(ex.stop.wait())
    while pending and not ex.stop.is_set():
        remaining = end - time.perf_counter()
        if remaining <= 0:
            break
        _, pending = await asyncio.wait(
            pending | {stopper}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
        )
        pending.discard(stopper)
    stopper.cancel()
    await _drain(pending, bounds.graceful_stop_s, ex)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``stop`` is set first; True when stopped."""
    if stop.is_set():
        return True
    if seconds < 0.05:  # short waits: a plain sleep is cheaper than a wait_for
        # uvloop's timers tick in whole milliseconds: a shorter sleep spins the CPU.
        await asyncio.sleep(max(seconds, MIN_SLEEP_S))
        return stop.is_set()
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True


async def _drain(tasks: set[asyncio.Task[None]], grace_s: float, ex: Execution) -> None:
    """Give in-flight iterations ``grace_s`` to finish, then cancel and count the rest."""
    pending = set(tasks)
    if pending:
        _, pending = await asyncio.wait(pending, timeout=grace_s)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=5.0)
        now = time.perf_counter()
        ex.counts["interrupted"] += len(pending)
        ex.recorder.counter("interrupted_iterations", now, value=float(len(pending)))


async def ticker(every_s: float, run_start: float, on_tick: Callable[[float], None]) -> None:
    """Call ``on_tick(now)`` on whole-second boundaries of the run until cancelled."""
    n = 1
    while True:
        delay = run_start + n * every_s - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        on_tick(time.perf_counter())
        n += 1
