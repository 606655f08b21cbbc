"""Children that die with the process that started them (Linux): every process of the
stack is spawned with ``PR_SET_PDEATHSIG(SIGKILL)``, so a ``kill -9`` of ``nightly run``
(or of a Dagster run worker) takes PostgreSQL, Redis, the proxies and the platform's
processes with it instead of leaving them running (DESIGN §5, §8).

Two details make it hold:

- The kernel sends the signal when the *thread* that forked the child exits, not the
  process. The chaos tests restart processes from short-lived threads (the experiment's),
  so every spawn runs on one long-lived daemon thread (``spawn_on_owner_thread``), which
  ends only with the process.
- A parent that dies between the fork and the ``prctl`` is missed by the kernel: the
  child checks that its parent is still the one that forked it and exits otherwise.

PDEATHSIG is not inherited by grandchildren: PostgreSQL's backends leave when their
postmaster dies (PostgreSQL watches for that itself), Redis's rewrite child likewise.
Elsewhere than Linux (or without ``prctl``) ``die_with_parent()`` is ``None`` and the
children outlive a killed owner; ``reaper`` then removes them at the next start.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import signal
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")
_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


_PRCTL = _load_prctl()


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that ties the child to the calling thread; None where unsupported.

    It runs in the child between fork and exec: one prepared ctypes call and two
    syscalls, no lock taken. The parent's pid is taken here, before the fork (the
    interpreter's after-fork hooks run in the child first)."""
    prctl, parent = _PRCTL, os.getpid()
    if prctl is None:
        return None

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0)
        if os.getppid() != parent:  # the parent died before the prctl: nobody would tell
            os._exit(1)

    return preexec


class _OwnerThread:
    """One daemon thread that lives as long as the process and runs every spawn."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], object], Future[object]]]
        self._jobs = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pid = 0

    def run(self, fn: Callable[[], T]) -> T:
        thread = self._ensure()
        if threading.current_thread() is thread:
            return fn()
        future: Future[object] = Future()
        self._jobs.put((fn, future))
        try:
            return future.result()  # type: ignore[return-value]
        except BaseException:
            # Ctrl-C while the spawner works: the spawn still lands (bounded wait), where
            # the caller's teardown finds it (``fn`` stores what it started), then re-raise
            with contextlib.suppress(BaseException):
                future.result(timeout=10)
            raise

    def forget(self) -> None:
        """In a forked child: no spawner thread there, and the lock may be a copy held."""
        self._lock = threading.Lock()
        self._thread = None

    def _ensure(self) -> threading.Thread:
        with self._lock:
            # after a fork the thread is gone in the child: start another
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._jobs = queue.SimpleQueue()
                self._thread = threading.Thread(
                    target=self._serve, args=(self._jobs,), name="stack-spawner", daemon=True
                )
                self._pid = os.getpid()
                self._thread.start()
            return self._thread

    @staticmethod
    def _serve(jobs: queue.SimpleQueue[tuple[Callable[[], object], Future[object]]]) -> None:
        while True:
            fn, future = jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed back to the caller, who raises it
                future.set_exception(exc)


_OWNER = _OwnerThread()
os.register_at_fork(after_in_child=_OWNER.forget)


def spawn_on_owner_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` (a ``subprocess.Popen``) on the process's long-lived spawner thread, so
    PDEATHSIG fires when the process dies, not when the calling thread ends."""
    return _OWNER.run(fn)
