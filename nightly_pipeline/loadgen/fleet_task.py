"""The generator fleet's Celery task: run worker k of n's share of one load test on
this host and stream its closed seconds to the coordinator (loadgen/fleet.py).

The share is the local worker processes' share (runner.py ``_worker_main``): every
n-th arrival of the schedule from a shared start, recorded into its own Recorder. The
differences are the channel (Redis lists, fleet_wire.py) and the clock: hosts share no
``perf_counter``, so the start is an epoch time (hosts are expected to keep NTP time;
an offset between them shifts a worker's seconds by that much) turned into this host's
``perf_counter`` on arrival. The safety rule holds here too: the test is validated on
this host before any request (loopback of this host, or its ``allow_hosts``).

Run a worker (one share at a time; the broker URL comes from its command line)::

    celery -A nightly_pipeline.loadgen.fleet_task -b redis://HOST:6379/0 \\
        worker -Q nightly-loadgen -c 1
"""

from __future__ import annotations

import math
import os
import pickle
import socket
import time
from typing import Any

from celery import Celery, Task
from redis import Redis
from redis.exceptions import RedisError

from nightly_pipeline.loadgen.errors import LoadgenError
from nightly_pipeline.loadgen.fleet_wire import KEY_TTL_S, TASK_NAME, FleetKeys, encode
from nightly_pipeline.loadgen.recorder import Recorder, SecondSnapshot
from nightly_pipeline.loadgen.runner import LoadTest, _execute, _new_runner
from nightly_pipeline.loadgen.runtime import Execution


def configure(app: Celery) -> Celery:
    """The settings coordinator and workers share: JSON task arguments (the test itself
    travels through Redis), and a worker takes a share only when it can run it now."""
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        worker_prefetch_multiplier=1,  # a busy worker leaves the next share to another
        task_acks_late=True,
        task_track_started=True,
        broker_connection_retry_on_startup=True,
    )
    return app


app = configure(Celery("nightly_pipeline.loadgen.fleet_task"))


MAX_CLOCK_OFFSET_S = 60.0
"""A start further than this from the worker's clock means the hosts' clocks disagree."""


class FleetWorkerError(LoadgenError):
    """A fleet worker cannot run its share (the message says which and why)."""


class StoppedBeforeStart(Exception):
    """The coordinator ended the run before its start (another worker failed)."""


class _Channel:
    """This worker's side of the fleet run's Redis keys."""

    def __init__(self, redis: Redis, keys: FleetKeys, index: int) -> None:
        self.redis = redis
        self.keys = keys
        self.index = index

    def send(self, kind: str, payload: Any) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.rpush(self.keys.out, encode(self.index, kind, payload))
        pipe.expire(self.keys.out, KEY_TTL_S)
        pipe.execute()

    def send_seconds(self, snapshots: list[SecondSnapshot], closed_until: int) -> bool:
        """Send the closed seconds (also the heartbeat); True once told to stop, or
        once the coordinator's heartbeat is gone (it was killed: nobody merges this).
        One round trip a second, from the event loop (local Redis: ~0.1 ms)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.rpush(self.keys.out, encode(self.index, "seconds", (snapshots, closed_until)))
        pipe.expire(self.keys.out, KEY_TTL_S)
        pipe.exists(self.keys.stop)
        pipe.exists(self.keys.alive)
        *_, stop, alive = pipe.execute()
        return bool(stop) or not alive

    def wait_start(self, timeout_s: float) -> float:
        """The shared start (epoch seconds); StoppedBeforeStart when the coordinator
        ended the run first (it pushes -1), FleetWorkerError after ``timeout_s``."""
        item = self.redis.blpop([self.keys.start(self.index)], timeout=math.ceil(timeout_s))
        if item is not None and float(item[1]) < 0:
            raise StoppedBeforeStart()
        if item is None:
            raise FleetWorkerError(
                f"no start from the coordinator within {timeout_s:.0f} s (it stopped, or"
                f" another worker never became ready)"
            )
        start = float(item[1])
        ahead = start - time.time()
        if not -MAX_CLOCK_OFFSET_S < ahead < MAX_CLOCK_OFFSET_S:
            raise FleetWorkerError(
                f"the shared start is {ahead:+.0f} s from this host's clock: its clock and the"
                " coordinator's disagree; keep the generator hosts on NTP time"
            )
        return start


def run_share_of(test: LoadTest, index: int, count: int, channel: _Channel, wait_s: float) -> dict:
    """Run worker ``index`` of ``count``'s share of ``test``, streaming its seconds."""
    config = test.executor.for_worker(index, count)
    recorder = Recorder(time.perf_counter())

    def wait_for_start() -> float:
        channel.send("ready", None)
        start_epoch = channel.wait_start(wait_s)
        return time.perf_counter() + (start_epoch - time.time())

    def on_second(ex: Execution, now: float) -> None:
        try:
            told = channel.send_seconds(recorder.close_seconds(now), recorder.closed_until)
        except RedisError:
            told = True  # no one hears this share any more: no unsupervised load
        if told:
            ex.stop.set()

    with _new_runner() as runner:
        counts = runner.run(_execute(test, config, recorder, on_second, wait_for_start))
    channel.send("done", (recorder.close_all(), counts))
    return counts


@app.task(name=TASK_NAME, bind=True)
def run_share(task: Task, run_id: str, index: int, count: int, wait_s: float) -> dict[str, Any]:
    """Celery entry point; the return value is only a summary (figures went to Redis)."""
    keys = FleetKeys(run_id)
    host = task.request.hostname or socket.gethostname()
    url = task.app.connection_for_write().as_uri(include_password=True)
    with Redis.from_url(url) as redis:
        blob = redis.get(keys.test)
        if blob is None:  # the run is over: an expired or redelivered task
            return {"run": run_id, "index": index, "skipped": True}
        channel = _Channel(redis, keys, index)
        channel.send("accepted", (host, os.getpid()))
        try:
            try:
                test = pickle.loads(blob)
            except Exception as exc:
                raise FleetWorkerError(
                    f"cannot load the test ({type(exc).__name__}: {exc}): install the same"
                    " nightly_pipeline (and the scenario's module) on every generator host"
                ) from exc
            test.validate()  # the safety rule, on this host
            counts = run_share_of(test, index, count, channel, wait_s)
        except StoppedBeforeStart:
            return {"run": run_id, "index": index, "host": host, "stopped_before_start": True}
        except BaseException as exc:
            channel.send("error", f"fleet worker {index} on {host}: {type(exc).__name__}: {exc}")
            raise
    return {"run": run_id, "index": index, "host": host, **counts}
