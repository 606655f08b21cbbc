"""What "PostgreSQL cannot serve now" looks like through asyncpg, for the workers' loops
(the dispatcher, the consumer): wait and try again, never exit.

``InternalClientError`` ("cannot switch to state N; another operation is in progress") is
a pooled connection whose protocol state broke when the server went away mid-operation:
measured when Test 11 kills PostgreSQL after Test 10's lock on the same platform, it
ended the dispatcher's loop before it was listed here.
"""

from __future__ import annotations

import asyncpg

PG_UNAVAILABLE: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
    TimeoutError,
)
