"""Short-lived DuckDB connections, one per store operation.

Each operation takes the file lock, opens DuckDB, does its work and closes both, so no
process keeps the file between calls and other readers and writers get their turn.
DuckDB's own lock error ("Could not set lock on file", from a process that does not take
our file lock, such as a DuckDB shell) is retried with backoff within the same budget.
Driver errors are translated here into the store's exceptions, naming the file.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb

from nightly_pipeline.store.errors import StoreBusyError, StoreCorruptError, StoreError
from nightly_pipeline.store.locking import hold_file_lock
from nightly_pipeline.store.paths import lock_path_for
from nightly_pipeline.store.retry import Budget, RetryPolicy

_LOCK_CONFLICT = "Could not set lock on file"
_NOT_A_DATABASE = "not a valid DuckDB database file"
_HOLDER = re.compile(r"Conflicting lock is held in (?P<exe>.+?) \(PID (?P<pid>\d+)\)")


def _holder_from_message(message: str) -> str | None:
    match = _HOLDER.search(message)
    return f"pid {match['pid']} ({match['exe']})" if match else None


def connect(path: Path, *, read_only: bool, budget: Budget) -> duckdb.DuckDBPyConnection:
    """Open ``path``, retrying while another process holds DuckDB's lock on it."""
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            message = str(exc)
            if _LOCK_CONFLICT in message:
                delay = budget.next_delay()
                if delay is None:
                    raise StoreBusyError(
                        path, waited_s=budget.elapsed(), holder=_holder_from_message(message)
                    ) from exc
                time.sleep(delay)
                continue
            if _NOT_A_DATABASE in message:
                raise StoreCorruptError(path, "the file is not a DuckDB database") from exc
            raise StoreError(f"cannot open metric store {path}: {message}") from exc
        except duckdb.Error as exc:
            raise StoreError(f"cannot open metric store {path}: {exc}") from exc


@contextlib.contextmanager
def session(path: Path, *, write: bool, policy: RetryPolicy) -> Iterator[duckdb.DuckDBPyConnection]:
    """The file lock (exclusive to write, shared to read) and a connection, for one block."""
    budget = policy.start()
    if write:
        path.parent.mkdir(parents=True, exist_ok=True)
    with hold_file_lock(lock_path_for(path), path, exclusive=write, budget=budget):
        conn = connect(path, read_only=not write, budget=budget)
        try:
            yield conn
        finally:
            conn.close()
