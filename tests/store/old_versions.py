"""A store file as an older release left it: the first N migrations applied and
recorded, as that release's code did, for the migration tests to upgrade."""

from __future__ import annotations

from datetime import datetime

import duckdb

from nightly_pipeline.store.migrations import load_migrations


def apply_first(conn: duckdb.DuckDBPyConnection, versions: int) -> None:
    """Migrations 1..``versions`` applied to ``conn`` and recorded in ``schema_version``."""
    for version, migration in enumerate(load_migrations()[:versions], start=1):
        conn.execute(migration.sql)
        conn.execute("INSERT INTO schema_version VALUES (?, ?)", [version, datetime(2024, 1, 1)])
