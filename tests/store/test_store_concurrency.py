"""Several OS processes sharing one store file: nothing lost, busy reported clearly."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import duckdb
import pytest

from nightly_pipeline.store import (
    MetricStore,
    RetryPolicy,
    StoreBusyError,
    TestResultRecord,
)

MakeResult = Callable[..., TestResultRecord]
NIGHT = date(2024, 3, 1)
WRITER = Path(__file__).with_name("concurrent_writer.py")
FAST_GIVE_UP = RetryPolicy(timeout_s=0.3, max_attempts=5, initial_backoff_s=0.01)


def test_two_writer_processes_lose_nothing(tmp_path: Path) -> None:
    db = tmp_path / "metrics.duckdb"
    count, n_metrics, n_seconds = 30, 3, 60
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                str(WRITER),
                str(db),
                name,
                str(count),
                str(n_metrics),
                str(n_seconds),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    try:
        for worker in workers:  # both imported and holding their records: start together
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == "ready"
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        outputs = [worker.communicate(timeout=60)[0] for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    assert [w.returncode for w in workers] == [0, 0]

    spans = {r["worker"]: r["spans"] for r in map(json.loads, outputs)}
    (a_first, _), (_, a_last) = spans["a"][0], spans["a"][-1]
    (b_first, _), (_, b_last) = spans["b"][0], spans["b"][-1]
    assert a_first < b_last and b_first < a_last, "the writers did not run at the same time"

    with duckdb.connect(str(db), read_only=True) as conn:
        per_result = conn.execute(
            """
            SELECT r.test, r.night,
                   (SELECT count(*) FROM metrics m WHERE m.night = r.night AND m.test = r.test),
                   (SELECT count(*) FROM series s WHERE s.night = r.night AND s.test = r.test),
                   (SELECT count(*) FROM threshold_results t
                     WHERE t.night = r.night AND t.test = r.test)
            FROM test_results r ORDER BY r.test, r.night
            """
        ).fetchall()
    assert len(per_result) == 2 * count
    assert {(m, s, t) for _, _, m, s, t in per_result} == {(n_metrics, n_metrics * n_seconds, 1)}
    assert {test for test, *_ in per_result} == {"t-a", "t-b"}


@contextmanager
def flock_held(store_path: Path, holder: str) -> Iterator[int]:
    """Hold the store's file lock as another cooperating process would."""
    fd = os.open(f"{store_path}.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.write(fd, holder.encode())
        yield fd
    finally:
        os.close(fd)


def test_busy_file_lock_gives_up_naming_file_and_holder(
    store: MetricStore, store_path: Path, make_result: MakeResult
) -> None:
    impatient = MetricStore(store_path, retry=FAST_GIVE_UP)
    with flock_held(store_path, "pid 4242 on nightly-host"):
        with pytest.raises(StoreBusyError) as excinfo:
            impatient.write_test_result(make_result(NIGHT, "a"))
        with pytest.raises(StoreBusyError):
            impatient.recent_results()
    message = str(excinfo.value)
    assert str(store_path) in message
    assert "pid 4242 on nightly-host" in message

    # The abandoned waits must not keep the lock: once free, writes go through.
    store.write_test_result(make_result(NIGHT, "a"))
    assert store.recent_results().height == 1


def test_waiting_writer_gets_the_lock_when_released(
    store: MetricStore, store_path: Path, make_result: MakeResult
) -> None:
    acquired = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with flock_held(store_path, "test holder"):
            acquired.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    acquired.wait(10)
    writer = threading.Thread(target=store.write_test_result, args=(make_result(NIGHT, "a"),))
    writer.start()
    writer.join(0.2)
    assert writer.is_alive(), "the write did not wait for the lock"
    release.set()
    writer.join(10)
    holder.join(10)
    assert store.recent_results()["test"].to_list() == ["a"]


def test_duckdb_lock_of_a_foreign_process_is_retried_then_reported(
    store: MetricStore, store_path: Path, make_result: MakeResult
) -> None:
    # A DuckDB shell or script that ignores our lock file: only DuckDB's own lock stops us.
    impatient = MetricStore(store_path, retry=RetryPolicy(timeout_s=30, max_attempts=3))
    foreign = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('open', flush=True); "
            "sys.stdin.readline()",
            str(store_path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert foreign.stdout is not None
        assert foreign.stdout.readline().strip() == "open"
        with pytest.raises(StoreBusyError) as on_write:
            impatient.write_test_result(make_result(NIGHT, "a"))
        with pytest.raises(StoreBusyError) as on_open:
            MetricStore(store_path, retry=RetryPolicy(timeout_s=30, max_attempts=3))
    finally:
        foreign.communicate("done\n", timeout=30)
    for excinfo in (on_write, on_open):
        assert str(store_path) in str(excinfo.value)
        assert f"pid {foreign.pid}" in str(excinfo.value)
    impatient.write_test_result(make_result(NIGHT, "a"))  # free again
    assert store.recent_results().height == 1
