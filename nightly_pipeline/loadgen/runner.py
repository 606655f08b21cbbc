"""Run a load test: in this process, or across N worker processes with exact merges
(or across N Celery workers on other hosts: ``LoadTest.fleet``, loadgen/fleet.py).

With ``workers > 1`` each worker process takes every N-th arrival of the schedule
(so the shares interleave and add up exactly), records into its own Recorder and
streams each closed second to the parent as compact snapshots; the parent merges
them, reports progress, evaluates abort-on-fail thresholds live and tells every
worker to stop when one fails. Workers are always stopped: on success, on error and
when the parent is cancelled (KeyboardInterrupt included).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing as mp
import signal
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

import uvloop

from nightly_pipeline.heap import HeapTrim
from nightly_pipeline.loadgen.errors import ConfigError
from nightly_pipeline.loadgen.executors import ConstantVus, validate
from nightly_pipeline.loadgen.executors.base import ExecutorConfig
from nightly_pipeline.loadgen.fleet_wire import FleetSettings
from nightly_pipeline.loadgen.http_client import HttpClient
from nightly_pipeline.loadgen.interrupts import Interrupts, deferred_interrupts
from nightly_pipeline.loadgen.recorder import Recorder
from nightly_pipeline.loadgen.runtime import Execution, run_closed_model, run_open_model, ticker
from nightly_pipeline.loadgen.safety import check_target
from nightly_pipeline.loadgen.scenario import call_setup, call_teardown
from nightly_pipeline.loadgen.summary import summary_export
from nightly_pipeline.loadgen.thresholds import (
    ThresholdEvaluator,
    ThresholdResult,
    parse_thresholds,
)

START_MARGIN_S = 0.25
"""Workers get this long between the start signal and the first arrival."""

WORKER_READY_TIMEOUT_S = 60.0
STRAGGLER_GRACE_S = 30.0
"""How long past its graceful stop a worker may take before it is killed."""


@dataclass(frozen=True)
class HttpSettings:
    max_connections: int = 1024
    connect_timeout_s: float = 5.0
    timeout_s: float = 30.0
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class LoadTest:
    """One load test: what to run, against what, how hard, and what must hold."""

    executor: ExecutorConfig
    scenario: object
    base_url: str
    thresholds: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    workers: int = 1
    allow_hosts: tuple[str, ...] = ()
    http: HttpSettings = HttpSettings()
    generator_lag_limit_ms: float = 25.0
    late_threshold_ms: float = 10.0
    fleet: FleetSettings | None = None
    """Generate the load on ``workers`` Celery workers (other hosts) instead of local
    processes; None: on this host."""

    def validate(self) -> None:
        """Raise ConfigError (all problems at once) or TargetNotAllowedError."""
        problems = self.executor.errors()
        if not 1 <= self.workers <= 64:
            problems.append(f"workers must be in [1, 64], got {self.workers}")
        if not hasattr(self.scenario, "iteration"):
            problems.append(f"scenario {self.scenario!r} has no async iteration(vu) method")
        if self.fleet is not None:
            problems.extend(self.fleet.errors())
        if problems:
            listing = "\n  - ".join(problems)
            raise ConfigError(f"invalid load test:\n  - {listing}")
        validate(self.executor)
        parse_thresholds(self.thresholds)
        check_target(self.base_url, self.allow_hosts)


@dataclass(frozen=True)
class Progress:
    elapsed_s: float
    duration_s: float
    iterations: int
    dropped: int
    errors: int
    rate_per_s: float = 0.0  # iterations started per second over the last closed seconds
    p95_ms: float | None = None  # http_req_duration p95 over the same seconds


@dataclass
class LoadResult:
    recorder: Recorder
    thresholds: list[ThresholdResult]
    counts: dict[str, int]
    aborted: str | None
    scheduling_lag_p99_ms: float
    generator_bound: bool
    evidence: dict[str, list[str]] = field(default_factory=dict)
    """What a scenario saw behind a metric (the leaked frame, the blocking statement),
    by metric name: a failing check on that metric names it in its detail."""

    def add_evidence(self, metric: str, line: str, keep: int = 5) -> None:
        """Note ``line`` behind ``metric``; the first ``keep`` lines are kept."""
        lines = self.evidence.setdefault(metric, [])
        if len(lines) < keep:
            lines.append(line)

    @property
    def passed(self) -> bool:
        return self.aborted is None and all(t.passed for t in self.thresholds)

    def summary_export(self) -> dict[str, Any]:
        """The k6 ``--summary-export`` JSON of this run."""
        return summary_export(self.recorder, self.thresholds)


ProgressCallback = Callable[[Progress], None]
StopWhen = Callable[[], bool]
"""Asked once a closed second: True ends the load there, gracefully (in-flight iterations
finish) and not as an abort; the executor's duration still bounds it."""


