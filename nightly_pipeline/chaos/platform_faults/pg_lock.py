"""``pg_lock``: hold a lock on a table of the platform's database (a long migration, a
stuck batch job): every statement that needs the table waits, the application's pool
fills with waiting connections and its callers time out. Reverting rolls back.

The lock is held by a connection of this process, on a thread of its own; a run killed
meanwhile closes that connection, which releases the lock: nothing is left behind.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import asyncpg

from nightly_pipeline.chaos.platform_faults.base import FaultError, PlatformFault, register

LOCK_MODES = frozenset(
    {
        "ACCESS SHARE",
        "ROW SHARE",
        "ROW EXCLUSIVE",
        "SHARE UPDATE EXCLUSIVE",
        "SHARE",
        "SHARE ROW EXCLUSIVE",
        "EXCLUSIVE",
        "ACCESS EXCLUSIVE",
    }
)
CONNECT_TIMEOUT_S = 10.0


@register
class PgLock(PlatformFault):
    type_name = "pg_lock"
    params_allowed = frozenset({"table", "mode"})

    def __init__(self, backend: Any, params: Any) -> None:
        super().__init__(backend, params)
        self.table = str(self._require("table"))
        self.mode = str(self.params.get("mode", "ACCESS EXCLUSIVE")).upper()
        if self.mode not in LOCK_MODES:
            raise ValueError(f"fault 'pg_lock': mode must be one of {sorted(LOCK_MODES)}")
        if not self.table.replace("_", "").isalnum():
            raise ValueError(f"fault 'pg_lock': table must be a plain name, got {self.table!r}")
        self._release = threading.Event()
        self._held = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def inject(self) -> None:
        dsn = self.backend.datastores().get("postgres")
        if not dsn:
            raise FaultError("pg_lock: this platform offers no database DSN")
        self._thread = threading.Thread(
            target=self._hold, args=(dsn,), name=f"pg-lock-{self.table}", daemon=True
        )
        self._thread.start()
        while not self._held.wait(0.1):
            if not self._thread.is_alive():
                raise FaultError(f"pg_lock: could not lock {self.table}: {self._error}")
        self.injected = True

    def revert(self) -> None:
        self._release.set()
        if self._thread is not None:
            self._thread.join(timeout=CONNECT_TIMEOUT_S)
        self.injected = False

    def _hold(self, dsn: str) -> None:
        try:
            asyncio.run(self._lock(dsn))
        except BaseException as exc:  # reported by inject() through _error
            self._error = exc

    async def _lock(self, dsn: str) -> None:
        conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_S)
        try:
            async with conn.transaction():
                await conn.execute(f'LOCK TABLE "{self.table}" IN {self.mode} MODE')
                self._held.set()
                while not self._release.is_set():
                    await asyncio.sleep(0.05)
                raise _Release
        except _Release:
            pass  # the transaction rolled back: the lock is gone
        finally:
            await conn.close()


class _Release(Exception):
    """Leaves the transaction block by rolling it back."""
