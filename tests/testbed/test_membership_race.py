"""The API's membership cache against a racing change (real PostgreSQL, Redis, API).

A GET that misses reads the participants from PostgreSQL, then fills the in-process
dict and the Redis hash. If another API process changes the membership while that read
is in flight (it bumps the version, deletes the hash and publishes the conversation id),
the older read must not be cached: the next GET is a miss again, not a stale hit."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import pytest
import redis

from nightly_pipeline.testbed.api.membership import INVALIDATE_CHANNEL, VERSION_PREFIX
from tests.testbed.api_fixtures import ApiStack, api_stack, create_conversation

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, system_dir: Path) -> Iterator[ApiStack]:
    with api_stack(tmp_path_factory.mktemp("race") / "run", system_dir) as stack:
        yield stack


class ParticipantsLock:
    """Holds ACCESS EXCLUSIVE on ``participants`` (as the owner) until released."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.locked = threading.Event()
        self.release = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._hold()), daemon=True)

    async def _hold(self) -> None:
        conn = await asyncpg.connect(self.dsn, timeout=5)
        try:
            async with conn.transaction():
                await conn.execute("LOCK TABLE participants IN ACCESS EXCLUSIVE MODE")
                self.locked.set()
                while not self.release.is_set():
                    await asyncio.sleep(0.01)
        finally:
            await conn.close()

    def __enter__(self) -> ParticipantsLock:
        self.thread.start()
        assert self.locked.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.thread.join(10)


def _blocked_queries(dsn: str) -> int:
    async def count() -> int:
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            return await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND query LIKE 'SELECT user_id FROM participants%'"
            )
        finally:
            await conn.close()

    return asyncio.run(count())


def test_a_change_during_a_miss_leaves_the_membership_uncached(api: ApiStack) -> None:
    owner = api.login("user0001")
    conv = create_conversation(api, owner, "user0002", title="race")["id"]
    url = f"/v1/conversations/{conv}"
    ep = api.endpoints
    lock = ParticipantsLock(ep.postgres_dsn)
    with lock, ThreadPoolExecutor(1) as pool, api.client(owner) as c:
        racing = pool.submit(c.get, url)  # misses, then waits for the table lock
        deadline = time.monotonic() + 10
        while _blocked_queries(ep.postgres_dsn) == 0:  # bounded: the read is waiting
            assert time.monotonic() < deadline, "the GET never reached PostgreSQL"
            time.sleep(0.02)
        with redis.Redis.from_url(ep.redis_url) as r:  # another API process's change
            r.incr(VERSION_PREFIX + conv)
            r.delete(f"messaging:participants:{conv}")
            r.publish(INVALIDATE_CHANNEL, conv)
        lock.release.set()
        first = racing.result(timeout=10)
    with api.client(owner) as c:
        after, again = c.get(url), c.get(url)
    assert (first.status_code, first.headers["X-Cache"]) == (200, "miss")
    assert after.headers["X-Cache"] == "miss"  # the racing read was not cached
    assert again.headers["X-Cache"] == "hit"  # a read after the change is
