"""Recipients of a conversation: its participants, from PostgreSQL, cached briefly.

Entries live ``ttl_s`` and are dropped early when a conversation id arrives on the
``messaging:participants:invalidate`` channel (the API publishes it on a membership
change). A look-up that raced an invalidation is not cached (generation check), and
the whole cache is dropped whenever the subscription was lost (an invalidation may have
been missed meanwhile).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import asyncpg
from redis.exceptions import RedisError

from nightly_pipeline.testbed.consumer.metrics import ConsumerMetrics

log = logging.getLogger(__name__)
INVALIDATE_CHANNEL = "messaging:participants:invalidate"
PARTICIPANTS_SQL = (
    "SELECT conversation_id, user_id FROM participants WHERE conversation_id = ANY($1::uuid[])"
)


class ParticipantCache:
    def __init__(
        self,
        pool: asyncpg.Pool,
        metrics: ConsumerMetrics,
        ttl_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._metrics = metrics
        self._ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[str, tuple[float, list[int]]] = {}
        self._generation = 0

    def invalidate(self, conversation_id: str) -> None:
        self._generation += 1
        self._entries.pop(conversation_id, None)

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()

    async def get_many(self, conversation_ids: Iterable[str]) -> dict[str, list[int]]:
        now = self._clock()
        found: dict[str, list[int]] = {}
        missing: list[str] = []
        for conv in set(conversation_ids):
            entry = self._entries.get(conv)
            if entry is not None and entry[0] > now:
                found[conv] = entry[1]
            else:
                missing.append(conv)
        self._metrics.cache_hits.inc(len(found))
        if not missing:
            return found
        self._metrics.cache_misses.inc(len(missing))
        generation = self._generation
        rows = await self._pool.fetch(PARTICIPANTS_SQL, [uuid.UUID(c) for c in missing])
        loaded: dict[str, list[int]] = {c: [] for c in missing}
        for row in rows:
            loaded[str(row["conversation_id"])].append(int(row["user_id"]))
        for conv, users in loaded.items():
            users.sort()
            found[conv] = users
            if generation == self._generation:
                self._entries[conv] = (now + self._ttl_s, users)
        return found

    async def listen(self, redis: Any, stop: asyncio.Event) -> None:
        """Apply invalidations until ``stop``; resubscribe (and drop the cache) on errors."""
        while not stop.is_set():
            pubsub = redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(INVALIDATE_CHANNEL)
                self.clear()
                while not stop.is_set():
                    msg = await pubsub.get_message(timeout=0.5)
                    if msg is not None and msg["type"] == "message":
                        data = msg["data"]
                        self.invalidate(data.decode() if isinstance(data, bytes) else str(data))
            except (RedisError, OSError, TimeoutError) as exc:
                log.warning("invalidation subscription lost: %r", exc)
                self._metrics.redis_errors.inc()
                self.clear()
                await asyncio.sleep(0.5)
            finally:
                try:
                    await asyncio.wait_for(pubsub.aclose(), 1.0)
                except Exception as exc:  # closing a broken connection must not kill the task
                    log.debug("closing pubsub: %r", exc)
