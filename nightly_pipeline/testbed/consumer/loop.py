"""The delivery consumer: Redis Stream consumer group → the gateway over Pub/Sub.

On start: ``messaging_consumer_pel_size_at_start`` = the group's PEL (when this process
replaces a killed consumer: the PEL at the kill, since nothing is read while no consumer
runs), then the entries a previous process under the same name left pending are read
again (``XREADGROUP … 0``) and delivered at once.

Each iteration (one task, so no entry is handled twice at once):
1. every ``reclaim_every_s``: ``XAUTOCLAIM`` entries idle longer than
   ``consumer_reclaim_idle_ms`` (a dead consumer's PEL) and deliver them, then refresh
   ``messaging_consumer_pel_size`` (``XPENDING`` summary; also after every batch) and trim
   the acknowledged entries from the stream (``trim``);
2. when a publish earlier found no gateway: re-read this consumer's own PEL (id ``0``);
3. ``XREADGROUP … >`` (``COUNT 200``, ``BLOCK 100``) and deliver.

``messaging_consumer_pel_reclaimed_total`` counts the entries taken over in 1 and on
start, each once (entries this process already held are not counted again): a consumer
restarted after a kill ends with it equal to ``…_pel_size_at_start``. Bound: a dead
consumer's entries are taken over ``consumer_reclaim_idle_ms`` after it last read them,
plus at most ``reclaim_every_s`` (5 s + 2.5 s by default); under the same name, at once.
Fault knob ``reclaim_pending = false``: neither 1 nor the start's take-over happen.
Fault knob ``ack_on_read = true``: 3 reads with ``NOACK`` (acknowledged as read, never pending).

Delivering a batch: skip (just ``XACK``) entries whose ``messaging:delivered:<message_id>``
key exists; resolve recipients (participants, cached); ``PUBLISH messaging:deliver`` the
contract's JSON; for each publish that reached ≥ 1 gateway, ``SET NX`` the delivered key
(``EX 86400``) and ``XACK``. A publish nobody received leaves the entry pending. The
outbox rows of delivered messages are then deleted off the delivery path (``outbox``):
the dispatcher keeps them until then, to send them again if Redis loses its data.

Guarantee: at least once, deduplicated by message id. Publishing *before* marking is what
makes a crash lose nothing; the price is a window (one pipelined round trip) in which a
consumer killed after ``PUBLISH`` and before ``SET NX``/``XACK`` has its entry reclaimed and
published again. Duplicates are limited to that window (and to entries the dispatcher
wrote twice, which the delivered key and an in-batch check drop); reclaims are counted, and
the gateway/clients can drop a repeat by ``message_id``. Marking first would instead turn
that crash into a silent loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
from redis.exceptions import RedisError, ResponseError

from nightly_pipeline.testbed.config import TestbedConfig
from nightly_pipeline.testbed.consumer import trim
from nightly_pipeline.testbed.consumer.entry import Entry, entry_key, parse_entry
from nightly_pipeline.testbed.consumer.metrics import ConsumerMetrics
from nightly_pipeline.testbed.consumer.outbox import DeliveredRows
from nightly_pipeline.testbed.consumer.participants import ParticipantCache
from nightly_pipeline.testbed.pg_errors import PG_UNAVAILABLE
from nightly_pipeline.testbed.service import (
    close_pool,
    interruptible_sleep,
    redis_client,
)

log = logging.getLogger(__name__)
DELIVER_CHANNEL = "messaging:deliver"
DELIVERED_KEY = "messaging:delivered:{}"
DELIVERED_TTL_S = 86_400
_REDIS_DOWN = (RedisError, OSError, TimeoutError)


@dataclass(frozen=True)
class ConsumerSettings:
    stream: str
    group: str
    name: str
    reclaim_idle_ms: int = 5_000
    count: int = 200
    block_ms: int = 100
    retry_own_every_s: float = 0.2
    error_pause_s: float = 0.5
    cache_ttl_s: float = 5.0
    reclaim_pending: bool = True  # fault knob
    ack_on_read: bool = False  # fault knob

    @property
    def reclaim_every_s(self) -> float:
        return max(0.25, min(5.0, self.reclaim_idle_ms / 2000))

    @classmethod
    def from_config(cls, cfg: TestbedConfig, name: str | None = None) -> ConsumerSettings:
        return cls(
            stream=cfg.stream,
            group=cfg.consumer_group,
            name=name or f"{socket.gethostname()}-{os.getpid()}",
            reclaim_idle_ms=cfg.consumer_reclaim_idle_ms,
            reclaim_pending=cfg.reclaim_pending,
            ack_on_read=cfg.ack_on_read,
        )


class Consumer:
    def __init__(
        self,
        redis: Any,
        participants: ParticipantCache,
        settings: ConsumerSettings,
        metrics: ConsumerMetrics,
        rows: DeliveredRows | None = None,
    ) -> None:
        self._redis = redis
        self._participants = participants
        self.settings = settings
        self.metrics = metrics
        self.rows = rows
        self.last_error = ""
        self._retry_own = False
        self._next_reclaim = 0.0
        self._next_retry = 0.0
        self._group_ready = False
        self._started = False
        self.pel_at_start: int | None = None
        self._own: set[str] = set()  # entry ids this process holds, not acknowledged yet

    def health(self) -> dict[str, Any]:
        return {
            "worker": "consumer",
            "name": self.settings.name,
            "group_ready": self._group_ready,
            "holding": len(self._own),
            "last_error": self.last_error,
        }

    async def run(self, stop: asyncio.Event) -> None:
        side = [
            asyncio.create_task(
                self._participants.listen(self._redis, stop), name="participants-invalidation"
            )
        ]
        if self.rows is not None:
            side.append(asyncio.create_task(self.rows.run(stop), name="outbox-deletes"))
        try:
            while not stop.is_set():
                for task in side:
                    if task.done():  # a dead side task stops the worker
                        raise RuntimeError(f"{task.get_name()} ended") from task.exception()
                try:
                    await self.step()
                except _REDIS_DOWN as exc:
                    self._error("redis", exc)
                    if "NOGROUP" in str(exc):  # the stream or group is gone (Redis restarted)
                        self._group_ready = False
                        self._own.clear()
                    self._retry_own = True
                    await interruptible_sleep(stop, self.settings.error_pause_s)
                except PG_UNAVAILABLE as exc:
                    self._error("postgres", exc)
                    self._retry_own = True
                    await interruptible_sleep(stop, self.settings.error_pause_s)
        finally:
            await self._stop_side_tasks(side)

    async def _stop_side_tasks(self, side: list[asyncio.Task[None]]) -> None:
        """The listener is cancelled; the outbox deletes get their last flush first."""
        listener, *rest = side
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        for task in rest:
            try:
                await asyncio.wait_for(task, 1.0)
            except (TimeoutError, asyncio.CancelledError):
                pass
            except Exception as exc:  # already reported as the loop's failure
                log.debug("%s: %r", task.get_name(), exc)

    async def step(self) -> None:
        s = self.settings
        if not self._group_ready:
            await self.ensure_group()
        if not self._started:
            await self.start()
            self._started = True
        now = time.monotonic()
        if now >= self._next_reclaim:
            self._next_reclaim = now + s.reclaim_every_s
            if s.reclaim_pending:
                await self.reclaim()
            await self.refresh_pel_size()
        if self._retry_own and now >= self._next_retry:
            self._next_retry = now + s.retry_own_every_s
            self._retry_own = False
            await self._read_and_deliver("0", block_ms=None)
        await self._read_and_deliver(">", block_ms=s.block_ms)

    async def ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(
                self.settings.stream, self.settings.group, id="0", mkstream=True
            )
            log.info("created group %s on %s", self.settings.group, self.settings.stream)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def start(self) -> None:
        """Note the PEL found on start; take over this name's previous process's entries."""
        s = self.settings
        if self.pel_at_start is None:  # once, even if the take-over below is retried
            summary = await self._redis.xpending(s.stream, s.group)
            self.pel_at_start = int(summary["pending"])
            self.metrics.pel_size_at_start.set(self.pel_at_start)
            self.metrics.pel_size.set(self.pel_at_start)
        if not s.reclaim_pending:
            return
        start, total = "0", 0
        while True:
            reply = await self._redis.xreadgroup(s.group, s.name, {s.stream: start}, count=s.count)
            entries = [e for _stream, page in reply or [] for e in page]
            if not entries:
                break
            total += self._take_over(entries)
            await self.deliver(entries)
            start = entry_key(entries[-1][0])
        if total:
            log.info("took over %d entries left pending under the name %s", total, s.name)

    def _take_over(self, entries: list[tuple[bytes, Any]]) -> int:
        """Count the entries this process did not hold yet as reclaimed; hold them."""
        fresh = {entry_key(eid) for eid, _ in entries} - self._own
        self._own |= fresh
        self.metrics.reclaimed.inc(len(fresh))
        return len(fresh)

    async def reclaim(self, max_pages: int = 10) -> int:
        """Take over entries idle past the threshold (a dead consumer's PEL) and deliver."""
        s = self.settings
        start, total = "0-0", 0
        for _ in range(max_pages):
            reply = await self._redis.xautoclaim(
                s.stream, s.group, s.name, s.reclaim_idle_ms, start_id=start, count=s.count
            )
            cursor, entries = reply[0], reply[1]
            if entries:
                total += self._take_over(entries)
                await self.deliver(entries)
            start = entry_key(cursor)
            if start == "0-0":
                break
        if total:
            log.info("reclaimed %d pending entries", total)
        return total

    async def refresh_pel_size(self) -> None:
        """The PEL gauge, and acknowledged entries trimmed from the stream (``trim``)."""
        s = self.settings
        summary, threshold = await trim.snapshot(self._redis, s.stream, s.group)
        self._note_pending(summary)
        if threshold is not None:
            removed = await self._redis.xtrim(s.stream, minid=threshold, approximate=True)
            self.metrics.trimmed.inc(int(removed or 0))

    def _note_pending(self, summary: dict[str, Any]) -> None:
        """Set the PEL gauge from an ``XPENDING`` summary; forget what we no longer hold."""
        self.metrics.pel_size.set(summary["pending"])
        mine = [
            c for c in summary.get("consumers") or [] if entry_key(c["name"]) == self.settings.name
        ]
        if not mine or int(mine[0]["pending"]) == 0:
            self._own.clear()  # another consumer took over (and acknowledged) the rest

    async def _read_and_deliver(self, start: str, block_ms: int | None) -> None:
        s = self.settings
        reply = await self._redis.xreadgroup(
            s.group,
            s.name,
            {s.stream: start},
            count=s.count,
            block=block_ms,
            noack=s.ack_on_read and start == ">",  # the fault knob: at most once
        )
        for _stream, entries in reply or []:
            if start == ">":
                self._own.update(entry_key(eid) for eid, _ in entries)
            elif not s.reclaim_pending:  # the fault knob: only what this process read
                entries = [e for e in entries if entry_key(e[0]) in self._own]
            if entries:
                delivered = await self.deliver(entries)
                if start == "0" and len(entries) >= s.count:
                    self._retry_own = True  # more of our own PEL to go
                    if delivered == len(entries):
                        self._next_retry = 0.0  # and the gateway is back: at once

    async def deliver(self, raw: list[tuple[bytes, dict[bytes, bytes] | None]]) -> int:
        """Deliver a batch of entries; returns how many were published and acknowledged."""
        s, m, r = self.settings, self.metrics, self._redis
        entries: list[Entry] = []
        drop: list[str] = []
        seen: set[str] = set()
        for entry_id, fields in raw:
            entry = parse_entry(entry_id, fields)
            if entry is None:
                m.malformed.inc()
                drop.append(entry_key(entry_id))
            elif entry.message_id in seen:  # the dispatcher wrote it twice
                m.duplicates.inc()
                drop.append(entry.entry_id)
            else:
                seen.add(entry.message_id)
                entries.append(entry)
        if entries:
            pipe = r.pipeline(transaction=False)
            for e in entries:
                pipe.exists(DELIVERED_KEY.format(e.message_id))
            done = await pipe.execute()
            m.duplicates.inc(sum(1 for d in done if d))
            known = [e for e, d in zip(entries, done, strict=True) if d]
            drop += [e.entry_id for e in known]
            self._forget_rows(known)  # a row the dispatcher sent again
            entries = [e for e, d in zip(entries, done, strict=True) if not d]
        if drop:
            await r.xack(s.stream, s.group, *drop)
            self._own.difference_update(drop)
        if not entries:
            return 0

        recipients = await self._participants.get_many(
            e.message["conversation_id"] for e in entries
        )
        pipe = r.pipeline(transaction=False)
        for e in entries:
            body = {"recipients": recipients[e.message["conversation_id"]], "message": e.message}
            pipe.publish(DELIVER_CHANNEL, json.dumps(body, separators=(",", ":")))
        receivers = await pipe.execute()
        published = [e for e, n in zip(entries, receivers, strict=True) if n >= 1]
        if len(published) < len(entries):
            m.no_receiver.inc(len(entries) - len(published))
            self._retry_own = True
        if not published:
            return 0

        pipe = r.pipeline(transaction=False)
        for e in published:
            pipe.set(DELIVERED_KEY.format(e.message_id), b"1", nx=True, ex=DELIVERED_TTL_S)
        acked = [e.entry_id for e in published]
        pipe.xack(s.stream, s.group, *acked)
        pipe.xpending(s.stream, s.group)
        *_, summary = await pipe.execute()
        self._own.difference_update(acked)
        self._note_pending(summary)
        self._forget_rows(published)
        now = time.time()
        lags = [max(0.0, now - e.message["created_at"]) for e in published]
        for lag in lags:
            m.lag_hist.observe(lag)
        m.lag.set(max(lags))
        m.delivered.inc(len(published))
        return len(published)

    def _forget_rows(self, entries: list[Entry]) -> None:
        if self.rows is not None and entries:
            self.rows.add(e.message_id for e in entries)

    def _error(self, kind: str, exc: BaseException) -> None:
        self.last_error = f"{kind}: {exc!r}"
        self.metrics.errors.labels(type=kind).inc()
        log.warning("consumer iteration failed (%s): %r", kind, exc)


@contextlib.asynccontextmanager
async def open_consumer(
    cfg: TestbedConfig, pg_dsn: str, metrics: ConsumerMetrics, name: str | None = None
) -> AsyncIterator[Consumer]:
    settings = ConsumerSettings.from_config(cfg, name)
    # min_size=0: no floor for asyncpg to restore (and log a traceback about) while
    # PostgreSQL is down; the first query checks the DSN so that a bad one fails at start.
    pool = await asyncpg.create_pool(
        pg_dsn,
        min_size=0,
        max_size=2,
        command_timeout=10,
        server_settings={"application_name": "testbed-consumer"},
    )
    try:
        await pool.fetchval("SELECT 1")
    except BaseException:
        await close_pool(pool)
        raise
    redis = redis_client(cfg.redis_url)
    participants = ParticipantCache(pool, metrics, ttl_s=settings.cache_ttl_s)
    rows = DeliveredRows(pool, metrics)
    try:
        yield Consumer(redis, participants, settings, metrics, rows)
    finally:
        with contextlib.suppress(RedisError, OSError):
            await redis.aclose()
        await close_pool(pool)
