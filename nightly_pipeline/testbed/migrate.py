"""Apply the testbed's SQL migrations (``sql/NNNN_name.sql``) in order, once each.

    apply(dsn)               # as the superuser; idempotent
    await apply_async(dsn)

Applied versions are recorded in ``testbed_schema_version``; each file runs in its own
transaction under an advisory lock, so concurrent callers apply each file once.
Also here: the DSNs of the two roles the migrations create (``app_dsn``/``worker_dsn``).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from importlib import resources
from urllib.parse import urlsplit, urlunsplit

import asyncpg

APP_ROLE = "testbed_app"  # the API: row-level security applies
WORKER_ROLE = "testbed_worker"  # dispatcher and consumer: BYPASSRLS
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x7E57BED  # pg_advisory_xact_lock key


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    found = []
    for entry in resources.files("nightly_pipeline.testbed").joinpath("sql").iterdir():
        if match := _FILE.match(entry.name):
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"duplicate migration versions: {versions}")
    return found


async def apply_async(dsn: str) -> list[int]:
    """Apply pending migrations; return the versions applied now."""
    conn = await asyncpg.connect(dsn, timeout=10)
    applied_now = []
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS testbed_schema_version ("
            " version INT PRIMARY KEY, name TEXT NOT NULL,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        for migration in migrations():
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
                done = await conn.fetchval(
                    "SELECT 1 FROM testbed_schema_version WHERE version = $1", migration.version
                )
                if done:
                    continue
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO testbed_schema_version (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
                applied_now.append(migration.version)
    finally:
        await conn.close()
    return applied_now


def apply(dsn: str) -> list[int]:
    """Blocking :func:`apply_async` (not from inside a running event loop)."""
    return asyncio.run(apply_async(dsn))


RLS_TABLES = ("conversations", "participants", "messages")


def disable_row_level_security(dsn: str) -> None:
    """The fault knob ``row_level_security: false``: a platform that serves any user's
    rows (run as the tables' owner, after the migrations)."""

    async def disable() -> None:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            for table in RLS_TABLES:
                await conn.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
        finally:
            await conn.close()

    asyncio.run(disable())


def with_user(dsn: str, user: str) -> str:
    """``dsn`` with its user replaced (password dropped: the stack uses trust auth)."""
    parts = urlsplit(dsn)
    host = parts.hostname or ""
    netloc = f"{user}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def app_dsn(dsn: str) -> str:
    return with_user(dsn, APP_ROLE)


def worker_dsn(dsn: str) -> str:
    return with_user(dsn, WORKER_ROLE)
