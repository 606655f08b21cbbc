"""The platform's datastores while a test runs: Redis ``used_memory`` (``INFO memory``) and
the database's size (``pg_database_size(current_database())``), sampled every
``interval_s`` on a thread, recorded as the gauges ``redis_used_memory_mb`` and
``database_size_mb`` (value at the end, min, max): the resources figures of every test.

A process's RSS does not show a stream that keeps every delivered message (Redis grew
from 0.2 to 1.5 GB over a full Test 01, Issue 15) or a table that is never vacuumed.

The addresses are the embedded platform's (``ChaosBackend.datastores``) or, for an
external target, the DSN of its ``migration`` (Redis is then not read); what cannot be
read is listed in ``skipped``, with why, for the run's log.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

import asyncpg
import redis

from nightly_pipeline.loadgen.recorder import Recorder
from nightly_pipeline.suite.target import Target

REDIS_GAUGE, DATABASE_GAUGE = "redis_used_memory_mb", "database_size_mb"
TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Addresses:
    redis_url: str | None
    dsn: str | None
    skipped: tuple[str, ...]  # why a figure is not measured, one line each


def addresses(target: Target) -> Addresses:
    stores = dict(target.chaos.datastores()) if target.chaos is not None else {}
    redis_url = stores.get("redis")
    dsn = stores.get("postgres") or (target.migration.dsn if target.migration else None)
    skipped = []
    if redis_url is None:
        skipped.append(f"{REDIS_GAUGE} not measured: {target.name} offers no Redis address")
    if dsn is None:
        skipped.append(
            f"{DATABASE_GAUGE} not measured: {target.name} names no database"
            " (give the target file a migration with dsn_env)"
        )
    return Addresses(redis_url, dsn, tuple(skipped))


def redis_used_memory_mb(url: str) -> float:
    client = redis.Redis.from_url(url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S)
    try:
        return int(client.info("memory")["used_memory"]) / 2**20
    finally:
        client.close()


async def _database_size(dsn: str) -> int:
    conn = await asyncpg.connect(dsn, timeout=TIMEOUT_S)
    try:
        return int(await conn.fetchval("SELECT pg_database_size(current_database())"))
    finally:
        await conn.close()


def database_size_mb(dsn: str) -> float:
    return asyncio.run(asyncio.wait_for(_database_size(dsn), TIMEOUT_S * 2)) / 2**20


@dataclass
class DatastoreSampler:
    """Sample both figures at entry (on its thread), every ``interval_s`` and at exit (at most
    ``max_samples``); a read that fails is counted, not raised (a chaos test cuts them)."""

    where: Addresses
    interval_s: float = 15.0
    max_samples: int = 1000
    samples: list[tuple[str, float, float]] = field(default_factory=list)  # (gauge, at, MB)
    failed_reads: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample_once(self) -> None:
        for gauge, read, address in (
            (REDIS_GAUGE, redis_used_memory_mb, self.where.redis_url),
            (DATABASE_GAUGE, database_size_mb, self.where.dsn),
        ):
            if address is None or len(self.samples) >= self.max_samples:
                continue
            try:
                self.samples.append((gauge, time.perf_counter(), read(address)))  # type: ignore[operator]
            except (
                OSError,
                redis.RedisError,
                asyncpg.PostgresError,
                asyncpg.InterfaceError,
                TimeoutError,
            ):
                self.failed_reads += 1

    def _run(self) -> None:
        self.sample_once()  # here, not in __enter__: the test starts without waiting
        while not self._stop.wait(self.interval_s) and len(self.samples) < self.max_samples:
            self.sample_once()

    def __enter__(self) -> DatastoreSampler:
        if self.where.redis_url is None and self.where.dsn is None:
            return self
        self._thread = threading.Thread(target=self._run, name="datastore-sizes", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=self.interval_s + 3 * TIMEOUT_S)
        self.sample_once()

    def record(self, recorder: Recorder) -> None:
        """Every sample as its gauge, in time order (the gauge's value: the last)."""
        for gauge, at, mb in sorted(self.samples, key=lambda s: s[1]):
            recorder.gauge(gauge, mb, at)
