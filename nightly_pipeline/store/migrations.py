"""Schema versions of the store file and the forward migrations between them.

Migrations are the numbered files in ``sql/migrations`` (``0001_initial.sql``, ...). Each
runs in its own transaction together with its ``schema_version`` row, so a file is always
at a whole version. A file whose version is newer than the code is never written: the
check happens on a read-only connection before anything opens it for writing.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import duckdb

from nightly_pipeline.store.connection import connect
from nightly_pipeline.store.errors import StoreError, StoreSchemaTooNewError
from nightly_pipeline.store.locking import hold_file_lock
from nightly_pipeline.store.paths import lock_path_for
from nightly_pipeline.store.queries import query
from nightly_pipeline.store.retry import RetryPolicy

_MIGRATIONS_PACKAGE = "nightly_pipeline.store.sql.migrations"
_FILENAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered schema change."""

    version: int
    name: str
    sql: str


def parse_migrations(files: dict[str, str]) -> tuple[Migration, ...]:
    """Order ``{filename: sql}`` by number; the numbers must run 1, 2, 3... without gaps."""
    found = []
    for filename, sql in files.items():
        match = _FILENAME.match(filename)
        if match is None:
            raise ValueError(f"migration file {filename!r} is not named NNNN_name.sql")
        found.append(Migration(int(match["version"]), match["name"], sql))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise ValueError(f"migration numbers must be 1..{len(found)} without gaps: {versions}")
    return tuple(found)


@functools.cache
def load_migrations() -> tuple[Migration, ...]:
    """The migrations shipped with this package, in order."""
    root = resources.files(_MIGRATIONS_PACKAGE)
    files = {
        entry.name: entry.read_text()
        for entry in root.iterdir()
        if entry.is_file() and entry.name.endswith(".sql")
    }
    return parse_migrations(files)


def latest_version() -> int:
    """The schema version this code reads and writes."""
    return len(load_migrations())


def read_version(conn: duckdb.DuckDBPyConnection) -> int:
    """The file's schema version; 0 for a new, empty database."""
    (exists,) = _fetch_one(conn, "schema_version_exists")
    if not exists:
        return 0
    (version,) = _fetch_one(conn, "schema_version")
    return int(version)


def _fetch_one(conn: duckdb.DuckDBPyConnection, name: str) -> tuple[object, ...]:
    # fetchall, not fetchone: DuckDB 2 keeps a half-read result open on the connection.
    rows = conn.execute(query(name)).fetchall()
    if len(rows) != 1:
        raise StoreError(f"query {name} returned {len(rows)} rows, expected 1")
    return rows[0]


def check_not_too_new(path: Path, version: int) -> None:
    """Refuse a file written by a newer nightly_pipeline."""
    supported = latest_version()
    if version > supported:
        raise StoreSchemaTooNewError(path, file_version=version, supported_version=supported)


def migrate(conn: duckdb.DuckDBPyConnection, path: Path) -> list[int]:
    """Apply every missing migration in order on a writable connection; the versions applied."""
    current = read_version(conn)
    check_not_too_new(path, current)
    applied = []
    for migration in load_migrations()[current:]:
        conn.begin()
        try:
            conn.execute(migration.sql)
            conn.execute(
                query("record_schema_version"),
                {
                    "version": migration.version,
                    "applied_at": datetime.now(UTC).replace(tzinfo=None),
                },
            )
            conn.commit()
        except duckdb.Error as exc:
            conn.rollback()
            raise StoreError(
                f"migration {migration.version:04d}_{migration.name} failed on {path}: {exc}"
            ) from exc
        applied.append(migration.version)
    return applied


def ensure_schema(path: Path, policy: RetryPolicy) -> int:
    """Create or migrate the store at ``path`` to the latest version; return that version.

    The version is read on a read-only connection first, so that a file that is too new,
    or already current, is never opened for writing.
    """
    budget = policy.start()
    path.parent.mkdir(parents=True, exist_ok=True)
    with hold_file_lock(lock_path_for(path), path, exclusive=True, budget=budget):
        if path.exists():
            conn = connect(path, read_only=True, budget=budget)
            try:
                version = read_version(conn)
            finally:
                conn.close()
            check_not_too_new(path, version)
            if version == latest_version():
                return version
        conn = connect(path, read_only=False, budget=budget)
        try:
            migrate(conn, path)
            return read_version(conn)
        finally:
            conn.close()
