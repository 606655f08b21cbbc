"""This process dies with the process that started it: for a Dagster step process, whose
run worker may be SIGKILLed (run monitoring, the OOM killer, ``kill -9``) while the step
still runs a test and owns the embedded stack (DESIGN §8).

The stack's processes already die with the process that spawned them (``spawn``:
PDEATHSIG); what kept them running was the step process itself, orphaned by its run
worker and carrying on to the test's end. ``die_with_parent(pid)`` starts one daemon
thread that polls ``os.getppid()``: once the parent is gone the kernel has reparented
this process, and it SIGKILLs itself, which takes the stack with it. Its data and its
store row are handled at the next start (``reaper``; the run reaped as ``crashed``).

Polling rather than this process's own PDEATHSIG: the kernel sends that when the
*thread* that forked us ends, and which thread of the run worker started the step is
the executor's business. ``getppid()`` is one syscall, and cannot be fooled by a reused
pid. The thread lives as long as the process (a daemon; the loop ends only by the kill).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time

log = logging.getLogger(__name__)
POLL_S = 0.25


def _watch(parent: int, poll_s: float) -> None:
    while os.getppid() == parent:
        time.sleep(poll_s)
    log.error("parent process %d is gone: pid %d stops, and its stack with it", parent, os.getpid())
    os.kill(os.getpid(), signal.SIGKILL)


def die_with_parent(parent: int, *, poll_s: float = POLL_S) -> threading.Thread:
    """SIGKILL this process within ``poll_s`` of ``parent`` (its parent now) dying."""
    if parent <= 1:
        raise ValueError(f"parent pid {parent} is not a process to follow")
    watcher = threading.Thread(
        target=_watch, args=(parent, poll_s), name=f"die-with-{parent}", daemon=True
    )
    watcher.start()
    return watcher


def die_with_multiprocessing_parent() -> int | None:
    """When ``multiprocessing`` started this process (Dagster's multiprocess executor starts
    each step so, from the run worker), die with that parent; the pid followed, or None
    (an in-process run, a Celery worker: the process is the run's own, nothing to follow).
    """
    parent = multiprocessing.parent_process()
    if parent is None or parent.pid is None or parent.pid != os.getppid():
        return None
    die_with_parent(parent.pid)
    return parent.pid
