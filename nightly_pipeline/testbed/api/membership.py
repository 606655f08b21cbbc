"""Conversation membership cache: in-process dict in front of the Redis hash
``messaging:participants:<conv>`` (fields: user ids, values "1"), in front of PostgreSQL.

Any change publishes the conversation id on ``messaging:participants:invalidate``; every
API process drops its entry on receipt (``on_invalidate``), the writer also deletes the hash.
A stale "member" answer is harmless: the INSERT is still checked by row-level security.
``lookup`` also says whether the cache answered (the API's ``X-Cache: hit|miss`` header).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

from nightly_pipeline.testbed.metrics import Counter

HITS = Counter("messaging_participant_cache_hits_total", "Membership lookups served from cache")
MISSES = Counter("messaging_participant_cache_misses_total", "Membership lookups from PostgreSQL")
INVALIDATE_CHANNEL = "messaging:participants:invalidate"
HASH_PREFIX = "messaging:participants:"
_TTL_S = 300
_MAX_ENTRIES = 50_000


class MembershipCache:
    def __init__(self, services: Any) -> None:
        self.s = services
        self.local: OrderedDict[str, tuple[float, frozenset[int]]] = OrderedDict()

    async def members(self, conv: str, user_id: int) -> frozenset[int]:
        """Participants of ``conv`` as seen by ``user_id`` (empty if hidden from them)."""
        return (await self.lookup(conv, user_id))[0]

    async def lookup(self, conv: str, user_id: int) -> tuple[frozenset[int], bool]:
        """``members`` and whether the cache (in-process or Redis) answered."""
        entry = self.local.get(conv)
        if entry is not None and entry[0] > time.monotonic():
            self.local.move_to_end(conv)
            HITS.inc()
            return entry[1], True
        raw = await self.s.redis_call(lambda: self.s.redis.hkeys(HASH_PREFIX + conv))
        if raw:
            members = frozenset(int(k) for k in raw)
            HITS.inc()
            self._remember(conv, members)
            return members, True
        MISSES.inc()
        async with self.s.db.tx(user_id) as conn:
            rows = await conn.fetch(
                "SELECT user_id FROM participants WHERE conversation_id = $1", conv
            )
        members = frozenset(r["user_id"] for r in rows)
        if members:  # an empty answer only means "hidden from this caller"
            self._remember(conv, members)
            key = HASH_PREFIX + conv
            pipe = self.s.redis.pipeline(transaction=True)
            pipe.hset(key, mapping={str(m): "1" for m in members})
            pipe.expire(key, _TTL_S)
            await self.s.redis_call(pipe.execute)
        return members, False

    def _remember(self, conv: str, members: frozenset[int]) -> None:
        self.local[conv] = (time.monotonic() + _TTL_S, members)
        self.local.move_to_end(conv)
        while len(self.local) > _MAX_ENTRIES:
            self.local.popitem(last=False)

    async def invalidate(self, conv: str) -> None:
        if not self.s.cfg.cache_invalidation:
            return  # the fault knob: a cache that never invalidates
        self.local.pop(conv, None)
        await self.s.redis_call(lambda: self.s.redis.delete(HASH_PREFIX + conv))
        await self.s.redis_call(lambda: self.s.redis.publish(INVALIDATE_CHANNEL, conv))

    def on_invalidate(self, conv: str) -> None:
        self.local.pop(conv, None)