def run_load(
    test: LoadTest, progress: ProgressCallback | None = None, until: StopWhen | None = None
) -> LoadResult:
    """Run ``test`` to completion (it stops by itself, or once ``until()``) and return
    its result."""
    test.validate()
    if test.fleet is not None:
        from nightly_pipeline.loadgen.fleet import run_fleet  # imports Celery: only when used

        return run_fleet(test, progress, until)
    if test.workers == 1:
        return _run_single(test, progress, until)
    return _run_multi(test, progress, until)


def _ws_base(base_url: str) -> str:
    return "ws" + base_url[4:] if base_url.startswith("http") else base_url


async def _execute(
    test: LoadTest,
    config: ExecutorConfig,
    recorder: Recorder,
    on_second: Callable[[Execution, float], None],
    wait_for_start: Callable[[], float],
) -> dict[str, int]:
    """Set up the scenario, run ``config`` in this event loop, tear down; return counts."""
    http = test.http
    client = HttpClient(
        test.base_url,
        max_connections=http.max_connections,
        connect_timeout=http.connect_timeout_s,
        timeout=http.timeout_s,
        default_headers=http.headers,
        allow_hosts=test.allow_hosts,
    )
    try:
        await call_setup(test.scenario, getattr(config, "worker", 0), getattr(config, "workers", 1))
        run_start = wait_for_start()
        recorder.run_start = run_start
        ex = Execution(
            test.scenario,
            recorder,
            client,
            _ws_base(test.base_url),
            test.allow_hosts,
            run_start,
            late_threshold_s=test.late_threshold_ms / 1000.0,
        )
        delay = run_start - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        heap = HeapTrim()
        tick = asyncio.create_task(
            ticker(1.0, run_start, lambda now: _tick(ex, now, on_second, heap))
        )
        gc.freeze()
        try:
            if isinstance(config, ConstantVus):
                await run_closed_model(config, ex)
            else:
                await run_open_model(config.offsets(), config.max_vus, config.bounds, ex)  # type: ignore[attr-defined]
        finally:
            tick.cancel()
            heap.join()
            gc.unfreeze()  # the run's cyclic garbage is collectable again
        return ex.counts
    finally:
        await call_teardown(test.scenario)
        await client.aclose()


def _tick(
    ex: Execution, now: float, on_second: Callable[[Execution, float], None], heap: HeapTrim
) -> None:
    """Once a second: collect the cyclic garbage made since the last tick, move everything
    still alive into the collector's permanent generation, then the second's bookkeeping,
    then (every few seconds) the C heap's free pages back to the system (``heap``).

    Why freeze: a full (generation 2) collection scans every tracked object; as the run's
    objects piled up (delivery receipts, histograms, buffered rows) those pauses grew to
    250-800 ms every ~15 s at 500 msg/s, stalling the generator and then sending the
    missed arrivals as a burst. Frozen, a collection scans only the last second's objects.

    Why collect first: freezing moves cyclic garbage too, and frozen garbage is never
    freed until ``gc.unfreeze()`` at the run's end. Every thread's garbage: the sampler's
    httpx responses (a cycle each, with the scrape's text), hdrh's encoding buffers; Test
    01's generator held ~1 MB a minute more of it (tracemalloc, bench/generator_memory.py
    --trace). The explicit collection before the freeze scans only what the last second
    left (the rest is frozen): at 500 msg/s, median 0.9 ms, p99 34 ms (180 ticks)."""
    gc.collect()
    gc.freeze()
    on_second(ex, now)
    heap.maybe()


def _new_runner() -> asyncio.Runner:
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


PROGRESS_WINDOW_S = 5
"""Rate and p95 of a progress report are over the last closed seconds, up to this many."""


