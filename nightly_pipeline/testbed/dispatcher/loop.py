"""The dispatcher: outbox rows → Redis Stream entries.

One iteration, in one PostgreSQL transaction: claim up to ``batch`` due outbox rows
(``FOR UPDATE SKIP LOCKED``, so dispatchers can run side by side), ``XADD`` them in one
pipeline, mark the rows that were written as sent, defer the others with a capped
exponential backoff. The loop runs again at once after a full batch, after ``idle_poll_s``
otherwise.

A sent row is not deleted: the consumer deletes it once the message reached a gateway.
Until then it is due again after max(``outbox_redeliver_after_s``, its age), and at once
when Redis is found to have lost its data (``epoch``): a Redis killed and restarted
without persistence loses the stream entries not yet delivered, and they are sent again
from here. The consumer de-duplicates by message id.

Failures:
- Redis unreachable (connection refused/reset, timeout): the whole batch stays in the
  outbox, ``attempts`` goes up and ``messaging_dispatch_dlq_total{sink="redis"}`` counts
  the rows. The outbox *is* the DLQ: the rows never die of an outage (the seed's test 09
  wants zero permanent loss whatever the partition's length); with the backoff capped at
  ``backoff_cap_s`` they are replayed within that long of Redis coming back.
- Redis refuses an entry (an error reply to that ``XADD``): deferred the same way, and
  dead (``dead = true``, ``messaging_outbox_dead_total``) after ``dispatch_max_attempts``.
- PostgreSQL errors: the transaction rolls back, the pool's connections are replaced,
  the loop pauses ``error_pause_s``.
- Fault knob ``dlq_on_redis_error = false``: rows whose ``XADD`` failed are deleted
  (``messaging_dispatch_dropped_total``): lost for good.
- Fault knob ``stream_writable = false``: the entries go to ``<stream>:not-a-stream``, a
  key set to a string in the same pipeline, so Redis refuses every ``XADD`` (WRONGTYPE)
  and every row dies after ``max_attempts``.

Delivery is at least once: if the commit fails after the ``XADD``, the rows are published
again later; the consumer drops the duplicate by ``message_id``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import asyncpg
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from nightly_pipeline.testbed.config import TestbedConfig
from nightly_pipeline.testbed.dispatcher.epoch import Epoch
from nightly_pipeline.testbed.dispatcher.metrics import DispatcherMetrics
from nightly_pipeline.testbed.pg_errors import PG_UNAVAILABLE
from nightly_pipeline.testbed.service import (
    close_pool,
    interruptible_sleep,
    redis_client,
)

log = logging.getLogger(__name__)
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError)
NOT_A_STREAM = "not-a-stream"


def _sql(name: str) -> str:
    return resources.files(__package__).joinpath("sql", f"{name}.sql").read_text()


CLAIM_DUE = _sql("claim_due")
MARK_SENT = _sql("mark_sent")
DEFER_FAILED = _sql("defer_failed")
DROP_FAILED = _sql("drop_failed")
REPLAY_SENT = _sql("replay_sent")


@dataclass(frozen=True)
class DispatchSettings:
    stream: str
    batch: int = 200
    max_attempts: int = 8
    maxlen: int = 1_000_000  # MAXLEN ~
    backoff_base_s: float = 0.1
    backoff_cap_s: float = 2.0
    idle_poll_s: float = 0.05
    error_pause_s: float = 0.5
    redis_timeout_s: float = 2.0
    redeliver_after_s: float = 60.0
    epoch_check_every_s: float = 1.0  # when idle; every batch checks it too
    dlq_on_redis_error: bool = True  # fault knob
    stream_writable: bool = True  # fault knob: False writes to a key of another type

    @classmethod
    def from_config(cls, cfg: TestbedConfig) -> DispatchSettings:
        return cls(
            stream=cfg.stream,
            batch=cfg.dispatch_batch,
            max_attempts=cfg.dispatch_max_attempts,
            redeliver_after_s=cfg.outbox_redeliver_after_s,
            dlq_on_redis_error=cfg.dlq_on_redis_error,
            stream_writable=cfg.stream_writable,
        )

    @property
    def write_key(self) -> str:
        """The key the entries are added to: the stream, or (fault knob) a string."""
        return self.stream if self.stream_writable else f"{self.stream}:{NOT_A_STREAM}"


@dataclass
class _Outcome:
    sent: list[asyncpg.Record]
    unreachable: list[asyncpg.Record]
    refused: list[tuple[asyncpg.Record, str]]
    unreachable_error: str = ""
    redis_lost: bool = False  # the epoch key was gone


def stream_fields(row: asyncpg.Record) -> dict[str, str]:
    """A stream entry of the contract: every field a string, ciphertext in base64."""
    return {
        "message_id": str(row["message_id"]),
        "conversation_id": str(row["conversation_id"]),
        "sender_id": str(row["sender_id"]),
        "seq": str(row["seq"]),
        "sha256": row["sha256"],
        "ciphertext": base64.b64encode(bytes(row["ciphertext"])).decode("ascii"),
        "created_at": f"{row['created_at']:.6f}",
    }


class Dispatcher:
    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: Any,
        settings: DispatchSettings,
        metrics: DispatcherMetrics,
    ) -> None:
        self._pool = pool
        self._redis = redis
        self.settings = settings
        self.metrics = metrics
        self.epoch = Epoch(settings.stream)
        self.last_error = ""
        self.iterations = 0
        self._deferred_unlogged = 0
        self._next_warning = 0.0
        self._next_epoch_check = 0.0

    def health(self) -> dict[str, Any]:
        return {
            "worker": "dispatcher",
            "iterations": self.iterations,
            "last_error": self.last_error,
        }

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                claimed = await self.dispatch_once()
                if claimed == 0:
                    await self.check_epoch()
            except PG_UNAVAILABLE as exc:
                self.last_error = f"postgres: {exc!r}"
                self.metrics.pg_errors.inc()
                log.warning("dispatch iteration failed: %r", exc)
                await self._pool.expire_connections()  # after a restart: new connections
                await interruptible_sleep(stop, self.settings.error_pause_s)
                continue
            self.iterations += 1
            if claimed < self.settings.batch:
                await interruptible_sleep(stop, self.settings.idle_poll_s)

    async def dispatch_once(self) -> int:
        """One bounded iteration; returns the number of outbox rows claimed."""
        s = self.settings
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(CLAIM_DUE, s.batch)
            if not rows:
                self.metrics.lag.set(0.0)
                return 0
            outcome = await self._publish(rows)
            if outcome.sent:
                sent_ids = [r["outbox_id"] for r in outcome.sent]
                await conn.execute(MARK_SENT, sent_ids, s.redeliver_after_s)
            died = await self._keep_or_drop_failed(conn, outcome)
        self._account(outcome, died)
        if outcome.redis_lost:
            await self._replay([r["outbox_id"] for r in outcome.sent])
        return len(rows)

    async def _keep_or_drop_failed(self, conn: asyncpg.Connection, outcome: _Outcome) -> int:
        """Defer the rows whose XADD failed (the DLQ), or drop them (the fault knob).
        Returns the rows now dead."""
        if not self.settings.dlq_on_redis_error:
            ids = [r["outbox_id"] for r in outcome.unreachable]
            ids += [r["outbox_id"] for r, _ in outcome.refused]
            if ids:
                await conn.execute(DROP_FAILED, ids)
            return 0
        if outcome.unreachable:
            ids = [r["outbox_id"] for r in outcome.unreachable]
            await self._defer(conn, ids, outcome.unreachable_error, counts=False)
        died = 0
        for row, error in outcome.refused:
            died += await self._defer(conn, [row["outbox_id"]], error, counts=True)
        return died

    async def _defer(
        self, conn: asyncpg.Connection, ids: list[int], error: str, *, counts: bool
    ) -> int:
        """Back the rows off; ``counts``: towards the dead letter. Returns rows now dead."""
        s = self.settings
        params = (error, counts, s.max_attempts, s.backoff_base_s, s.backoff_cap_s)
        rows = await conn.fetch(DEFER_FAILED, ids, *params)
        return sum(1 for r in rows if r["dead"])

    async def check_epoch(self) -> None:
        """When idle, at most every ``epoch_check_every_s``: has Redis lost its data?"""
        now = time.monotonic()
        if now < self._next_epoch_check:
            return
        self._next_epoch_check = now + self.settings.epoch_check_every_s
        try:
            seen = await asyncio.wait_for(
                self._redis.get(self.epoch.key), self.settings.redis_timeout_s
            )
        except (*_UNREACHABLE, RedisError):
            return  # unreachable is not lost; the next check will tell
        if self.epoch.lost(seen):
            await self._replay([])

    async def _replay(self, just_sent: list[int]) -> None:
        """Redis lost its data: every kept row is due now; then a new epoch."""
        status = await self._pool.execute(REPLAY_SENT, just_sent)
        replayed = int(status.split()[-1])
        self.metrics.replayed.inc(replayed)
        try:
            had_one = await self.epoch.renew(self._redis)
        except (*_UNREACHABLE, RedisError) as exc:
            log.warning("could not renew the epoch key: %r", exc)
            return
        if had_one:
            self.metrics.redis_data_lost.inc()
        if had_one or replayed:
            log.warning("Redis lost its data: %d outbox rows replayed", replayed)

    async def _publish(self, rows: Sequence[asyncpg.Record]) -> _Outcome:
        s = self.settings
        pipe = self._redis.pipeline(transaction=False)
        pipe.get(self.epoch.key)
        if not s.stream_writable:  # the fault knob: the key holds a string, always
            pipe.set(s.write_key, NOT_A_STREAM)
        for row in rows:
            pipe.xadd(s.write_key, stream_fields(row), maxlen=s.maxlen, approximate=True)
        try:
            results = await asyncio.wait_for(
                pipe.execute(raise_on_error=False), s.redis_timeout_s + 1.0
            )
        except (*_UNREACHABLE, RedisError) as exc:
            return _Outcome([], list(rows), [], f"redis unreachable: {exc!r}")
        seen, results = results[0], results[1 + (not s.stream_writable) :]
        outcome = _Outcome([], [], [])
        if not isinstance(seen, Exception):
            outcome.redis_lost = self.epoch.lost(seen)
        for row, result in zip(rows, results, strict=True):
            if isinstance(result, _UNREACHABLE):
                outcome.unreachable.append(row)
                outcome.unreachable_error = f"redis unreachable: {result!r}"
            elif isinstance(result, Exception):
                outcome.refused.append((row, f"redis refused: {result}"))
            else:
                outcome.sent.append(row)
        return outcome

    def _account(self, outcome: _Outcome, died: int) -> None:
        m = self.metrics
        if outcome.sent:
            now = time.time()
            lags = [max(0.0, now - r["created_at"]) for r in outcome.sent]
            for lag in lags:
                m.lag_hist.observe(lag)
            m.lag.set(max(lags))
            m.published.inc(len(outcome.sent))
        failed = len(outcome.unreachable) + len(outcome.refused)
        if failed:
            if self.settings.dlq_on_redis_error:
                m.dlq_redis.inc(failed)
            else:
                m.dropped.inc(failed)
            m.redis_errors.inc()
            self.last_error = outcome.unreachable_error or outcome.refused[0][1]
            self._deferred_unlogged += failed
            now = time.monotonic()
            if now >= self._next_warning:  # at most one line a second during an outage
                self._next_warning = now + 1.0
                what = "deferred" if self.settings.dlq_on_redis_error else "DROPPED"
                log.warning("%d outbox rows %s: %s", self._deferred_unlogged, what, self.last_error)
                self._deferred_unlogged = 0
        if died:
            m.dead.inc(died)
            log.error("%d outbox rows dead after %d attempts", died, self.settings.max_attempts)


@contextlib.asynccontextmanager
async def open_dispatcher(
    cfg: TestbedConfig, pg_dsn: str, metrics: DispatcherMetrics
) -> AsyncIterator[Dispatcher]:
    settings = DispatchSettings.from_config(cfg)
    # min_size=0: no floor for asyncpg to restore (and log a traceback about) while
    # PostgreSQL is down; the first query checks the DSN so that a bad one fails at start.
    pool = await asyncpg.create_pool(
        pg_dsn,
        min_size=0,
        max_size=2,
        command_timeout=10,
        server_settings={"application_name": "testbed-dispatcher"},
    )
    try:
        await pool.fetchval("SELECT 1")
    except BaseException:
        await close_pool(pool)
        raise
    redis = redis_client(cfg.redis_url, timeout_s=settings.redis_timeout_s)
    try:
        yield Dispatcher(pool, redis, settings, metrics)
    finally:
        with contextlib.suppress(RedisError, OSError):
            await redis.aclose()
        await close_pool(pool)
