"""An OS file lock that takes turns between processes using the same store.

DuckDB lets one process at a time open a file for writing and fails the others at once
("Could not set lock on file"). Cooperating processes therefore queue on ``flock`` of a
sibling ``<db>.lock`` file: writers exclusively, readers shared. The wait blocks in the
kernel, so a released lock goes to a waiter instead of to whoever polls first; a helper
thread makes that wait bounded. The exclusive holder writes who it is into the lock file so
that a process that gives up can name it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from nightly_pipeline.store.errors import StoreBusyError
from nightly_pipeline.store.retry import Budget


def _acquire(fd: int, operation: int, timeout_s: float) -> bool:
    """Lock ``fd`` within ``timeout_s``; True means the caller holds it and owns ``fd``.

    ``flock`` has no timeout, so a daemon thread does the blocking call. On False or an
    exception ``fd`` is no longer the caller's: if we stopped waiting, the thread keeps it
    and closes it once it gets the lock (closing releases it). The caller must not touch
    ``fd`` again then, since its number may be reused.
    """
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        pass
    except BaseException:
        os.close(fd)
        raise
    if timeout_s <= 0:
        os.close(fd)
        return False

    state_lock = threading.Lock()
    abandoned = False
    acquired = False
    settled = threading.Event()

    def wait_for_lock() -> None:
        nonlocal acquired
        try:
            fcntl.flock(fd, operation)
        except OSError:
            with state_lock:
                os.close(fd)
        else:
            with state_lock:
                if abandoned:
                    os.close(fd)  # too late: the caller gave up; closing releases the lock
                else:
                    acquired = True
        settled.set()

    threading.Thread(target=wait_for_lock, name="metric-store-flock", daemon=True).start()
    interrupted = True
    try:
        settled.wait(timeout_s)
        interrupted = False
    finally:
        with state_lock:
            abandoned = not acquired
            if interrupted and acquired:
                os.close(fd)
    return acquired


def read_holder(lock_path: Path) -> str | None:
    """Who last took the exclusive lock, as written by them; None if nobody said."""
    try:
        text = lock_path.read_text().strip()
    except OSError:
        return None
    return text or None


def _holder_line() -> str:
    since = datetime.now(UTC).isoformat(timespec="seconds")
    return f"pid {os.getpid()} on {socket.gethostname()} since {since}\n"


@contextlib.contextmanager
def hold_file_lock(
    lock_path: Path, db_path: Path, *, exclusive: bool, budget: Budget
) -> Iterator[None]:
    """Hold ``flock`` on ``lock_path`` for the block; StoreBusyError when the budget runs out."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    operation = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    if not _acquire(fd, operation, budget.remaining()):
        raise StoreBusyError(db_path, waited_s=budget.elapsed(), holder=read_holder(lock_path))
    try:
        if exclusive:
            os.ftruncate(fd, 0)
            os.pwrite(fd, _holder_line().encode(), 0)
        yield
    finally:
        try:
            if exclusive:
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
