"""Reads: named queries whose results come back as polars DataFrames.

Rows are fetched as Python tuples and typed from the cursor's description. The Arrow
route (``polars.DataFrame(relation)``) would be shorter, but with duckdb 2.0 it leaks
nanobind objects and every process that used it prints a leak report at exit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import duckdb
import polars as pl

from nightly_pipeline.store.queries import query

_POLARS_TYPES: dict[str, pl.DataType] = {
    "BOOLEAN": pl.Boolean(),
    "TINYINT": pl.Int8(),
    "SMALLINT": pl.Int16(),
    "INTEGER": pl.Int32(),
    "BIGINT": pl.Int64(),
    "HUGEINT": pl.Int128(),
    "UTINYINT": pl.UInt8(),
    "USMALLINT": pl.UInt16(),
    "UINTEGER": pl.UInt32(),
    "UBIGINT": pl.UInt64(),
    "FLOAT": pl.Float32(),
    "DOUBLE": pl.Float64(),
    "VARCHAR": pl.String(),
    "JSON": pl.String(),
    "DATE": pl.Date(),
    "TIMESTAMP": pl.Datetime("us"),
}


def polars_type(duckdb_type: str) -> pl.DataType | None:
    """The polars dtype of a DuckDB column type (None: let polars infer it)."""
    if duckdb_type.startswith("DECIMAL"):
        return pl.Float64()
    return _POLARS_TYPES.get(duckdb_type)


def frame(
    conn: duckdb.DuckDBPyConnection, name: str, params: Mapping[str, Any] | None = None
) -> pl.DataFrame:
    """Run the named query and return its rows as a DataFrame."""
    cursor = conn.execute(query(name), dict(params or {}))
    rows = cursor.fetchall()
    schema = {col[0]: polars_type(str(col[1])) for col in cursor.description}
    return pl.DataFrame(rows, schema=schema, orient="row")
