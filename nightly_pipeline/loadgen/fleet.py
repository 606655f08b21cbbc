"""The generator fleet's coordinator: one test's load split across N Celery workers.

It does what ``runner._run_multi`` does with local processes, over Redis: put the test
where the workers read it, dispatch N ``run_share`` tasks (worker k takes every N-th
arrival), wait until every share is set up, send them one shared start time, merge the
seconds they stream as they close (exact: encoded HdrHistograms and integer sums, the
Recorder's ``ingest``), judge live thresholds on the seconds every worker has closed,
and tell them all to stop on an abort or once ``until()``. The result is the same
LoadResult as on one host.

The coordinator keeps a heartbeat key alive (expiring after ``silence_limit_s``): a
worker that finds it gone stops its load, so a coordinator killed -9 leaves no load
running for longer than that. Every wait is bounded: workers not ready in
``ready_timeout_s``, a worker silent for ``silence_limit_s`` (it reports once a second)
or one still running past the run's end plus grace is an error naming it (FleetError),
never a hang; the others are then told to stop. The run's keys are deleted at the end
and expire by themselves anyway (fleet_wire.KEY_TTL_S).
"""

from __future__ import annotations

import contextlib
import pickle
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from celery.result import AsyncResult
from redis import Redis
from redis.exceptions import RedisError

from nightly_pipeline.loadgen.errors import LoadgenError
from nightly_pipeline.loadgen.fleet_task import configure
from nightly_pipeline.loadgen.fleet_wire import (
    KEY_TTL_S,
    TASK_NAME,
    FleetKeys,
    FleetSettings,
    Message,
    decode,
)
from nightly_pipeline.loadgen.interrupts import Interrupts, deferred_interrupts
from nightly_pipeline.loadgen.runner import (
    STRAGGLER_GRACE_S,
    LoadResult,
    LoadTest,
    ProgressCallback,
    StopWhen,
    WorkerMerge,
)

DRAIN_BATCH = 256
POLL_S = 0.5


class FleetError(LoadgenError):
    """The fleet could not run the test: the message names the worker and the fix."""


@dataclass
class _Worker:
    index: int
    task_id: str
    host: str = "?"
    pid: int = 0
    heard: float = field(default_factory=time.monotonic)
    closed_until: int = 0
    done: bool = False

    def name(self, count: int) -> str:
        where = f"host {self.host}, pid {self.pid}" if self.pid else "not yet started"
        return f"fleet worker {self.index} of {count} ({where}, Celery task {self.task_id})"


