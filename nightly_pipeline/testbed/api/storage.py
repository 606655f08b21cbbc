"""Storage adapters behind bounded retries and a circuit breaker (``breaker``), and the
probes of ``/v1/storage/{pg,stream,cache}`` (test 07)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
import redis.exceptions

from nightly_pipeline.testbed.api.breaker import (
    BREAKER_TRANSITIONS,
    ERRORS,
    BreakerOpen,
    CircuitBreaker,
    count_error,
    error_type,
)
from nightly_pipeline.testbed.metrics import Counter, Gauge

__all__ = [
    "BREAKER_TRANSITIONS",
    "ERRORS",
    "BreakerOpen",
    "CircuitBreaker",
    "StorageProbes",
    "count_error",
    "error_type",
    "guarded",
]

T = TypeVar("T")

RETRIES = Counter("storage_retries_total", "Storage operations retried")
POOL_IN_USE = Gauge("storage_pool_in_use", "PostgreSQL pool connections in use")
CACHE_HITS = Counter("storage_cache_hits_total", "Cache probe hits")
CACHE_MISSES = Counter("storage_cache_misses_total", "Cache probe misses")

REDIS_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    OSError,
    TimeoutError,
)
PROBE_STREAM = "storage:probe"
CACHE_PREFIX = "storage:cache:"


async def guarded(
    breaker: CircuitBreaker,
    op: Callable[[], Awaitable[T]],
    transient: tuple[type[BaseException], ...],
    attempts: int = 3,
    backoff_s: float = 0.02,
) -> T:
    """Run ``op`` through ``breaker`` with up to ``attempts`` tries on ``transient`` errors."""
    for attempt in range(attempts):
        try:
            breaker.before_call()
        except BreakerOpen as exc:
            count_error(exc)
            raise
        try:
            result = await op()
        except transient as exc:
            breaker.failure()
            count_error(exc)
            if attempt + 1 == attempts or breaker.state == "open":
                raise
            RETRIES.inc()
            await asyncio.sleep(backoff_s * 2**attempt)
            continue
        breaker.success()
        return result
    raise AssertionError("unreachable")


class StorageProbes:
    """The three probes; PostgreSQL goes through the API's pool (``db``)."""

    def __init__(
        self,
        db: Any,
        redis_client: aioredis.Redis,
        failures: int,
        reset_s: float,
        enabled: bool = True,
    ) -> None:
        self.db = db
        self.redis = redis_client
        self.stream_breaker = CircuitBreaker("stream", failures, reset_s, enabled=enabled)
        self.cache_breaker = CircuitBreaker("cache", failures, reset_s, enabled=enabled)

    async def pg(self) -> dict[str, Any]:
        payload = uuid.uuid4().hex
        async with self.db.tx() as conn:
            row_id = await conn.fetchval(
                "INSERT INTO storage_probe (payload) VALUES ($1) RETURNING id", payload
            )
            read = await conn.fetchval("SELECT payload FROM storage_probe WHERE id = $1", row_id)
        return {"adapter": "pg", "id": row_id, "ok": read == payload}

    async def stream(self) -> dict[str, Any]:
        async def op() -> bytes:
            return await self.redis.xadd(
                PROBE_STREAM, {"ts": f"{time.time():.6f}"}, maxlen=10_000, approximate=True
            )

        entry = await guarded(self.stream_breaker, op, REDIS_ERRORS)
        return {"adapter": "stream", "id": entry.decode() if isinstance(entry, bytes) else entry}

    async def cache(self, key: str) -> dict[str, Any]:
        full = CACHE_PREFIX + key

        async def op() -> tuple[bool, str]:
            value = await self.redis.get(full)
            if value is not None:
                return True, value.decode()
            fresh = uuid.uuid4().hex
            await self.redis.set(full, fresh, ex=60)
            return False, fresh

        hit, value = await guarded(self.cache_breaker, op, REDIS_ERRORS)
        (CACHE_HITS if hit else CACHE_MISSES).inc()
        return {"adapter": "cache", "key": key, "hit": hit, "value": value}
