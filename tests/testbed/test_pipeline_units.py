"""Dispatcher/consumer logic without I/O: the stream entry format both sides agree on,
and the consumer's participant cache (fake pool, fake clock)."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from nightly_pipeline.testbed.config import TestbedConfig
from nightly_pipeline.testbed.consumer import ConsumerMetrics, ConsumerSettings, parse_entry
from nightly_pipeline.testbed.consumer.outbox import DeliveredRows
from nightly_pipeline.testbed.consumer.participants import ParticipantCache
from nightly_pipeline.testbed.consumer.trim import trim_threshold
from nightly_pipeline.testbed.dispatcher import DispatchSettings, stream_fields
from nightly_pipeline.testbed.dispatcher.epoch import Epoch
from nightly_pipeline.testbed.metrics import Registry

CONV = str(uuid.uuid4())
MSG = str(uuid.uuid4())
GOOD = {
    b"message_id": MSG.encode(),
    b"conversation_id": CONV.encode(),
    b"sender_id": b"7",
    b"seq": b"42",
    b"sha256": b"ab" * 32,
    b"ciphertext": base64.b64encode(b"\x00\xffpayload"),
    b"created_at": b"1700000000.250000",
}


def test_dispatcher_fields_parse_back_on_the_consumer_side() -> None:
    row = {
        "message_id": uuid.UUID(MSG),
        "conversation_id": uuid.UUID(CONV),
        "sender_id": 7,
        "seq": 42,
        "sha256": "ab" * 32,
        "ciphertext": b"\x00\xffpayload",
        "created_at": 1700000000.25,
    }
    fields = {k.encode(): v.encode() for k, v in stream_fields(row).items()}  # type: ignore[arg-type]
    entry = parse_entry(b"1-0", fields)
    assert entry is not None and entry.entry_id == "1-0" and entry.message_id == MSG
    assert entry.message == {
        "message_id": MSG,
        "conversation_id": CONV,
        "sender_id": 7,
        "seq": 42,
        "sha256": "ab" * 32,
        "ciphertext": base64.b64encode(b"\x00\xffpayload").decode(),
        "created_at": 1700000000.25,
    }


@pytest.mark.parametrize(
    ("fields", "ok"),
    [
        (GOOD, True),
        (None, False),  # trimmed away before a reclaim
        ({}, False),
        ({k: v for k, v in GOOD.items() if k != b"sha256"}, False),
        (GOOD | {b"seq": b"x"}, False),
        (GOOD | {b"created_at": b"soon"}, False),
        (GOOD | {b"extra": b"ignored"}, True),
    ],
)
def test_parse_entry(fields: dict[bytes, bytes] | None, ok: bool) -> None:
    assert (parse_entry("5-1", fields) is not None) is ok


def test_settings_from_config() -> None:
    cfg = TestbedConfig(
        pg_dsn="postgresql://x@h/db",
        redis_url="redis://h/0",
        stream="s",
        consumer_group="g",
        dispatch_batch=50,
        dispatch_max_attempts=3,
        consumer_reclaim_idle_ms=60_000,
    )
    d = DispatchSettings.from_config(cfg)
    assert (d.stream, d.batch, d.max_attempts) == ("s", 50, 3)
    assert d.backoff_cap_s <= 2.0  # replay within ~2 s of Redis returning
    c = ConsumerSettings.from_config(cfg, "me")
    assert (c.stream, c.group, c.name, c.reclaim_idle_ms) == ("s", "g", "me", 60_000)
    assert c.reclaim_every_s == 5.0  # bounded, however long the idle threshold
    assert d.dlq_on_redis_error and c.reclaim_pending  # healthy by default
    assert d.redeliver_after_s == cfg.outbox_redeliver_after_s
    assert d.write_key == "s"  # the stream the consumer reads
    broken = TestbedConfig(
        pg_dsn="x",
        redis_url="y",
        dlq_on_redis_error=False,
        reclaim_pending=False,
        stream_writable=False,
    )
    assert not DispatchSettings.from_config(broken).dlq_on_redis_error
    assert DispatchSettings.from_config(broken).write_key == "messaging:stream:not-a-stream"
    assert not ConsumerSettings.from_config(broken).reclaim_pending
    assert ConsumerSettings("s", "g", "n", reclaim_idle_ms=100).reclaim_every_s == 0.25
    assert ConsumerSettings.from_config(cfg).name  # defaults to host-pid


class FakePool:
    def __init__(self, members: dict[str, list[int]]) -> None:
        self.members = members
        self.queries = 0
        self.during_fetch: Callable[[], None] | None = None

    async def fetch(self, _sql: str, ids: list[uuid.UUID]) -> list[dict[str, Any]]:
        self.queries += 1
        if self.during_fetch is not None:
            self.during_fetch()
        return [
            {"conversation_id": i, "user_id": u} for i in ids for u in self.members.get(str(i), [])
        ]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _cache(members: dict[str, list[int]]) -> tuple[ParticipantCache, FakePool, FakeClock]:
    pool, clock = FakePool(members), FakeClock()
    cache = ParticipantCache(pool, ConsumerMetrics(Registry()), ttl_s=5.0, clock=clock)  # type: ignore[arg-type]
    return cache, pool, clock


def test_participant_cache_hits_expires_and_invalidates() -> None:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    cache, pool, clock = _cache({a: [3, 1], b: [2]})
    assert asyncio.run(cache.get_many([a, b, a])) == {a: [1, 3], b: [2]}
    assert pool.queries == 1
    assert asyncio.run(cache.get_many([a])) == {a: [1, 3]}
    assert pool.queries == 1  # cached

    pool.members[a] = [1, 3, 4]
    cache.invalidate(a)
    assert asyncio.run(cache.get_many([a, b])) == {a: [1, 3, 4], b: [2]}
    assert pool.queries == 2  # only a was fetched again

    pool.members[b] = []
    clock.now += 5.1
    assert asyncio.run(cache.get_many([b])) == {b: []}  # expired; an empty conversation
    assert pool.queries == 3


def test_participant_lookup_racing_an_invalidation_is_not_cached() -> None:
    a = str(uuid.uuid4())
    cache, pool, _ = _cache({a: [1]})
    pool.during_fetch = lambda: cache.invalidate(a)
    assert asyncio.run(cache.get_many([a])) == {a: [1]}
    pool.during_fetch = None
    asyncio.run(cache.get_many([a]))
    assert pool.queries == 2  # the raced result was used once, not kept


class FakeDeletePool:
    def __init__(self) -> None:
        self.deleted: list[str] = []
        self.fail = False

    async def execute(self, _sql: str, ids: list[uuid.UUID]) -> str:
        if self.fail:
            raise OSError("connection refused")
        self.deleted += [str(i) for i in ids]
        return f"DELETE {len(ids)}"

    async def expire_connections(self) -> None:
        pass


def test_delivered_rows_are_deleted_in_batches_and_kept_while_postgres_fails() -> None:
    pool = FakeDeletePool()
    metrics = ConsumerMetrics(Registry())
    rows = DeliveredRows(pool, metrics, batch=3, max_pending=5)  # type: ignore[arg-type]
    ids = [str(uuid.uuid4()) for _ in range(7)]
    rows.add(ids[:4])
    rows.add(ids[:2])  # seen twice (a redelivery): deleted once
    assert rows.pending == 4
    pool.fail = True
    with pytest.raises(OSError):
        asyncio.run(rows.flush())
    assert rows.pending == 4  # kept for the next try
    pool.fail = False
    assert asyncio.run(rows.flush()) == 3
    assert asyncio.run(rows.flush()) == 1
    assert asyncio.run(rows.flush()) == 0
    assert pool.deleted == ids[:4]
    rows.add(ids)  # beyond max_pending: the oldest are forgotten (they come back later)
    assert rows.pending == 5
    assert metrics.outbox_deleted.value == 4
    assert metrics.outbox_pending_deletes.value == 5


class FakeRedis:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def pipeline(self, transaction: bool = False) -> FakeRedis:
        self._ops: list[Callable[[], Any]] = []
        return self

    def set(self, key: str, value: str, nx: bool = False) -> None:
        def op() -> bool:
            if nx and key in self.data:
                return False
            self.data[key] = value.encode()
            return True

        self._ops.append(op)

    def get(self, key: str) -> None:
        self._ops.append(lambda: self.data.get(key))

    async def execute(self) -> list[Any]:
        return [op() for op in self._ops]


def test_epoch_says_when_redis_lost_its_data() -> None:
    redis = FakeRedis()
    epoch = Epoch("s")
    assert epoch.lost(None)  # first start on an empty Redis: replay (nothing to replay)
    assert asyncio.run(epoch.renew(redis)) is False  # not counted as a loss
    first = epoch.value
    assert first and not epoch.lost(redis.data["s:epoch"])
    redis.data["s:epoch"] = b"another dispatcher's"  # it renewed after a loss: adopt
    assert not epoch.lost(redis.data["s:epoch"]) and epoch.value == b"another dispatcher's"
    redis.data.clear()  # Redis restarted empty
    assert epoch.lost(redis.data.get("s:epoch"))
    assert asyncio.run(epoch.renew(redis)) is True
    assert epoch.value == redis.data["s:epoch"] != first


@pytest.mark.parametrize(
    ("oldest_pending", "last_delivered", "threshold"),
    [
        (None, "0-0", None),  # nothing read yet
        (None, b"1700-5", "1700-5"),  # all acknowledged: below the last one read
        (b"1500-0", b"1700-5", "1500-0"),  # never at or above the oldest pending
        ("1700-5", "1700-5", "1700-5"),
        ("1700-2", "1700-10", "1700-2"),  # compared as numbers, not strings
        ("999-0", "1000-0", "999-0"),
    ],
)
def test_trim_threshold(
    oldest_pending: bytes | str | None, last_delivered: bytes | str, threshold: str | None
) -> None:
    assert trim_threshold(oldest_pending, last_delivered) == threshold