def _progress_of(recorder: Recorder, elapsed: float, duration: float) -> Progress:
    names = _names(recorder)

    def count(name: str, key: str = "count") -> int:
        return int(recorder.stats(name).get(key, 0)) if name in names else 0

    end = recorder.closed_until
    start = max(0, end - PROGRESS_WINDOW_S)
    rate, p95 = 0.0, None
    if end > start and "iterations" in names:
        rate = recorder.window_stats("iterations", None, start, end).get("count", 0) / (end - start)
    if end > start and "http_req_duration" in names:
        p95 = recorder.window_stats("http_req_duration", None, start, end).get("p(95)")
    return Progress(
        elapsed,
        duration,
        count("iterations"),
        count("dropped_iterations"),
        # failed requests (unexpected status or no answer: http_req_failed's passes), not
        # only transport errors: a run answering 30 % 503s must not read "errors 0"
        count("iteration_errors") + count("http_req_failed", "passes"),
        rate,
        p95,
    )


def _names(recorder: Recorder) -> set[str]:
    return {key[0] for key in recorder.metric_keys()}


def _finish(
    recorder: Recorder,
    evaluator: ThresholdEvaluator,
    counts: dict[str, int],
    aborted: str | None,
    test: LoadTest,
) -> LoadResult:
    lag_p99 = 0.0
    if "iteration_scheduling_lag" in _names(recorder):
        lag_p99 = recorder.stats("iteration_scheduling_lag").get("p(99)", 0.0)
    return LoadResult(
        recorder,
        evaluator.final(),
        counts,
        aborted,
        lag_p99,
        lag_p99 > test.generator_lag_limit_ms,
    )


def _abort_reason(failing: list[ThresholdResult]) -> str:
    first = failing[0]
    return f"threshold {first.metric} {first.expression!r} failed (observed {first.observed:g})"


def _run_single(
    test: LoadTest, progress: ProgressCallback | None, until: StopWhen | None
) -> LoadResult:
    recorder = Recorder(time.perf_counter())
    evaluator = ThresholdEvaluator(parse_thresholds(test.thresholds), recorder)
    duration = test.executor.bounds.duration_s
    aborted: list[str] = []

    def on_second(ex: Execution, now: float) -> None:
        recorder.close_seconds(now)
        elapsed = now - ex.run_start
        failing = evaluator.check_live(elapsed)
        reason = _abort_reason(failing) if failing else interrupts.reason
        if reason and not aborted:
            aborted.append(reason)
            ex.stop.set()
        elif until is not None and not ex.stop.is_set() and until():
            ex.stop.set()
        if progress is not None:
            progress(_progress_of(recorder, elapsed, duration))

    with deferred_interrupts() as interrupts, _new_runner() as runner:
        counts = runner.run(
            _execute(test, test.executor, recorder, on_second, lambda: time.perf_counter())
        )
    recorder.close_all()
    return _finish(recorder, evaluator, counts, aborted[0] if aborted else None, test)


# ---------------------------------------------------------------- worker processes


