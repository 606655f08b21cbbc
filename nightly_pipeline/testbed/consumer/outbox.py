"""Deleting the outbox rows of delivered messages, off the delivery path.

The dispatcher keeps an outbox row after its ``XADD`` until the message reached a gateway,
so that a stream entry lost with Redis's data is sent again (``dispatcher.epoch``). The
consumer tells it by deleting the row: the delivery loop hands over the message ids it
delivered (or found already delivered), and a side task deletes them in batches every
``flush_every_s``. PostgreSQL being down delays the deletes, never the delivery: ids wait
(at most ``max_pending``; beyond that the oldest are forgotten, and their rows come back
as duplicates after ``outbox_redeliver_after_s``, dropped by message id).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import uuid
from collections.abc import Iterable

import asyncpg

from nightly_pipeline.testbed.consumer.metrics import ConsumerMetrics
from nightly_pipeline.testbed.pg_errors import PG_UNAVAILABLE

log = logging.getLogger(__name__)
DELETE_SQL = "DELETE FROM outbox WHERE message_id = ANY($1::uuid[])"


class DeliveredRows:
    def __init__(
        self,
        pool: asyncpg.Pool,
        metrics: ConsumerMetrics,
        flush_every_s: float = 0.1,
        batch: int = 2_000,
        max_pending: int = 200_000,
        error_pause_s: float = 0.5,
    ) -> None:
        self._pool = pool
        self._metrics = metrics
        self.flush_every_s = flush_every_s
        self.batch = batch
        self.max_pending = max_pending
        self.error_pause_s = error_pause_s
        self._pending: dict[str, None] = {}  # insertion-ordered set of message ids
        self._wake = asyncio.Event()

    def add(self, message_ids: Iterable[str]) -> None:
        for message_id in message_ids:
            self._pending[message_id] = None
        overflow = len(self._pending) - self.max_pending
        if overflow > 0:
            for message_id in list(self._pending)[:overflow]:
                del self._pending[message_id]
        self._metrics.outbox_pending_deletes.set(len(self._pending))
        if len(self._pending) >= self.batch:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self) -> int:
        """Delete one batch of rows; returns how many ids were handled (0: nothing to do)."""
        ids = list(itertools.islice(self._pending, self.batch))
        if not ids:
            return 0
        await self._pool.execute(DELETE_SQL, [uuid.UUID(i) for i in ids])
        for message_id in ids:
            self._pending.pop(message_id, None)
        self._metrics.outbox_deleted.inc(len(ids))
        self._metrics.outbox_pending_deletes.set(len(self._pending))
        return len(ids)

    async def run(self, stop: asyncio.Event) -> None:
        """Flush until ``stop``, then once more (bounded by the caller's drain)."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_every_s)
            self._wake.clear()
            try:
                while await self.flush() == self.batch:
                    pass
            except PG_UNAVAILABLE as exc:
                log.warning("deleting delivered outbox rows failed: %r", exc)
                self._metrics.pg_errors.inc()
                await self._pool.expire_connections()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.error_pause_s)
        with contextlib.suppress(*PG_UNAVAILABLE):
            while await self.flush():
                pass
