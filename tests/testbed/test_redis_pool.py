"""The API's watched Redis pool: the in-use peak of a short window, exported as gauges
(no Redis needed: checking a connection out of the pool does not connect it)."""

from __future__ import annotations

from nightly_pipeline.testbed.api import redis_pool
from nightly_pipeline.testbed.api.redis_pool import WindowPeak, watched_redis


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_window_peak_keeps_the_largest_value_of_the_last_seconds() -> None:
    clock = FakeClock()
    peak = WindowPeak(window_s=2, clock=clock)
    assert peak.value() == 0
    peak.note(5)
    peak.note(2)
    clock.now = 101.5
    peak.note(3)
    assert peak.value() == 5
    clock.now = 102.0  # second 100 left the window
    assert peak.value() == 3
    clock.now = 110.0
    assert peak.value() == 0


def test_the_pool_notes_checkouts_and_exports_peak_and_size() -> None:
    client = watched_redis("redis://127.0.0.1:1/0", max_connections=10)
    pool = client.connection_pool
    taken = [pool.get_available_connection() for _ in range(4)]
    pool._in_use_connections.discard(taken[0])  # released
    redis_pool.export(client)
    assert redis_pool.IN_USE.value == 3
    assert redis_pool.IN_USE_PEAK.value == 4
    assert redis_pool.MAX_CONNECTIONS.value == 10
