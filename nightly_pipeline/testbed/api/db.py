"""PostgreSQL access for the API: one bounded asyncpg pool, and every request's queries in a
transaction as ``testbed_app`` with ``app.user_id`` set, so row-level security applies.

    async with db.tx(user_id) as conn: ...
    row = await db.fetchrow(sql, *args)   # one statement, one round trip

``fetchrow`` runs a single statement in its own implicit transaction (no BEGIN/COMMIT
round trips); a statement that needs row-level security sets ``app.user_id`` itself
(``testbed_post_message``).

Failures: an unreachable or overwhelmed database (:data:`UNAVAILABLE_ERRORS`: refused or
broken connections, shutdown, too many connections, a pool or statement timeout) becomes
``Unavailable("postgres")`` (503) here, is counted in ``storage_errors_total{type}`` and
reported to the ``pg`` circuit breaker, which guards every call. Getting a connection
(and starting the transaction) is retried since nothing has run yet; statements never
are. A broken connection expires the whole pool (``expire_connections``): after
PostgreSQL restarts, the connections to the old server are replaced on their next use
instead of failing one request each.

Bounds: ``timeout_s`` for a pooled connection (``pg_pool_timeout_s``), ``command_timeout_s``
per statement; ``timeout_s=None`` (the fault knob) waits without bound for both.
Commits are synchronous (``synchronous_commit=on``, whatever the server's default): a
202 answered for a message must survive PostgreSQL being killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import asyncpg

from nightly_pipeline.testbed.api.breaker import (
    BreakerOpen,
    CircuitBreaker,
    count_error,
    error_type,
)
from nightly_pipeline.testbed.api.errors import Unavailable
from nightly_pipeline.testbed.api.storage import POOL_IN_USE, RETRIES

log = logging.getLogger(__name__)

# Errors meaning "the database cannot serve now", as opposed to a bad query.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,  # class 08
    asyncpg.InterfaceError,  # the connection closed under us
    # a connection whose protocol state broke when the server went away mid-operation
    # ("cannot switch to state ...; another operation is in progress"): replaced, like one
    # closed under us
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.OperatorInterventionError,  # 57: shutdown, starting up, canceled
    asyncpg.exceptions.InsufficientResourcesError,  # 53: too many connections
    asyncpg.exceptions.LockNotAvailableError,  # 55P03: lock_timeout
)
CONNECTION_ERRORS = UNAVAILABLE_ERRORS  # the name app.py used first
_BEGIN_ATTEMPTS = 3
SERVER_SETTINGS = {"application_name": "testbed-api", "synchronous_commit": "on"}


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool reset without asyncpg's default ``RESET ALL; UNLISTEN *; ...`` query, a round
    trip per release: the API sets nothing session-wide (only transaction-local
    ``app.user_id``), and asyncpg still rolls back a transaction left open."""


class Database:
    def __init__(
        self,
        dsn: str,
        pool_size: int,
        timeout_s: float | None,
        breaker: CircuitBreaker,
        command_timeout_s: float | None = 5.0,
        on_lost: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.dsn = dsn
        self.pool_size = pool_size
        self.timeout_s = timeout_s
        self.command_timeout_s = command_timeout_s if timeout_s is not None else None
        self.breaker = breaker
        self.on_lost = on_lost  # called on a refused/broken connection (exit_on_db_loss)
        self.pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        # min_size=0: the API starts (and reports not ready) while PostgreSQL is down.
        self.pool = await asyncpg.create_pool(
            self.dsn,
            min_size=0,
            max_size=self.pool_size,
            timeout=min(self.timeout_s or 60.0, 5.0),  # connect timeout
            command_timeout=self.command_timeout_s,
            max_inactive_connection_lifetime=60,
            reset=_keep_session,
            server_settings=SERVER_SETTINGS,
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
            count_error(exc)
            raise Unavailable("postgres", "postgres circuit breaker open") from exc

    async def _failed(self, exc: BaseException) -> Unavailable:
        """Count, tell the breaker, drop broken connections; the 503 to raise."""
        self.breaker.failure()
        if count_error(exc) == "ConnectionError":
            await self._lost(exc)
        return Unavailable("postgres", f"postgres: {type(exc).__name__}")

    async def _lost(self, exc: BaseException) -> None:
        if self.pool is not None:
            await self.pool.expire_connections()
        if self.on_lost is not None:
            self.on_lost(exc)

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
        except UNAVAILABLE_ERRORS as exc:
            raise await self._failed(exc) from exc
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
        except UNAVAILABLE_ERRORS as exc:
            with contextlib.suppress(Exception):
                await tr.rollback()  # type: ignore[attr-defined]
            raise await self._failed(exc) from exc
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await tr.rollback()  # type: ignore[attr-defined]
            raise
        except BaseException:
            with contextlib.suppress(Exception):
                await tr.rollback()  # type: ignore[attr-defined]
            self.breaker.success()  # a refusal (403, 409...): the database answered
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
            except UNAVAILABLE_ERRORS as exc:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await self.pool.release(conn, timeout=1)
                if attempt + 1 == _BEGIN_ATTEMPTS or error_type(exc) == "TimeoutError":
                    raise await self._failed(exc) from exc
                await self._lost(exc)  # replace the broken connections before the retry
                RETRIES.inc()
                await asyncio.sleep(0.02 * 2**attempt)
        raise AssertionError("unreachable")

    async def ping(self, timeout_s: float = 1.0) -> None:
        """Raise unless ``SELECT 1`` answers within ``timeout_s`` (readiness; no breaker)."""
        assert self.pool is not None
        try:
            async with asyncio.timeout(timeout_s):
                async with self.pool.acquire() as conn:
                    await conn.fetchval("SELECT 1")
        except UNAVAILABLE_ERRORS as exc:
            if error_type(exc) == "ConnectionError":
                await self._lost(exc)
            raise