def run_fleet(
    test: LoadTest, progress: ProgressCallback | None = None, until: StopWhen | None = None
) -> LoadResult:
    """Run ``test`` on ``test.workers`` fleet workers (``test.fleet``); see the module."""
    fleet = test.fleet
    if fleet is None:
        raise FleetError("run_fleet needs a test with fleet settings (LoadTest.fleet)")
    test.validate()
    keys = FleetKeys(uuid.uuid4().hex)
    app = configure(Celery("nightly-fleet", broker=fleet.broker_url, backend=fleet.broker_url))
    redis = Redis.from_url(fleet.broker_url)
    workers: list[_Worker] = []
    try:
        try:
            blob = pickle.dumps(test, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise FleetError(
                f"the test cannot travel to the fleet ({type(exc).__name__}: {exc}): its"
                " scenario must be picklable and importable on every generator host"
            ) from exc
        try:
            redis.set(keys.test, blob, ex=KEY_TTL_S)
        except RedisError as exc:
            raise FleetError(
                f"the fleet's Redis at {fleet.broker_url} is unreachable ({exc}): start it or"
                " fix the fleet broker_url"
            ) from exc
        bounds = test.executor.bounds
        lifetime = fleet.ready_timeout_s + bounds.duration_s + bounds.graceful_stop_s + 60
        for index in range(test.workers):
            sent = app.send_task(
                TASK_NAME,
                args=[keys.run_id, index, test.workers, fleet.ready_timeout_s],
                queue=fleet.queue,
                expires=fleet.ready_timeout_s,
                time_limit=lifetime + STRAGGLER_GRACE_S,
            )
            workers.append(_Worker(index, sent.id))
        coordinator = _Coordinator(test, fleet, keys, redis, workers)
        coordinator.wait_ready()  # Ctrl-C here raises at once: no load runs yet
        with deferred_interrupts() as interrupts:
            return coordinator.run(progress, until, interrupts)
    finally:
        _wind_up(app, redis, keys, workers, test)


class _Coordinator:
    def __init__(
        self,
        test: LoadTest,
        fleet: FleetSettings,
        keys: FleetKeys,
        redis: Redis,
        workers: list[_Worker],
    ) -> None:
        self.test, self.fleet, self.keys, self.redis = test, fleet, keys, redis
        self.workers = workers
        self.beaten = 0.0

    def messages(self) -> Iterator[Message | None]:
        """The workers' messages in order; None after a pass that emptied the list."""
        item = self.redis.blpop([self.keys.out], timeout=POLL_S)
        if item is None:
            yield None
            return
        batch = [item[1], *(self.redis.lpop(self.keys.out, DRAIN_BATCH) or [])]
        for blob in batch:
            yield decode(blob)
        if len(batch) < DRAIN_BATCH + 1:
            yield None

    def failed(self, worker: _Worker, text: str) -> FleetError:
        return FleetError(f"{worker.name(len(self.workers))} failed: {text}")

    def wait_ready(self) -> None:
        count = len(self.workers)
        ready: set[int] = set()
        give_up = time.monotonic() + self.fleet.ready_timeout_s
        while len(ready) < count:
            if time.monotonic() > give_up:
                missing = [w.name(count) for w in self.workers if w.index not in ready]
                raise FleetError(
                    f"{len(missing)} of {count} fleet workers not ready after"
                    f" {self.fleet.ready_timeout_s:.0f} s: {'; '.join(missing)}. Start {count}"
                    f" workers (one share each): celery -A nightly_pipeline.loadgen.fleet_task"
                    f" -b <broker> worker -Q {self.fleet.queue} -c 1"
                )
            for message in self.messages():
                if message is None:
                    continue
                index, kind, payload = message
                worker = self.workers[index]
                if kind == "accepted":
                    worker.host, worker.pid = payload
                elif kind == "ready":
                    ready.add(index)
                elif kind == "error":
                    raise self.failed(worker, str(payload))

    def run(
        self, progress: ProgressCallback | None, until: StopWhen | None, interrupts: Interrupts
    ) -> LoadResult:
        test, fleet = self.test, self.fleet
        start_epoch = time.time() + fleet.start_margin_s
        run_start = time.perf_counter() + fleet.start_margin_s
        pipe = self.redis.pipeline(transaction=False)
        self.beat(pipe)
        for worker in self.workers:
            pipe.rpush(self.keys.start(worker.index), repr(start_epoch))
            pipe.expire(self.keys.start(worker.index), KEY_TTL_S)
        pipe.execute()

        merge = WorkerMerge(test, run_start, progress, until)
        live = {w.index: w for w in self.workers}
        for worker in live.values():
            worker.heard = time.monotonic() + fleet.start_margin_s
        count = len(self.workers)
        while live:
            if time.perf_counter() > merge.hard_stop:
                names = "; ".join(w.name(count) for w in live.values())
                raise FleetError(
                    f"{names}: still running {STRAGGLER_GRACE_S:.0f} s past the run's end and"
                    " graceful stop; they were told to stop. Check their logs"
                )
            if time.monotonic() - self.beaten > 1.0:
                self.beat(self.redis)
            for message in self.messages():
                if message is None:  # caught up: judge silence now, not on a backlog
                    self.check_silence(live)
                    continue
                index, kind, payload = message
                worker = self.workers[index]
                worker.heard = time.monotonic()
                if kind == "seconds":
                    merge.recorder.ingest(payload[0])
                    worker.closed_until = payload[1]
                elif kind == "done":
                    merge.done(payload[0], payload[1])
                    live.pop(index, None)
                    worker.done = True
                elif kind == "error":
                    raise self.failed(worker, str(payload))
            merge.judge(
                (w.closed_until for w in live.values()),
                interrupts.reason,
                lambda: self.redis.set(self.keys.stop, "1", ex=KEY_TTL_S),
            )
        return merge.result()

    def beat(self, redis: Redis | Any) -> None:
        """The coordinator's heartbeat: while it lasts the workers keep their load up."""
        redis.set(self.keys.alive, "1", ex=max(2, round(self.fleet.silence_limit_s)))
        self.beaten = time.monotonic()

    def check_silence(self, live: dict[int, _Worker]) -> None:
        now = time.monotonic()
        for worker in live.values():
            silent = now - worker.heard
            if silent > self.fleet.silence_limit_s:
                raise FleetError(
                    f"{worker.name(len(self.workers))} lost: nothing from it for"
                    f" {silent:.0f} s (it reports every second). It was killed, or its host"
                    " or its link to Redis is down; the run is stopped and the other workers"
                    " told to stop. See that worker's log, then rerun"
                )


def _wind_up(
    app: Celery, redis: Redis, keys: FleetKeys, workers: list[_Worker], test: LoadTest
) -> None:
    """Tell the shares still running to stop (the stop key, kept while they may run),
    revoke those not started (they also expire, and return at once without the test
    key), delete the run's keys. Bounded; never raises over the run's own error."""
    bounds = test.executor.bounds
    stop_ttl = int(bounds.duration_s + bounds.graceful_stop_s + STRAGGLER_GRACE_S + 60)
    running = [w for w in workers if not w.done]
    with contextlib.suppress(RedisError):
        pipe = redis.pipeline(transaction=False)
        pipe.set(keys.stop, "1", ex=stop_ttl)
        pipe.delete(keys.test, keys.alive, *(keys.start(w.index) for w in workers))
        for worker in running:  # one still waiting for its start: "-1" ends it at once
            pipe.rpush(keys.start(worker.index), "-1")
            pipe.expire(keys.start(worker.index), 60)
        if not running:  # nobody writes any more
            pipe.delete(keys.out, keys.stop)
        pipe.execute()
    for worker in running:
        with contextlib.suppress(Exception):
            if AsyncResult(worker.task_id, app=app).state == "PENDING":
                app.control.revoke(worker.task_id)
    with contextlib.suppress(Exception):
        redis.close()
    with contextlib.suppress(Exception):
        app.close()
