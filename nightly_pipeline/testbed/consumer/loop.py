"""The delivery consumer: Redis Stream consumer group → the gateway over Pub/Sub.

Each iteration (one task, so no entry is handled twice at once):
1. every ``reclaim_every_s``: ``XAUTOCLAIM`` entries idle longer than
   ``consumer_reclaim_idle_ms`` (a dead consumer's PEL; ``…_pel_reclaimed_total``) and
   deliver them, then refresh ``messaging_consumer_pel_size`` (``XPENDING`` summary);
2. when a publish earlier found no gateway: re-read this consumer's own PEL (id ``0``);
3. ``XREADGROUP … >`` (``COUNT 200``, ``BLOCK 100``) and deliver.

Delivering a batch: skip (just ``XACK``) entries whose ``messaging:delivered:<message_id>``
key exists; resolve recipients (participants, cached); ``PUBLISH messaging:deliver`` the
contract's JSON; for each publish that reached ≥ 1 gateway, ``SET NX`` the delivered key
(``EX 86400``) and ``XACK``. A publish nobody received leaves the entry pending.

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
from nightly_pipeline.testbed.consumer.metrics import ConsumerMetrics
from nightly_pipeline.testbed.consumer.participants import ParticipantCache
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
_PG_DOWN = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
_MESSAGE_FIELDS = ("message_id", "conversation_id", "sender_id", "seq", "sha256", "ciphertext")


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
        )


@dataclass(frozen=True)
class Entry:
    entry_id: str
    message: dict[str, Any]

    @property
    def message_id(self) -> str:
        return self.message["message_id"]


def parse_entry(entry_id: bytes | str, fields: dict[bytes, bytes] | None) -> Entry | None:
    """The contract's message from a stream entry; ``None`` if malformed or trimmed."""
    eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    if not fields:
        return None
    try:
        f = {k.decode(): v.decode() for k, v in fields.items()}
        message = {
            "message_id": f["message_id"],
            "conversation_id": f["conversation_id"],
            "sender_id": int(f["sender_id"]),
            "seq": int(f["seq"]),
            "sha256": f["sha256"],
            "ciphertext": f["ciphertext"],
            "created_at": float(f["created_at"]),
        }
    except (KeyError, ValueError, UnicodeDecodeError):
        return None
    return Entry(eid, message)


class Consumer:
    def __init__(
        self,
        redis: Any,
        participants: ParticipantCache,
        settings: ConsumerSettings,
        metrics: ConsumerMetrics,
    ) -> None:
        self._redis = redis
        self._participants = participants
        self.settings = settings
        self.metrics = metrics
        self.last_error = ""
        self._retry_own = False
        self._next_reclaim = 0.0
        self._next_retry = 0.0
        self._group_ready = False

    def health(self) -> dict[str, Any]:
        return {
            "worker": "consumer",
            "name": self.settings.name,
            "group_ready": self._group_ready,
            "last_error": self.last_error,
        }

    async def run(self, stop: asyncio.Event) -> None:
        listener = asyncio.create_task(
            self._participants.listen(self._redis, stop), name="participants-invalidation"
        )
        try:
            while not stop.is_set():
                if listener.done():  # a dead side task stops the worker
                    raise RuntimeError("invalidation listener ended") from listener.exception()
                try:
                    await self.step()
                except _REDIS_DOWN as exc:
                    self._error("redis", exc)
                    if "NOGROUP" in str(exc):  # the stream or group was deleted: recreate
                        self._group_ready = False
                    self._retry_own = True
                    await interruptible_sleep(stop, self.settings.error_pause_s)
                except _PG_DOWN as exc:
                    self._error("postgres", exc)
                    self._retry_own = True
                    await interruptible_sleep(stop, self.settings.error_pause_s)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def step(self) -> None:
        s = self.settings
        if not self._group_ready:
            await self.ensure_group()
        now = time.monotonic()
        if now >= self._next_reclaim:
            self._next_reclaim = now + s.reclaim_every_s
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
                total += len(entries)
                self.metrics.reclaimed.inc(len(entries))
                await self.deliver(entries)
            start = cursor.decode() if isinstance(cursor, bytes) else cursor
            if start == "0-0":
                break
        if total:
            log.info("reclaimed %d pending entries", total)
        return total

    async def refresh_pel_size(self) -> None:
        summary = await self._redis.xpending(self.settings.stream, self.settings.group)
        self.metrics.pel_size.set(summary["pending"])

    async def _read_and_deliver(self, start: str, block_ms: int | None) -> None:
        s = self.settings
        reply = await self._redis.xreadgroup(
            s.group, s.name, {s.stream: start}, count=s.count, block=block_ms
        )
        for _stream, entries in reply or []:
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
                drop.append(entry_id.decode() if isinstance(entry_id, bytes) else entry_id)
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
            drop += [e.entry_id for e, d in zip(entries, done, strict=True) if d]
            entries = [e for e, d in zip(entries, done, strict=True) if not d]
        if drop:
            await r.xack(s.stream, s.group, *drop)
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
        pipe.xack(s.stream, s.group, *[e.entry_id for e in published])
        await pipe.execute()
        now = time.time()
        lags = [max(0.0, now - e.message["created_at"]) for e in published]
        for lag in lags:
            m.lag_hist.observe(lag)
        m.lag.set(max(lags))
        m.delivered.inc(len(published))
        return len(published)

    def _error(self, kind: str, exc: BaseException) -> None:
        self.last_error = f"{kind}: {exc!r}"
        self.metrics.errors.labels(type=kind).inc()
        log.warning("consumer iteration failed (%s): %r", kind, exc)


@contextlib.asynccontextmanager
async def open_consumer(
    cfg: TestbedConfig, pg_dsn: str, metrics: ConsumerMetrics, name: str | None = None
) -> AsyncIterator[Consumer]:
    settings = ConsumerSettings.from_config(cfg, name)
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2, command_timeout=10)
    redis = redis_client(cfg.redis_url)
    participants = ParticipantCache(pool, metrics, ttl_s=settings.cache_ttl_s)
    try:
        yield Consumer(redis, participants, settings, metrics)
    finally:
        with contextlib.suppress(RedisError, OSError):
            await redis.aclose()
        await close_pool(pool)
