"""The API's Redis connection pool, watched: how many of its connections are in use.

A scrape every second would miss the bursts between scrapes, so the pool notes the
in-use count at every checkout and ``redis_pool_in_use_peak`` reports the largest count
of the last ``PEAK_WINDOW_S`` seconds (a window longer than the scrape interval: every
checkout is seen by at least one scrape). Utilization = peak / ``redis_pool_max_connections``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from nightly_pipeline.testbed.metrics import Gauge

PEAK_WINDOW_S = 2
IN_USE = Gauge("redis_pool_in_use", "API Redis pool connections in use (at scrape time)")
IN_USE_PEAK = Gauge(
    "redis_pool_in_use_peak",
    f"Most API Redis pool connections in use at once in the last {PEAK_WINDOW_S} s",
)
MAX_CONNECTIONS = Gauge("redis_pool_max_connections", "API Redis pool size")


class WindowPeak:
    """The largest value noted in the last ``window_s`` whole seconds."""

    def __init__(self, window_s: int = PEAK_WINDOW_S, clock: Callable[[], float] = time.monotonic):
        self.window_s = window_s
        self.clock = clock
        self._per_second: dict[int, int] = {}

    def note(self, value: int) -> None:
        sec = int(self.clock())
        if value > self._per_second.get(sec, -1):
            self._per_second[sec] = value
        if len(self._per_second) > self.window_s + 1:
            self._prune(sec)

    def value(self) -> int:
        sec = int(self.clock())
        self._prune(sec)
        return max(self._per_second.values(), default=0)

    def _prune(self, sec: int) -> None:
        for old in [s for s in self._per_second if s <= sec - self.window_s]:
            del self._per_second[old]


class WatchedPool(aioredis.ConnectionPool):
    """A redis-py pool that notes its in-use count at every checkout."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.peak = WindowPeak()

    def get_available_connection(self) -> Any:
        connection = super().get_available_connection()
        self.peak.note(len(self._in_use_connections))
        return connection

    def in_use(self) -> int:
        return len(self._in_use_connections)


def watched_redis(url: str, max_connections: int, **kwargs: Any) -> aioredis.Redis:
    """A client owning a :class:`WatchedPool` (closed with the client)."""
    pool = WatchedPool.from_url(url, max_connections=max_connections, **kwargs)
    return aioredis.Redis.from_pool(pool)


def export(client: aioredis.Redis) -> None:
    """Set the gauges from ``client``'s pool (called when /metrics is rendered)."""
    pool = client.connection_pool
    if isinstance(pool, WatchedPool):
        IN_USE.set(pool.in_use())
        IN_USE_PEAK.set(pool.peak.value())
        MAX_CONNECTIONS.set(pool.max_connections)
