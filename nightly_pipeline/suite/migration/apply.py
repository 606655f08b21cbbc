"""Apply a migration's steps on one asyncpg connection, the way careful teams do it
under traffic: every step under the file's ``lock_timeout``, a step (or batch) that timed
out waiting for a lock rolled back and tried again after a pause, batches in their own
transactions, ``CONCURRENTLY`` statements outside any.

A statement that fails otherwise (or runs out of retries) stops the migration at once:
``MigrationFailed`` carries PostgreSQL's error and the statement; nothing after it runs.
Every loop is bounded: attempts by the file's ``retries``, batches by ``max_batches``,
everything by ``deadline`` (``statement_timeout`` follows it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg

from nightly_pipeline.suite.errors import ConfigurationError
from nightly_pipeline.suite.migration.steps import Migration, Step

MAX_BATCHES = 100_000


class MigrationFailed(ConfigurationError):
    """The migration under test failed: PostgreSQL's error, the step and the statement."""

    def __init__(self, migration: str, step: str, statement: str, error: str) -> None:
        self.step, self.statement, self.error = step, statement, error
        super().__init__(
            f"migration {migration} failed at step {step}: {error}\n  statement: {statement}"
        )


@dataclass
class StepRun:
    name: str
    started: float  # time.perf_counter()
    finished: float = 0.0
    retries: int = 0
    batches: int = 0


@dataclass
class MigrationRun:
    """What applying a migration took: per step, its time, retries and batches."""

    name: str
    started: float = 0.0
    finished: float = 0.0
    steps: list[StepRun] = field(default_factory=list)
    backend_pid: int = 0  # the session that ran it (its own locks are not "blocked load")

    @property
    def seconds(self) -> float:
        return self.finished - self.started

    @property
    def retries(self) -> int:
        return sum(s.retries for s in self.steps)

    @property
    def current_step(self) -> str:
        return self.steps[-1].name if self.steps else ""


async def apply_migration(
    conn: asyncpg.Connection,
    migration: Migration,
    *,
    deadline_s: float,
    run: MigrationRun | None = None,
    on_step: Callable[[str], None] = lambda _: None,
    max_batches: int = MAX_BATCHES,
) -> MigrationRun:
    """Apply every step of ``migration`` in order within ``deadline_s``; ``run`` (given to
    watch it live) is filled in and returned."""
    run = run or MigrationRun(migration.name)
    run.backend_pid = conn.get_server_pid()
    run.started = time.perf_counter()
    deadline = run.started + deadline_s
    try:
        await conn.execute(f"SET statement_timeout = '{int(deadline_s * 1000)}ms'")
        lock_timeout = migration.lock_timeout or "0"
        await conn.execute(f"SET lock_timeout = '{lock_timeout}'")
        for step in migration.steps:
            on_step(step.name)
            state = StepRun(step.name, time.perf_counter())
            run.steps.append(state)
            if step.batch is None:
                await _attempts(migration, step, state, deadline, lambda s=step: _once(conn, s))
            else:
                await _batches(conn, migration, step, state, deadline, max_batches)
            state.finished = time.perf_counter()
    finally:
        run.finished = time.perf_counter()
    return run


async def _once(conn: asyncpg.Connection, step: Step) -> None:
    if not step.transaction:
        for statement in step.statements:
            await _execute(conn, step, statement)
        return
    async with conn.transaction():
        for statement in step.statements:
            await _execute(conn, step, statement)


async def _execute(conn: asyncpg.Connection, step: Step, statement: str, *args: object) -> object:
    try:
        if args:
            return await conn.fetchval(statement, *args)
        return await conn.execute(statement)
    except asyncpg.PostgresError as exc:
        exc.nightly_statement = statement  # type: ignore[attr-defined]
        raise


async def _batches(
    conn: asyncpg.Connection,
    migration: Migration,
    step: Step,
    state: StepRun,
    deadline: float,
    max_batches: int,
) -> None:
    key: object = step.start_key
    statement = step.statements[0]
    for _ in range(max_batches):
        if time.perf_counter() > deadline:
            raise MigrationFailed(
                migration.name,
                step.name,
                statement,
                f"not done after {state.batches} batches when the migration's deadline passed",
            )

        async def batch(key: object = key) -> object:
            async with conn.transaction():
                return await _execute(conn, step, statement, key, step.batch)

        last = await _attempts(migration, step, state, deadline, batch)
        if last is None:
            return
        key, state.batches = str(last), state.batches + 1
        if step.pause_s:
            await asyncio.sleep(step.pause_s)
    raise MigrationFailed(
        migration.name, step.name, statement, f"still returning keys after {max_batches} batches"
    )


async def _attempts(
    migration: Migration,
    step: Step,
    state: StepRun,
    deadline: float,
    attempt: Callable[[], object],
) -> object:
    """``attempt()`` until it does not time out on a lock: 1 + the file's retries, pauses
    doubling from its ``retry_pause_s``, never past ``deadline``."""
    pause = migration.retry_pause_s
    for tries_left in range(migration.retries, -1, -1):
        try:
            return await attempt()  # type: ignore[misc]
        except asyncpg.LockNotAvailableError as exc:
            if tries_left == 0 or time.perf_counter() + pause > deadline:
                raise _failed(migration, step, exc, f" (after {state.retries} retries)") from exc
            state.retries += 1
            await asyncio.sleep(pause)
            pause *= 2
        except asyncpg.PostgresError as exc:
            raise _failed(migration, step, exc) from exc
    raise AssertionError("unreachable")


def _failed(
    migration: Migration, step: Step, exc: asyncpg.PostgresError, note: str = ""
) -> MigrationFailed:
    statement = getattr(exc, "nightly_statement", step.statements[0])
    error = f"{type(exc).__name__} (SQLSTATE {exc.sqlstate}): {exc}{note}"
    return MigrationFailed(migration.name, step.name, statement, error)
