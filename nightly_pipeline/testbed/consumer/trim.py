"""Removing acknowledged entries from the stream.

The dispatcher's ``MAXLEN ~ 1e6`` is only a ceiling: without trimming, every delivered
entry (its whole ciphertext) stays in Redis's memory, and in its append-only file, until a
million more arrive; at Test 05's nightly rate (64 KiB messages) that is gigabytes. An entry
older than the group's oldest pending entry and not after its last-delivered id has been
acknowledged, and nothing reads it again (redelivery comes from the outbox), so the
consumer trims below that point (``XTRIM MINID ~``) at every reclaim tick.

The two facts are read in one ``MULTI`` (a consistent snapshot); entries read or claimed
after it are all newer than its last-delivered id or not older than its oldest pending
entry, so they are never below the threshold. One consumer group per stream (the
contract's): another group's unread entries would not be protected.
"""

from __future__ import annotations

from typing import Any

from nightly_pipeline.testbed.consumer.entry import entry_key


def _key(entry_id: bytes | str) -> tuple[int, int]:
    ms, _, seq = entry_key(entry_id).partition("-")
    return int(ms), int(seq or 0)


def trim_threshold(oldest_pending: bytes | str | None, last_delivered: bytes | str) -> str | None:
    """The id below which every entry is acknowledged; ``None``: nothing to trim."""
    candidates = [_key(last_delivered)]
    if oldest_pending is not None:
        candidates.append(_key(oldest_pending))
    ms, seq = min(candidates)
    return None if (ms, seq) == (0, 0) else f"{ms}-{seq}"


async def snapshot(redis: Any, stream: str, group: str) -> tuple[dict[str, Any], str | None]:
    """(the ``XPENDING`` summary, the trim threshold), read atomically."""
    pipe = redis.pipeline(transaction=True)
    pipe.xpending(stream, group)
    pipe.xinfo_groups(stream)
    summary, groups = await pipe.execute()
    ours = [g for g in groups if entry_key(g["name"]) == group]
    if not ours:
        return summary, None
    return summary, trim_threshold(summary.get("min"), ours[0]["last-delivered-id"])
