"""Who waits for whom while a migration runs: ``pg_stat_activity`` with
``pg_blocking_pids()`` and ``pg_locks.waitstart``, and the phases of
``pg_stat_progress_create_index``, sampled on a connection of their own.

``LockWaits`` accumulates samples (pure, no I/O); ``sample`` reads one from PostgreSQL;
``watch`` samples every ``interval_s`` until told to stop or its deadline passes.
A session the migration itself runs in is kept apart: a ``CREATE INDEX CONCURRENTLY``
waiting for the load's transactions is the safe way, the load waiting for the migration
is what hurts.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import asyncpg

INTERVAL_S = 0.1  # the bound is 250 ms; a 0.2 s block is seen twice
QUERY_CHARS = 300

BLOCKED_SQL = f"""
SELECT w.pid, w.application_name, left(w.query, {QUERY_CHARS}) AS query,
       coalesce(extract(epoch FROM clock_timestamp() - (
           SELECT min(l.waitstart) FROM pg_locks l WHERE l.pid = w.pid AND NOT l.granted
       )), 0)::float8 AS wait_s,
       b.pid AS blocker_pid, left(b.query, {QUERY_CHARS}) AS blocker_query
FROM pg_stat_activity w
CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS bp(pid)
JOIN pg_stat_activity b ON b.pid = bp.pid
WHERE w.datname = current_database() AND w.wait_event_type = 'Lock'
"""
PROGRESS_SQL = """
SELECT pid, phase, blocks_done, blocks_total FROM pg_stat_progress_create_index
WHERE datname = current_database()
"""


@dataclass(frozen=True)
class Blocked:
    """One session waiting for a lock, and one session it waits for."""

    pid: int
    application: str
    query: str
    wait_s: float
    blocker_pid: int
    blocker_query: str


@dataclass(frozen=True)
class IndexProgress:
    pid: int
    phase: str
    blocks_done: int
    blocks_total: int


@dataclass
class LockWaits:
    """Lock waits seen over the samples: the most sessions blocked at once, the longest
    wait, the statement that blocked it, and the seconds spent in each index phase."""

    exclude_pids: set[int] = field(default_factory=set)  # the migration's own session
    samples: int = 0
    max_blocked: int = 0
    longest_wait_s: float = 0.0
    longest: Blocked | None = None
    migration_waited_s: float = 0.0  # the migration's own longest lock wait
    blockers: dict[str, int] = field(default_factory=dict)  # statement -> samples it blocked
    phases: dict[str, float] = field(default_factory=dict)  # phase -> seconds seen in it
    _last_at: float | None = None

    def add(self, at: float, blocked: Sequence[Blocked], progress: Sequence[IndexProgress]) -> None:
        """One sample taken at ``at`` (seconds, any monotonic clock)."""
        step = 0.0 if self._last_at is None else max(0.0, at - self._last_at)
        self._last_at, self.samples = at, self.samples + 1
        load = [b for b in blocked if b.pid not in self.exclude_pids]
        own = [b.wait_s for b in blocked if b.pid in self.exclude_pids]
        self.migration_waited_s = max([self.migration_waited_s, *own])
        waiting = {b.pid for b in load}
        self.max_blocked = max(self.max_blocked, len(waiting))
        for b in _roots(load, waiting):
            self.blockers[b.blocker_query] = self.blockers.get(b.blocker_query, 0) + 1
            if b.wait_s > self.longest_wait_s:
                self.longest_wait_s, self.longest = b.wait_s, b
        for p in {p.phase: p for p in progress}.values():
            self.phases[p.phase] = self.phases.get(p.phase, 0.0) + step

    def blocking_statement(self) -> str | None:
        """The statement that blocked the load in the most samples."""
        if not self.blockers:
            return None
        return max(self.blockers.items(), key=lambda item: item[1])[0]

    def describe(self) -> str:
        """One line for a failing check's detail: the blocker named."""
        if self.longest is None:
            return f"no session of the load was blocked ({self.samples} lock samples)"
        b = self.longest
        return (
            f"{self.max_blocked} session(s) blocked at once, the longest for"
            f" {b.wait_s * 1000:.0f} ms ({b.application or 'pid ' + str(b.pid)}: {b.query!r}),"
            f" blocked by pid {b.blocker_pid}: {self.blocking_statement()!r}"
        )


def _roots(load: Sequence[Blocked], waiting: set[int]) -> list[Blocked]:
    """Each blocked session's edges to sessions that are not waiting themselves (the
    lock's holder rather than the queue ahead of it); all its edges when every blocker
    waits too."""
    out = []
    for pid in dict.fromkeys(b.pid for b in load):
        edges = [b for b in load if b.pid == pid]
        out += [b for b in edges if b.blocker_pid not in waiting] or edges
    return out


async def sample(conn: asyncpg.Connection) -> tuple[list[Blocked], list[IndexProgress]]:
    """One look at the lock waits and the index builds of the connection's database."""
    blocked = [Blocked(*row) for row in await conn.fetch(BLOCKED_SQL)]
    progress = [IndexProgress(*row) for row in await conn.fetch(PROGRESS_SQL)]
    return blocked, progress


async def watch(
    conn: asyncpg.Connection,
    waits: LockWaits,
    stop: asyncio.Event,
    *,
    deadline_s: float,
    interval_s: float = INTERVAL_S,
    on_phase: Callable[[str], None] = lambda _: None,
) -> LockWaits:
    """Sample into ``waits`` every ``interval_s`` (from the start of each sample) until
    ``stop`` is set or ``deadline_s`` has passed; ``on_phase`` hears each new index phase."""
    end = time.monotonic() + deadline_s
    seen: set[str] = set()
    for _ in range(int(deadline_s / interval_s) + 2):
        began = time.monotonic()
        blocked, progress = await sample(conn)
        waits.add(began, blocked, progress)
        for p in progress:
            if p.phase not in seen:
                seen.add(p.phase)
                on_phase(p.phase)
        if stop.is_set() or began >= end:
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, interval_s - (time.monotonic() - began)))
    return waits
