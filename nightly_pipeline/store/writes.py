"""Writes: a whole test result (a chaos test's journal included) replaced in one
transaction, and the runs table.

Rows are built in Python before the transaction starts (so the file lock is held only for
the database work) and bulk-loaded with DuckDB's appender: an 1,800-second series of 20
metrics is 36,000 rows, which ``executemany`` would insert one statement at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from nightly_pipeline.store.errors import RunNotFoundError, StoreWriteError
from nightly_pipeline.store.queries import query
from nightly_pipeline.store.records import (
    RUN_STATUSES,
    ActivityRow,
    MetricRow,
    RunRecord,
    SeriesRow,
    TestResultRecord,
    ThresholdRow,
    canonical_tags,
    to_utc_naive,
)

METRIC_COLUMNS = ("night", "profile", "test", "metric", "tags", "value", "unit", "run_id")
SERIES_COLUMNS = (
    *("night", "profile", "test", "metric", "tags", "second"),
    *("count", "errors", "mean", "p50", "p95", "p99", "max", "value"),
)
THRESHOLD_COLUMNS = (
    *("night", "profile", "test", "metric", "tags", "expression", "scope", "passed"),
    *("observed", "window_start", "window_end", "severity", "not_measurable"),
)
ACTIVITY_COLUMNS = (
    *("night", "profile", "test", "run_id", "seq", "phase", "kind", "name", "status"),
    *("started_at", "ended_at", "duration_s", "output_json", "tolerance_met", "error"),
)
_DELETES = (
    *("delete_chaos_activities", "delete_chaos_experiment", "delete_threshold_results"),
    *("delete_series", "delete_metrics", "delete_test_results"),
)


class _TagCache:
    """Canonical JSON per tag set; series rows repeat a handful of tag sets thousands of times."""

    def __init__(self) -> None:
        self._seen: dict[tuple[tuple[str, str], ...], str] = {}

    def __call__(self, tags: Mapping[str, str]) -> str:
        if not tags:
            return "{}"
        key = tuple(tags.items())
        try:
            return self._seen[key]
        except KeyError:
            text = self._seen[key] = canonical_tags(tags)
            return text
        except TypeError:  # unhashable tag value: still storable, just not cacheable
            return canonical_tags(tags)


@dataclass(frozen=True, slots=True)
class PreparedResult:
    """A TestResultRecord as the parameters and row tuples the database takes."""

    key: dict[str, Any]
    result: dict[str, Any]
    metrics: list[tuple[Any, ...]]
    series: list[tuple[Any, ...]]
    thresholds: list[tuple[Any, ...]]
    experiment: dict[str, Any] | None
    activities: list[tuple[Any, ...]]


def prepare(record: TestResultRecord) -> PreparedResult:
    """Turn a record into rows; raises StoreWriteError for duplicate series seconds."""
    key = {"night": record.night, "profile": record.profile, "test": record.test}
    head = (record.night, record.profile, record.test)
    tags = _TagCache()
    result = {
        **key,
        "run_id": record.run_id,
        "status": record.status,
        "detail": record.detail,
        "started_at": to_utc_naive(record.started_at),
        "finished_at": to_utc_naive(record.finished_at),
        "duration_s": record.duration_s,
        "generator_bound": record.generator_bound,
        "load_started_at": _naive(record.load_started_at),
    }
    return PreparedResult(
        key=key,
        result=result,
        metrics=[_metric_row(head, m, tags, record.run_id) for m in record.metrics],
        series=_series_rows(record, head, tags),
        thresholds=[_threshold_row(head, t, tags) for t in record.thresholds],
        experiment=_experiment_params(key, record),
        activities=[_activity_row(head, a, record.run_id) for a in record.activities],
    )


def _naive(moment: datetime | None) -> datetime | None:
    return None if moment is None else to_utc_naive(moment)


def _experiment_params(key: dict[str, Any], record: TestResultRecord) -> dict[str, Any] | None:
    e = record.experiment
    if e is None:
        return None
    return {
        **key,
        "run_id": record.run_id,
        "title": e.title,
        "status": e.status,
        "deviated": e.deviated,
        "started_at": _naive(e.started_at),
        "ended_at": _naive(e.ended_at),
        "error": e.error,
    }


def _activity_row(head: tuple[Any, ...], a: ActivityRow, run_id: str) -> tuple[Any, ...]:
    return (
        *(*head, run_id, a.seq, a.phase, a.kind, a.name, a.status),
        *(_naive(a.started_at), _naive(a.ended_at), a.duration_s, a.output_json),
        *(a.tolerance_met, a.error),
    )


def _metric_row(
    head: tuple[Any, ...], m: MetricRow, tags: _TagCache, run_id: str
) -> tuple[Any, ...]:
    return (*head, m.metric, tags(m.tags), m.value, m.unit, run_id)


def _series_rows(
    record: TestResultRecord, head: tuple[Any, ...], tags: _TagCache
) -> list[tuple[Any, ...]]:
    rows = []
    seen: set[tuple[str, str, int]] = set()
    for s in record.series:
        row = _series_row(head, s, tags)
        identity = (s.metric, row[4], s.second)
        if identity in seen:
            raise StoreWriteError(
                f"{record.test} {record.night} {record.profile}: series has two rows for "
                f"metric {s.metric!r} tags {row[4]} second {s.second}; nothing was written"
            )
        seen.add(identity)
        rows.append(row)
    return rows


def _series_row(head: tuple[Any, ...], s: SeriesRow, tags: _TagCache) -> tuple[Any, ...]:
    return (
        *(*head, s.metric, tags(s.tags), s.second),
        *(s.count, s.errors, s.mean, s.p50, s.p95, s.p99, s.max, s.value),
    )


def _threshold_row(head: tuple[Any, ...], t: ThresholdRow, tags: _TagCache) -> tuple[Any, ...]:
    return (
        *(*head, t.metric, tags(t.tags), t.expression, t.scope, t.passed),
        *(t.observed, t.window_start, t.window_end, t.severity, t.not_measurable),
    )


def _append(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
) -> None:
    with conn.appender(table, columns=list(columns)) as appender:
        appender.append_rows(rows)


def replace_test_result(
    conn: duckdb.DuckDBPyConnection, path: Path, prepared: PreparedResult
) -> None:
    """Delete then insert everything of one (night, profile, test) in one transaction."""
    conn.begin()
    try:
        for name in _DELETES:
            conn.execute(query(name), prepared.key)
        conn.execute(query("insert_test_result"), prepared.result)
        _append(conn, "metrics", METRIC_COLUMNS, prepared.metrics)
        _append(conn, "series", SERIES_COLUMNS, prepared.series)
        _append(conn, "threshold_results", THRESHOLD_COLUMNS, prepared.thresholds)
        if prepared.experiment is not None:
            conn.execute(query("insert_chaos_experiment"), prepared.experiment)
        _append(conn, "chaos_activities", ACTIVITY_COLUMNS, prepared.activities)
        conn.commit()
    except duckdb.Error as exc:
        conn.rollback()
        k = prepared.key
        raise StoreWriteError(
            f"writing {k['test']} for {k['night']} ({k['profile']}) to {path} failed and was "
            f"rolled back; the previous result is intact: {exc}"
        ) from exc
    except BaseException:
        conn.rollback()
        raise


def upsert_run(conn: duckdb.DuckDBPyConnection, run: RunRecord) -> None:
    """Insert the run as 'running', or reset it if the same run_id is written again."""
    conn.execute(
        query("upsert_run"),
        {
            "run_id": run.run_id,
            "night": run.night,
            "profile": run.profile,
            "target": run.target,
            "started_at": to_utc_naive(run.started_at),
            "versions": run.versions_json(),
            "dagster_run_id": run.dagster_run_id,
        },
    )


def finish_run(
    conn: duckdb.DuckDBPyConnection, run_id: str, status: str, finished_at: datetime
) -> None:
    """Record how a run ended; RunNotFoundError if it was never written."""
    final = tuple(s for s in RUN_STATUSES if s != "running")
    if status not in final:
        raise ValueError(f"finish_run status must be one of {final}, got {status!r}")
    updated = conn.execute(
        query("finish_run"),
        {"run_id": run_id, "status": status, "finished_at": to_utc_naive(finished_at)},
    ).fetchall()
    if not updated:
        raise RunNotFoundError(f"no run {run_id!r} in the metric store; call write_run first")
