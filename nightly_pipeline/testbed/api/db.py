"""PostgreSQL access for the API: one asyncpg pool, and every request's queries in a
transaction as ``testbed_app`` with ``app.user_id`` set, so row-level security applies.

    async with db.tx(user_id) as conn: ...
    row = await db.fetchrow(sql, *args)   # one statement, one round trip

``fetchrow`` runs a single statement in its own implicit transaction (no BEGIN/COMMIT
round trips); a statement that needs row-level security sets ``app.user_id`` itself
(``testbed_post_message``). Connection failures become ``Unavailable("postgres")`` here;
getting a connection (and starting the transaction) is retried since nothing has run yet,
the statements never are. The PG circuit breaker guards both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import asyncpg

from nightly_pipeline.testbed.api.errors import Unavailable
from nightly_pipeline.testbed.api.storage import (
    POOL_IN_USE,
    RETRIES,
    BreakerOpen,
    CircuitBreaker,
    count_error,
)

log = logging.getLogger(__name__)

# Errors meaning "the database is not reachable", as opposed to a bad query.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
)
_BEGIN_ATTEMPTS = 3


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool reset without asyncpg's default ``RESET ALL; UNLISTEN *; ...`` query, a round
    trip per release: the API sets nothing session-wide (only transaction-local
    ``app.user_id``), and asyncpg still rolls back a transaction left open."""


class Database:
    def __init__(self, dsn: str, pool_size: int, timeout_s: float, breaker: CircuitBreaker):
        self.dsn = dsn
        self.pool_size = pool_size
        self.timeout_s = timeout_s
        self.breaker = breaker
        self.pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        # min_size=0: the API starts (and reports not ready) while PostgreSQL is down.
        self.pool = await asyncpg.create_pool(
            self.dsn,
            min_size=0,
            max_size=self.pool_size,
            timeout=self.timeout_s,
            command_timeout=10,
            max_inactive_connection_lifetime=60,
            reset=_keep_session,
        )

    async def close(self) -> None:
        if self.pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pool.close(), 5)
            self.pool.terminate()

    def in_use(self) -> int:
        if self.pool is None:
            return 0
        return self.pool.get_size() - self.pool.get_idle_size()

    def _guard(self) -> None:
        try:
            self.breaker.before_call()
        except BreakerOpen as exc:
            count_error("circuit_open")
            raise Unavailable("postgres", "postgres circuit breaker open") from exc

    def _unavailable(self, exc: BaseException) -> Unavailable:
        self.breaker.failure()
        count_error("connection")
        return Unavailable("postgres", f"postgres: {type(exc).__name__}")

    async def _release(self, conn: asyncpg.Connection) -> None:
        assert self.pool is not None
        with contextlib.suppress(Exception):
            await self.pool.release(conn, timeout=2)
        POOL_IN_USE.set(self.in_use())

    async def fetchrow(self, sql: str, *args: object) -> asyncpg.Record | None:
        """One statement on a pooled connection, outside any explicit transaction."""
        self._guard()
        conn, _ = await self._acquire(None, begin=False)
        try:
            row = await conn.fetchrow(sql, *args)
        except CONNECTION_ERRORS as exc:
            raise self._unavailable(exc) from exc
        except asyncpg.PostgresError:
            self.breaker.success()  # the server answered: it is reachable
            raise
        finally:
            await self._release(conn)
        self.breaker.success()
        return row

    @contextlib.asynccontextmanager
    async def tx(self, user_id: int | None = None) -> AsyncIterator[asyncpg.Connection]:
        """A transaction; with ``user_id``, ``SET LOCAL app.user_id`` (RLS)."""
        self._guard()
        conn, tr = await self._acquire(user_id, begin=True)
        try:
            yield conn
            await tr.commit()  # type: ignore[attr-defined]
        except CONNECTION_ERRORS as exc:
            with contextlib.suppress(Exception):
                await tr.rollback()  # type: ignore[attr-defined]
            raise self._unavailable(exc) from exc
        except BaseException:
            with contextlib.suppress(Exception):
                await tr.rollback()  # type: ignore[attr-defined]
            raise
        finally:
            await self._release(conn)
        self.breaker.success()

    async def _acquire(self, user_id: int | None, begin: bool) -> tuple[asyncpg.Connection, object]:
        """A connection (in a started transaction if ``begin``), retried: nothing ran yet."""
        assert self.pool is not None
        for attempt in range(_BEGIN_ATTEMPTS):
            conn = None
            try:
                conn = await self.pool.acquire(timeout=self.timeout_s)
                POOL_IN_USE.set(self.in_use())
                tr = None
                if begin:
                    tr = conn.transaction()
                    await tr.start()
                    if user_id is not None:
                        await conn.execute(
                            "SELECT set_config('app.user_id', $1, true)", str(user_id)
                        )
                return conn, tr
            except CONNECTION_ERRORS as exc:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await self.pool.release(conn, timeout=1)
                if attempt + 1 == _BEGIN_ATTEMPTS or isinstance(exc, TimeoutError):
                    self.breaker.failure()
                    count_error("timeout" if isinstance(exc, TimeoutError) else "connection")
                    raise Unavailable("postgres", f"postgres: {type(exc).__name__}") from exc
                RETRIES.inc()
                await asyncio.sleep(0.02 * 2**attempt)
        raise AssertionError("unreachable")

    async def ping(self, timeout_s: float = 1.0) -> None:
        """Raise unless ``SELECT 1`` answers within ``timeout_s`` (readiness)."""
        assert self.pool is not None
        async with asyncio.timeout(timeout_s):
            async with self.pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
