"""Noticing that Redis lost its data (restarted without persistence, or flushed).

The embedded Redis keeps nothing on disk: killed and restarted, it comes back with no
stream, no consumer group and no pending entries, and every message that was in the
stream but not yet delivered is gone. The dispatcher keeps each outbox row until the
consumer has delivered its message, so it can send them again; it only needs to know
*when*. An epoch key (``<stream>:epoch``, a random value set with ``SET NX``) marks the
Redis data the dispatcher knows: read with every batch of ``XADD`` (same pipeline) and
once a second when idle, a missing key means the data is gone, and every kept row is
replayed at once instead of after ``outbox_redeliver_after_s``.
"""

from __future__ import annotations

import uuid
from typing import Any


class Epoch:
    def __init__(self, stream: str) -> None:
        self.key = f"{stream}:epoch"
        self.value: bytes | None = None  # the value last seen; None before the first read

    def lost(self, seen: bytes | None) -> bool:
        """Whether ``seen`` (the key's value just read) says Redis lost its data. A value
        other than ours means another dispatcher renewed it after a loss (it replays)."""
        if seen is None:
            return True
        self.value = seen
        return False

    async def renew(self, redis: Any) -> bool:
        """Set a new epoch unless another dispatcher did; True if one had been seen before
        (a loss while running, as opposed to a first start on an empty Redis)."""
        had_one = self.value is not None
        pipe = redis.pipeline(transaction=False)
        pipe.set(self.key, uuid.uuid4().hex, nx=True)
        pipe.get(self.key)
        _, self.value = await pipe.execute()
        return had_one
