"""The compaction after a night (automation/after_night.py) on real store files: it
compacts, and when it cannot (the store busy, the file broken) it says so instead of
failing the night."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from nightly_pipeline.automation.after_night import compact_after_night
from nightly_pipeline.store import DEFAULT_KEEP_NIGHTS, MetricStore, RetryPolicy
from nightly_pipeline.store.locking import hold_file_lock
from nightly_pipeline.store.paths import lock_path_for
from tests.store.conftest import build_result

FIRST = date(2026, 3, 1)


def _store_with_nights(path: Path, n: int, policy: RetryPolicy | None = None) -> MetricStore:
    store = MetricStore(path, retry=policy)
    for day in range(n):
        store.write_test_result(build_result(FIRST + timedelta(days=day), "t", n_seconds=120))
    return store


def test_after_a_night_old_series_are_compacted_and_it_says_so(store_path: Path) -> None:
    store = _store_with_nights(store_path, DEFAULT_KEEP_NIGHTS + 2)
    said: list[str] = []

    assert compact_after_night(store, said.append)

    assert set(store.series(FIRST, "t", "ci")["resolution_s"]) == {60}
    newest = FIRST + timedelta(days=DEFAULT_KEEP_NIGHTS + 1)
    assert set(store.series(newest, "t", "ci")["resolution_s"]) == {1}
    assert any("downsampling the series of 2 night(s)" in line for line in said)
    assert any("series rows" in line and "bytes" in line for line in said)


def test_a_busy_store_is_reported_not_raised(store_path: Path) -> None:
    impatient = RetryPolicy(timeout_s=0.3, max_attempts=5, initial_backoff_s=0.01)
    store = _store_with_nights(store_path, DEFAULT_KEEP_NIGHTS + 1, impatient)
    before = store_path.read_bytes()
    said: list[str] = []

    with hold_file_lock(
        lock_path_for(store_path), store_path, exclusive=True, budget=impatient.start()
    ):
        assert not compact_after_night(store, said.append)

    assert store_path.read_bytes() == before
    assert len(said) == 1
    assert "store compaction failed, the night is unaffected" in said[0]
    assert "is busy" in said[0] and "nightly store compact" in said[0]
    assert compact_after_night(store, said.append)  # the next night's compaction runs


def test_a_broken_store_file_is_reported_not_raised(store_path: Path) -> None:
    store = _store_with_nights(store_path, 1)
    store_path.write_bytes(b"not a database at all" * 100)
    said: list[str] = []

    assert not compact_after_night(store, said.append)

    assert "not a readable DuckDB metric store" in said[0]
    assert store_path.read_bytes() == b"not a database at all" * 100