def _worker_main(conn: Connection, test: LoadTest, index: int, count: int) -> None:
    """Entry point of a worker process: run its share, stream seconds to the parent.

    Ctrl-C reaches the whole process group: workers ignore it, the parent stops them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    config = test.executor.for_worker(index, count)
    recorder = Recorder(time.perf_counter())

    def wait_for_start() -> float:
        conn.send(("ready", index))
        message = conn.recv()
        if message[0] != "start":
            raise SystemExit(0)
        return float(message[1])

    def on_second(ex: Execution, now: float) -> None:
        conn.send(("seconds", recorder.close_seconds(now), recorder.closed_until))
        while conn.poll():
            if conn.recv()[0] == "stop":
                ex.stop.set()

    try:
        with _new_runner() as runner:
            counts = runner.run(_execute(test, config, recorder, on_second, wait_for_start))
        conn.send(("done", recorder.close_all(), counts))
    except Exception as exc:
        conn.send(("error", f"worker {index}: {type(exc).__name__}: {exc}"))
        raise
    finally:
        conn.close()


def _run_multi(
    test: LoadTest, progress: ProgressCallback | None, until: StopWhen | None
) -> LoadResult:
    ctx = mp.get_context("spawn")
    procs: list[mp.process.BaseProcess] = []
    conns: list[Connection] = []
    try:
        for index in range(test.workers):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_worker_main, args=(child, test, index, test.workers), daemon=True
            )
            proc.start()
            child.close()
            procs.append(proc)
            conns.append(parent)
        with deferred_interrupts() as interrupts:
            return _supervise(test, conns, progress, interrupts, until)
    finally:
        for conn in conns:  # after an error the workers may still be running: stop them
            with contextlib.suppress(OSError):
                conn.send(("stop",))
        for proc in procs:
            proc.join(timeout=5.0)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5.0)
        for conn in conns:
            conn.close()


class WorkerMerge:
    """The coordinator's side of a split load, wherever its workers run (local processes,
    or a fleet's Celery tasks): their closed seconds and final counts merged exactly into
    one recorder, and the live thresholds judged only on seconds every running worker has
    closed."""

    def __init__(
        self,
        test: LoadTest,
        run_start: float,
        progress: ProgressCallback | None,
        until: StopWhen | None,
    ) -> None:
        self.test = test
        self.recorder = Recorder(run_start)
        self.evaluator = ThresholdEvaluator(parse_thresholds(test.thresholds), self.recorder)
        bounds = test.executor.bounds
        self.duration_s = bounds.duration_s
        self.hard_stop = run_start + bounds.duration_s + bounds.graceful_stop_s + STRAGGLER_GRACE_S
        self.progress = progress
        self.until = until
        self.counts: dict[str, int] = {}
        self.aborted: str | None = None
        self.last_checked = 0
        self.stopping = False

    def done(self, snapshot: Any, counts: Mapping[str, int]) -> None:
        """A worker's last seconds and its iteration counts."""
        self.recorder.ingest(snapshot)
        for key, value in counts.items():
            self.counts[key] = self.counts.get(key, 0) + value

    def judge(
        self, closed_until: Iterable[int], interrupted: str | None, stop: Callable[[], None]
    ) -> None:
        """Judge up to the least second the running workers have closed; ``stop()`` them
        once, on an abort, an interrupt or ``until()``; then report progress."""
        complete = min(closed_until, default=self.last_checked)
        if complete <= self.last_checked:
            return
        self.last_checked = complete
        failing = self.evaluator.check_live(float(complete))
        if (failing or interrupted) and self.aborted is None:
            self.aborted = _abort_reason(failing) if failing else interrupted
        ended = self.aborted is not None or (self.until is not None and self.until())
        if ended and not self.stopping:
            self.stopping = True
            stop()
        if self.progress is not None:
            self.progress(_progress_of(self.recorder, float(complete), self.duration_s))

    def result(self) -> LoadResult:
        return _finish(self.recorder, self.evaluator, self.counts, self.aborted, self.test)


def _supervise(
    test: LoadTest,
    conns: list[Connection],
    progress: ProgressCallback | None,
    interrupts: Interrupts,
    until: StopWhen | None = None,
) -> LoadResult:
    """Start the workers together, merge their seconds, stop them all on an abort (or,
    not aborted, once ``until()``)."""
    ready = 0
    give_up = time.monotonic() + WORKER_READY_TIMEOUT_S
    while ready < len(conns):
        if not wait(conns, timeout=max(0.0, give_up - time.monotonic())):
            raise ConfigError(f"load workers not ready after {WORKER_READY_TIMEOUT_S:.0f} s")
        for conn in conns:
            if conn.poll():
                kind, *rest = _recv(conn)
                if kind == "error":
                    raise ConfigError(
                        f"load worker failed to start: {rest[0]}. Workers are spawned: the"
                        " scenario must be importable and picklable, and a script calling"
                        " run_load(workers>1) must guard it with `if __name__ == '__main__':`"
                    )
                ready += kind == "ready"
    run_start = time.perf_counter() + START_MARGIN_S
    for conn in conns:
        conn.send(("start", run_start))

    merge = WorkerMerge(test, run_start, progress, until)
    live = set(conns)
    closed_until = dict.fromkeys(conns, 0)  # whole seconds each worker has closed

    def stop() -> None:
        for conn in live:
            with contextlib.suppress(OSError):
                conn.send(("stop",))

    while live:
        if time.perf_counter() > merge.hard_stop:
            merge.aborted = merge.aborted or "load workers did not stop in time and were killed"
            break
        for conn in wait(list(live), timeout=0.5):
            message = _recv(conn)
            if message[0] == "seconds":
                merge.recorder.ingest(message[1])
                closed_until[conn] = message[2]
            elif message[0] == "done":
                merge.done(message[1], message[2])
                live.discard(conn)
            else:  # "error" or a worker that died (EOF)
                merge.aborted = merge.aborted or str(message[1])
                live.discard(conn)

        merge.judge((closed_until[c] for c in live), interrupts.reason, stop)
    return merge.result()


def _recv(conn: Connection) -> tuple[Any, ...]:
    try:
        return conn.recv()
    except (EOFError, OSError):
        return ("error", "a load worker exited without reporting (killed?)")
