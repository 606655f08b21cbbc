"""Writes and reads of the history analysis: verdicts and baselines per night.

The frames follow analysis/CONTRACT.md; a night's verdicts (or baselines) are replaced
as a whole in one transaction, like a test result.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from nightly_pipeline.store.errors import StoreWriteError
from nightly_pipeline.store.queries import query

VERDICT_COLUMNS = (
    *("night", "profile", "test", "metric", "tags", "direction", "verdict"),
    *("first_bad_night", "magnitude", "confidence", "baseline_mean", "latest_value"),
    *("nights", "skipped_nights", "plan_rule_fired", "change_nights"),
)
BASELINE_COLUMNS = (
    *("computed_for", "profile", "test", "metric", "tags", "mean", "std", "low", "high"),
    *("n", "first_night", "last_night"),
)


def _missing(frame: pl.DataFrame, columns: tuple[str, ...], what: str) -> None:
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise StoreWriteError(f"{what} frame lacks columns {absent}; nothing was written")


def verdict_rows(night: date, verdicts: pl.DataFrame) -> list[tuple[Any, ...]]:
    _missing(verdicts, VERDICT_COLUMNS[1:], "verdicts")
    rows = []
    for row in verdicts.select(VERDICT_COLUMNS[1:]).iter_rows(named=True):
        nights = [d.isoformat() for d in (row["change_nights"] or [])]
        rows.append((night, *(row[c] for c in VERDICT_COLUMNS[1:-1]), json.dumps(nights)))
    return rows


def baseline_rows(computed_for: date, baselines: pl.DataFrame) -> list[tuple[Any, ...]]:
    _missing(baselines, BASELINE_COLUMNS[1:], "baselines")
    return [(computed_for, *row) for row in baselines.select(BASELINE_COLUMNS[1:]).iter_rows()]


def replace_night(
    conn: duckdb.DuckDBPyConnection,
    path: Path,
    *,
    table: str,
    columns: tuple[str, ...],
    delete: str,
    key: dict[str, Any],
    rows: list[tuple[Any, ...]],
) -> None:
    """Delete one night's rows of ``table`` and append ``rows``, in one transaction."""
    conn.begin()
    try:
        conn.execute(query(delete), key)
        with conn.appender(table, columns=list(columns)) as appender:
            appender.append_rows(rows)
        conn.commit()
    except duckdb.Error as exc:
        conn.rollback()
        raise StoreWriteError(
            f"writing {table} for {key} to {path} failed and was rolled back: {exc}"
        ) from exc
    except BaseException:
        conn.rollback()
        raise


def decode_verdicts(frame: pl.DataFrame) -> pl.DataFrame:
    """change_nights back from JSON text to a list of dates."""
    return frame.with_columns(
        pl.col("change_nights")
        .map_elements(
            lambda text: [date.fromisoformat(d) for d in json.loads(text)],
            return_dtype=pl.List(pl.Date),
        )
        .alias("change_nights")
    )
