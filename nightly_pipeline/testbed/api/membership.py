"""Conversation membership cache: in-process dict in front of the Redis hash
``messaging:participants:<conv>`` (fields: user ids, values "1"), in front of PostgreSQL.

Any change publishes the conversation id on ``messaging:participants:invalidate``; every
API process drops its entry on receipt (``on_invalidate``), the writer also deletes the hash.
A stale "member" answer is harmless: the INSERT is still checked by row-level security.
``lookup`` also says whether the cache answered (the API's ``X-Cache: hit|miss`` header).

A miss reads PostgreSQL and fills both caches; a change committed meanwhile must not be
overwritten by that older read. Writers ``INCR messaging:participants:ver:<conv>`` before
they delete and publish; the filler WATCHes that key across its read, so its Redis write
is dropped if the version moved, and fills its own dict only if no invalidation reached
this process meanwhile (a per-conversation generation).
"""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from typing import Any

from redis.exceptions import WatchError

from nightly_pipeline.testbed.metrics import Counter

HITS = Counter("messaging_participant_cache_hits_total", "Membership lookups served from cache")
MISSES = Counter("messaging_participant_cache_misses_total", "Membership lookups from PostgreSQL")
INVALIDATE_CHANNEL = "messaging:participants:invalidate"
HASH_PREFIX = "messaging:participants:"
VERSION_PREFIX = "messaging:participants:ver:"
_TTL_S = 300
_MAX_ENTRIES = 50_000


class MembershipCache:
    def __init__(self, services: Any) -> None:
        self.s = services
        self.local: OrderedDict[str, tuple[float, frozenset[int]]] = OrderedDict()
        self.generations: dict[str, int] = {}  # invalidations of a conversation seen here

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
        generation = self.generations.get(conv, 0)
        async with self.s.redis.pipeline(transaction=True) as pipe:
            await self.s.redis_call(lambda: pipe.watch(VERSION_PREFIX + conv))
            async with self.s.db.tx(user_id) as conn:
                rows = await conn.fetch(
                    "SELECT user_id FROM participants WHERE conversation_id = $1", conv
                )
            members = frozenset(r["user_id"] for r in rows)
            if not members:  # an empty answer only means "hidden from this caller"
                return members, False
            if self.generations.get(conv, 0) == generation:
                self._remember(conv, members)
            key = HASH_PREFIX + conv
            pipe.multi()
            pipe.hset(key, mapping={str(m): "1" for m in members})
            pipe.expire(key, _TTL_S)
            with contextlib.suppress(WatchError):  # changed meanwhile: leave it uncached
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
        self.on_invalidate(conv)
        pipe = self.s.redis.pipeline(transaction=True)
        pipe.incr(VERSION_PREFIX + conv)
        pipe.expire(VERSION_PREFIX + conv, _TTL_S)
        pipe.delete(HASH_PREFIX + conv)
        pipe.publish(INVALIDATE_CHANNEL, conv)
        await self.s.redis_call(pipe.execute)

    def on_invalidate(self, conv: str) -> None:
        self.local.pop(conv, None)
        self.generations[conv] = self.generations.get(conv, 0) + 1
        if len(self.generations) > _MAX_ENTRIES:  # bounded: an old conversation restarts at 0
            self.generations.pop(next(iter(self.generations)))
