"""Reads: named queries whose results come back as polars DataFrames.

Results cross from DuckDB to polars through the Arrow PyCapsule interface
(``polars.DataFrame(relation)``), which needs no pyarrow and keeps column types, also for
empty results.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import duckdb
import polars as pl

from nightly_pipeline.store.queries import query


def frame(
    conn: duckdb.DuckDBPyConnection, name: str, params: Mapping[str, Any] | None = None
) -> pl.DataFrame:
    """Run the named query and return its rows as a DataFrame."""
    return pl.DataFrame(conn.sql(query(name), params=dict(params or {})))
