"""Redis ``used_memory`` and the database size, sampled from the embedded platform's real
Redis and PostgreSQL, become the resources figures; what cannot be read is said, not
raised."""

from __future__ import annotations

import asyncio
import dataclasses

import asyncpg
import pytest
import redis

from nightly_pipeline.loadgen.recorder import Recorder
from nightly_pipeline.store import MetricRow
from nightly_pipeline.suite.datastores import (
    DATABASE_GAUGE,
    REDIS_GAUGE,
    Addresses,
    DatastoreSampler,
    addresses,
)
from nightly_pipeline.suite.figures import figures_for
from nightly_pipeline.suite.migration.source import MigrationSource
from nightly_pipeline.suite.target import Target
from tests.suite.platforms import ci_platform

EXTERNAL = Target("prod", "https://x.example", "wss://x.example/ws", {}, ("u",), "pw")


@pytest.fixture(scope="module")
def platform(tmp_path_factory, system_dir):
    with ci_platform(tmp_path_factory, system_dir, "datastores") as up:
        yield up


def test_an_external_target_without_addresses_skips_both_and_says_why() -> None:
    where = addresses(EXTERNAL)
    assert (where.redis_url, where.dsn) == (None, None)
    assert [line.split()[0] for line in where.skipped] == [REDIS_GAUGE, DATABASE_GAUGE]
    assert "dsn_env" in where.skipped[1]  # the fix
    with DatastoreSampler(where) as stores:
        pass
    assert stores.samples == []


def test_an_external_target_with_a_migration_dsn_has_its_database_measured() -> None:
    source = MigrationSource(dsn="postgresql://u@db.example/app", command=("true",))
    where = addresses(dataclasses.replace(EXTERNAL, migration=source))
    assert where.dsn == "postgresql://u@db.example/app" and where.redis_url is None
    assert len(where.skipped) == 1 and where.skipped[0].startswith(REDIS_GAUGE)


def test_the_embedded_platforms_redis_and_database_are_sampled_and_recorded(platform) -> None:
    where = addresses(platform.target())
    assert where.redis_url and where.dsn and where.skipped == ()
    with redis.Redis.from_url(where.redis_url) as r, DatastoreSampler(where) as stores:
        r.set("test:datastores:blob", b"x" * (8 << 20))  # 8 MiB more used_memory
        try:
            stores.sample_once()
        finally:
            r.delete("test:datastores:blob")
    by_gauge: dict[str, list[float]] = {}
    for gauge, _, mb in stores.samples:
        by_gauge.setdefault(gauge, []).append(mb)
    assert max(by_gauge[REDIS_GAUGE]) - min(by_gauge[REDIS_GAUGE]) >= 7.5
    size = asyncio.run(_database_size_mb(where.dsn))
    assert all(abs(mb - size) < 64 for mb in by_gauge[DATABASE_GAUGE]) and size > 1
    assert stores.failed_reads == 0

    recorder = Recorder(0.0)
    stores.record(recorder)
    recorder.close_all()
    rows = [
        MetricRow(f"{name}.{stat}", float(recorder.stats(name)[stat]), "", {})
        for name in (REDIS_GAUGE, DATABASE_GAUGE)
        for stat in ("value", "max")
    ]
    shown = figures_for("resources", rows)
    assert shown[f"{REDIS_GAUGE}.max"] >= max(by_gauge[REDIS_GAUGE]) - 1e-9
    assert shown[f"{DATABASE_GAUGE}.value"] == by_gauge[DATABASE_GAUGE][-1]


def test_a_datastore_that_does_not_answer_is_counted_not_raised() -> None:
    where = Addresses("redis://127.0.0.1:1/0", "postgresql://u@127.0.0.1:1/x", ())
    with DatastoreSampler(where, interval_s=60) as stores:
        pass
    assert stores.samples == [] and stores.failed_reads == 4  # entry and exit, both stores


async def _database_size_mb(dsn: str) -> float:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT pg_database_size(current_database())") / 2**20
    finally:
        await conn.close()
