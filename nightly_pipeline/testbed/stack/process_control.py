"""Process control of a running embedded stack: the chaos tests' kill -9, SIGTERM, pause
and restart, always through the stack's own process handles (DESIGN §8/§9: processes are
signalled by pid, never by name)::

    stack.process_names()               # ("postgres", "redis", "proxy-postgres",
                                        #  "proxy-redis", then the extra processes in order)
    stack.pids()                        # {name: pid of its current process}
    stack.is_running("consumer")        # alive (a paused process is running)
    stack.signal("consumer", signal.SIGSTOP)   # -> the pid signalled
    stack.restart("postgres")           # -> the new pid, once ready again

**What a signal reaches.** Every process of the stack is started in its own session, so
its process group is the tree it started (PostgreSQL's backends and auxiliary processes,
Redis's AOF-rewrite child). SIGKILL, SIGSTOP and SIGCONT go to the whole group: a kill -9
of PostgreSQL is the crash of the whole server (no orphaned backend keeps its shared
memory, which would refuse the restart), and a pause must freeze the backends that
actually answer queries, not only the postmaster. Every other signal (SIGTERM, SIGINT,
SIGQUIT, SIGHUP, ...) goes to the main process only, which owns its shutdown and tells
its children (PostgreSQL's smart/fast/immediate shutdowns are SIGTERM/SIGINT/SIGQUIT to
the postmaster). A signal to a process that is not running raises
:class:`ProcessNotRunningError` naming the process and the fix.

**What a restart keeps.** ``restart(name)`` stops the process if it is alive (SIGCONT
first, then its graceful stop — ``pg_ctl stop -m fast``, SIGTERM — bounded, SIGKILL
fallback, every pid verified gone), starts it again from the same spec and waits until
it is ready (bounded), so clients keep their addresses: PostgreSQL on the same port and
data directory (crash recovery after a kill -9), Redis on the same port and directory
(its append-only file replayed), each fault proxy on the listen and control ports of its
first start (its faults are not kept: a restarted proxy forwards cleanly), the extra
processes with the same argv, environment and config files (the embedded platform pins
the API's HTTP port and the workers' metrics ports in them). A restart that fails leaves
the new process tracked: teardown stops it like any other.

Teardown stops every process the stack is running at that moment, restarted or paused.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal as signals
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from nightly_pipeline.testbed.stack.errors import (
    ProcessNotRunningError,
    TeardownError,
    UnknownProcessError,
)
from nightly_pipeline.testbed.stack.procs import ManagedProcess

log = logging.getLogger(__name__)
GROUP_SIGNALS = frozenset({signals.SIGKILL, signals.SIGSTOP, signals.SIGCONT})
"""Sent to the whole process group; every other signal to the main process only."""


@dataclass(frozen=True)
class Handle:
    """How the stack reaches one of its processes."""

    process: Callable[[], ManagedProcess | None]  # the current process (None: not started)
    stop: Callable[[], list[int]]  # stop it (bounded); the pids still alive afterwards
    start: Callable[[], str | None]  # start it again and wait until ready; its READY line


class ProcessControl:
    """Process control for :class:`~nightly_pipeline.testbed.stack.EmbeddedStack`, which
    provides ``_handles()`` (in start order) and ``_restarted()``."""

    _control_lock: threading.RLock

    def _handles(self) -> Mapping[str, Handle]:
        raise NotImplementedError

    def _restarted(self, name: str, pid: int, ready_line: str | None) -> None:
        raise NotImplementedError

    def process_names(self) -> tuple[str, ...]:
        """The processes this stack controls, in start order (empty when not running)."""
        with self._control_lock:
            return tuple(self._handles())

    def pids(self) -> dict[str, int]:
        """Name → pid of each process's current (latest) start; ``Endpoints.pids`` keeps
        the pids of the first start. A process that died keeps its last pid here: see
        ``is_running``."""
        with self._control_lock:
            out = {}
            for name, handle in self._handles().items():
                proc = handle.process()
                if proc is not None and proc.proc is not None:
                    out[name] = proc.pid
            return out

    def is_running(self, name: str) -> bool:
        """Whether ``name``'s current process is alive (paused counts as alive)."""
        with self._control_lock:
            proc = self._handle(name).process()
            return proc is not None and proc.running()

    def signal(self, name: str, sig: int) -> int:
        """Send ``sig`` to ``name`` (to its whole process group for SIGKILL, SIGSTOP and
        SIGCONT, else to its main process); return the pid signalled."""
        sig = signals.Signals(sig)
        with self._control_lock:
            proc = self._handle(name).process()
            if proc is None or proc.proc is None:
                raise ProcessNotRunningError(name, "never started")
            if not proc.running():
                raise ProcessNotRunningError(
                    name, f"pid {proc.pid} {_exit_text(proc.proc.returncode)}"
                )
            try:
                if sig in GROUP_SIGNALS:
                    os.killpg(proc.pid, sig)  # started with start_new_session: pgid == pid
                else:
                    os.kill(proc.pid, sig)
            except ProcessLookupError as exc:
                raise ProcessNotRunningError(name, f"pid {proc.pid} is gone") from exc
            where = "process group" if sig in GROUP_SIGNALS else "process"
            log.info("sent %s to %s (%s %d)", sig.name, name, where, proc.pid)
            return proc.pid

    def restart(self, name: str) -> int:
        """Stop ``name`` if alive (gracefully, bounded, SIGKILL fallback), start it again
        with the same spec, ports, data and config, wait until ready (bounded); return the
        new pid. Raises ``TeardownError`` when the old process survives its stop, and the
        start's ``StackStartError``/``ReadinessTimeoutError`` (log tail inside) when it does
        not come back."""
        with self._control_lock:
            handle = self._handle(name)
            old = handle.process()
            old_pid = old.pid if old is not None and old.proc is not None else None
            survivors = handle.stop()
            if survivors:
                raise TeardownError([(name, pid) for pid in survivors])
            ready_line = handle.start()
            proc = handle.process()
            assert proc is not None
            self._restarted(name, proc.pid, ready_line)
            log.info("restarted %s: pid %s -> %d", name, old_pid, proc.pid)
            return proc.pid

    def _handle(self, name: str) -> Handle:
        handles = self._handles()
        if name not in handles:
            raise UnknownProcessError(name, tuple(handles))
        return handles[name]


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signals.Signals(-code).name}"
    return f"exited with code {code}"
