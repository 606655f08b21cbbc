"""A migration applied beside a load, and rolled back after it.

``MigrationThread`` runs in a thread of its own, with its own event loop (the load owns
the main thread's): it waits ``start_after_s``, applies the migration while ``locks.watch``
samples lock waits on a second connection, and keeps what it saw (``run``, ``waits``,
``error``). ``stop()`` cancels whatever is in flight (asyncpg cancels the running
statement on the server; a command is killed) and joins, bounded.

``roll_back`` applies the down migration (or command); it is idempotent, so it also runs
*before* the up migration to undo what a crashed run left.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable

import asyncpg

from nightly_pipeline.suite.migration.apply import MigrationFailed, MigrationRun, apply_migration
from nightly_pipeline.suite.migration.locks import INTERVAL_S, LockWaits, watch
from nightly_pipeline.suite.migration.source import MigrationSource

CONNECT_TIMEOUT_S = 10.0
JOIN_TIMEOUT_S = 30.0


class MigrationThread:
    """Apply ``source``'s up migration ``start_after_s`` after ``start()``, sampled."""

    def __init__(
        self,
        source: MigrationSource,
        *,
        start_after_s: float,
        deadline_s: float,
        interval_s: float = INTERVAL_S,
        progress: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.source = source
        self.start_after_s = start_after_s
        self.deadline_s = deadline_s
        self.interval_s = interval_s
        self.progress = progress
        self.run = MigrationRun(source.up.name if source.up else " ".join(source.command))
        self.waits = LockWaits()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="migration-under-load")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._started = threading.Event()
        self.ended_at = 0.0  # time.perf_counter() when the thread ended, however it did

    def start(self) -> None:
        self._thread.start()
        self._started.wait(CONNECT_TIMEOUT_S)

    @property
    def done(self) -> bool:
        return self.run.finished > 0

    @property
    def ended(self) -> bool:
        """Finished, failed or stopped: nothing of the migration runs any more."""
        return self.ended_at > 0

    def stop(self, timeout_s: float = JOIN_TIMEOUT_S) -> None:
        """Cancel what is still running (nothing once done) and wait for the thread."""
        if self._loop is not None and self._task is not None and not self._task.done():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(timeout_s)

    def wait(self, timeout_s: float) -> bool:
        """Wait at most ``timeout_s`` for the migration to end; whether it did."""
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.current_task()  # type: ignore[assignment]
            self._started.set()
            await self._migrate()

        try:
            asyncio.run(main())
        except (asyncio.CancelledError, KeyboardInterrupt) as exc:
            self.error = exc
        except BaseException as exc:  # kept for the main thread, which raises it
            self.error = exc
        finally:
            self.ended_at = time.perf_counter()
            self._started.set()

    async def _migrate(self) -> None:
        watcher = await asyncpg.connect(self.source.dsn, timeout=CONNECT_TIMEOUT_S)
        migrator = await asyncpg.connect(self.source.dsn, timeout=CONNECT_TIMEOUT_S)
        stop = asyncio.Event()
        try:
            await asyncio.sleep(self.start_after_s)
            self.waits.exclude_pids.add(migrator.get_server_pid())
            sampling = asyncio.create_task(
                watch(
                    watcher,
                    self.waits,
                    stop,
                    deadline_s=self.deadline_s + 5.0,
                    interval_s=self.interval_s,
                    on_phase=lambda p: self.progress(f"create index: {p}"),
                )
            )
            try:
                migration = self.source.up_migration()
                if migration is not None:
                    await apply_migration(
                        migrator,
                        migration,
                        deadline_s=self.deadline_s,
                        run=self.run,
                        on_step=lambda s: self.progress(f"migration step {s}"),
                    )
                else:
                    await run_command(
                        self.source.command, self.source.dsn, self.deadline_s, self.run
                    )
            finally:
                stop.set()
                with contextlib.suppress(asyncpg.PostgresError, OSError):
                    await asyncio.wait_for(sampling, self.interval_s * 10)
        finally:
            for conn in (migrator, watcher):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), 5.0)


async def run_command(
    argv: tuple[str, ...], dsn: str, deadline_s: float, run: MigrationRun | None = None
) -> None:
    """The platform's own migration command, the DSN in its environment, killed past
    ``deadline_s`` or when cancelled; ``MigrationFailed`` with its output if it fails."""
    run = run or MigrationRun(" ".join(argv))
    run.started = time.perf_counter()
    env = {**os.environ, "NIGHTLY_MIGRATION_DSN": dsn, "DATABASE_URL": dsn}
    proc = await asyncio.create_subprocess_exec(
        *argv,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), deadline_s)
    except (TimeoutError, asyncio.CancelledError) as exc:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        await proc.wait()
        if isinstance(exc, TimeoutError):
            raise MigrationFailed(
                run.name, "command", " ".join(argv), f"still running after {deadline_s:g} s"
            ) from None
        raise
    finally:
        run.finished = time.perf_counter()
    if proc.returncode != 0:
        tail = output.decode(errors="replace")[-2000:].strip()
        raise MigrationFailed(
            run.name, "command", " ".join(argv), f"exit {proc.returncode}: {tail}"
        )


def roll_back(source: MigrationSource, deadline_s: float) -> MigrationRun:
    """Apply the down migration (idempotent): after every run, and before the up one."""

    async def down() -> MigrationRun:
        migration = source.down_migration()
        if migration is None:
            run = MigrationRun(" ".join(source.down_command))
            await run_command(source.down_command, source.dsn, deadline_s, run)
            return run
        conn = await asyncpg.connect(source.dsn, timeout=CONNECT_TIMEOUT_S)
        try:
            return await apply_migration(conn, migration, deadline_s=deadline_s)
        finally:
            await conn.close()

    return asyncio.run(down())
