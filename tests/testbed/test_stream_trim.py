"""The consumer's stream trim against real Redis (the embedded stack's): entries below
the group's acknowledged position go, every entry still pending or not yet read stays
readable with its fields (nothing unacknowledged is lost)."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from nightly_pipeline.testbed.consumer import trim
from nightly_pipeline.testbed.stack import Endpoints

STREAM, GROUP, CONSUMER = "test:trim:stream", "test:trim:group", "c1"
ENTRIES, READ = 1000, 600
UNACKED = range(250, 260)  # read, never acknowledged (a dead consumer's PEL)


async def _trim(r: aioredis.Redis) -> int:
    """What the consumer does every reclaim tick (``Consumer.refresh_pel_size``)."""
    _, threshold = await trim.snapshot(r, STREAM, GROUP)
    if threshold is None:
        return 0
    return int(await r.xtrim(STREAM, minid=threshold, approximate=True))


async def _scenario(url: str) -> None:
    r = aioredis.Redis.from_url(url)
    try:
        await r.delete(STREAM)
        await r.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
        ids = [await r.xadd(STREAM, {"n": str(n)}) for n in range(ENTRIES)]
        read = await r.xreadgroup(GROUP, CONSUMER, {STREAM: ">"}, count=READ)
        assert len(read[0][1]) == READ
        await r.xack(STREAM, GROUP, *[i for n, i in enumerate(ids[:READ]) if n not in UNACKED])

        removed = await _trim(r)
        # below the oldest pending entry, in whole nodes (XTRIM ~): some, never past it
        assert 0 < removed <= UNACKED[0]
        unacked = [ids[n] for n in UNACKED] + ids[READ:]
        kept = {eid: fields for eid, fields in await r.xrange(STREAM)}
        assert all(kept.get(eid) == {b"n": str(ids.index(eid)).encode()} for eid in unacked)
        assert await r.xlen(STREAM) == ENTRIES - removed

        # the pending ones are still claimable, the unread ones still delivered once
        pending = await r.xreadgroup(GROUP, CONSUMER, {STREAM: "0"})
        assert [eid for eid, _ in pending[0][1]] == [ids[n] for n in UNACKED]
        await r.xack(STREAM, GROUP, *[ids[n] for n in UNACKED])
        removed += await _trim(r)  # now up to the last-delivered id
        assert UNACKED[0] < removed <= READ
        rest = await r.xreadgroup(GROUP, CONSUMER, {STREAM: ">"}, count=ENTRIES)
        assert [eid for eid, _ in rest[0][1]] == ids[READ:]
        await r.xack(STREAM, GROUP, *ids[READ:])
        removed += await _trim(r)
        assert await r.xlen(STREAM) == ENTRIES - removed <= 100  # its last node at most
    finally:
        await r.delete(STREAM)
        await r.aclose()


def test_trimming_keeps_every_unacknowledged_entry(endpoints: Endpoints) -> None:
    asyncio.run(_scenario(endpoints.redis_url))
