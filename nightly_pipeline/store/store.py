"""MetricStore: the one object the rest of the pipeline uses to read and write history.

It holds a path, not a connection: every call opens the file under the store's file lock,
does one transaction or query, and closes it, so several processes (Dagster's run workers,
the CLI, a report job) can share one file. Opening the store brings the file to the
latest schema, or refuses a file newer than this code without touching it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import duckdb
import polars as pl

from nightly_pipeline.store import compaction, history, migrations, writes
from nightly_pipeline.store.connection import session
from nightly_pipeline.store.errors import StoreError
from nightly_pipeline.store.reads import frame
from nightly_pipeline.store.records import RunRecord, RunStatus, TestResultRecord
from nightly_pipeline.store.retry import RetryPolicy


class MetricStore:
    """The DuckDB history of nightly runs at ``path`` (by default ``Home.store``)."""

    def __init__(self, path: Path | str, *, retry: RetryPolicy | None = None) -> None:
        self._path = Path(path)
        self._retry = retry or RetryPolicy()
        migrations.ensure_schema(self._path, self._retry)

    @property
    def path(self) -> Path:
        return self._path

    def __repr__(self) -> str:
        return f"MetricStore({str(self._path)!r})"

    @contextlib.contextmanager
    def _open(self, *, write: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to a file at this code's schema version (checked on every open,
        since another process may have migrated the file since we opened the store)."""
        with session(self._path, write=write, policy=self._retry) as conn:
            version = migrations.read_version(conn)
            if version != migrations.latest_version():
                migrations.check_not_too_new(self._path, version)
                if not write:
                    raise StoreError(
                        f"metric store {self._path} is at schema version {version}, expected "
                        f"{migrations.latest_version()}; open a new MetricStore to migrate it"
                    )
                migrations.migrate(conn, self._path)
            yield conn

    # -- writes ------------------------------------------------------------------------

    def write_run(self, run: RunRecord) -> None:
        """Record a run as started; writing the same run_id again resets it to 'running'."""
        with self._open(write=True) as conn:
            writes.upsert_run(conn, run)

    def finish_run(self, run_id: str, status: RunStatus, finished_at: datetime) -> None:
        """Record how a run ended ('succeeded', 'failed', 'canceled', or 'crashed': its
        process died and a later run reaped it)."""
        with self._open(write=True) as conn:
            writes.finish_run(conn, run_id, status, finished_at)

    def write_test_result(self, result: TestResultRecord) -> None:
        """Replace everything stored for ``result.key`` with ``result``, atomically.

        Raises StoreWriteError (previous result intact) if the database rejects a row.
        """
        prepared = writes.prepare(result)
        with self._open(write=True) as conn:
            writes.replace_test_result(conn, self._path, prepared)

    def compact(
        self,
        keep_nights: int = compaction.DEFAULT_KEEP_NIGHTS,
        *,
        rewrite_min_free: float | None = 0.0,
        progress: compaction.Progress = lambda _: None,
    ) -> compaction.CompactionResult:
        """Per-second series of nights older than the newest ``keep_nights`` become
        per-minute rows; everything else is kept. Rewrites the file to shrink it when that
        deleted rows or at least ``rewrite_min_free`` of it is free (0.0: always; None:
        never). See store/compaction.py."""
        return compaction.compact(
            self._path,
            keep_nights=keep_nights,
            rewrite_min_free=rewrite_min_free,
            policy=self._retry,
            progress=progress,
        )

    # -- reads -------------------------------------------------------------------------

    def schema_version(self) -> int:
        """The file's schema version (equal to the latest this code knows)."""
        with self._open(write=False) as conn:
            return migrations.read_version(conn)

    def nights(self, profile: str | None = None) -> pl.DataFrame:
        """Nights with results, newest first: night, tests, passed, failed, errored."""
        with self._open(write=False) as conn:
            return frame(conn, "nights", {"profile": profile})

    def recent_results(self, limit_nights: int = 7, profile: str | None = None) -> pl.DataFrame:
        """Per-test verdicts of the last ``limit_nights`` nights with results, newest first.

        Columns: night, profile, test, status, duration_s, generator_bound,
        failed_thresholds, detail, run_id.
        """
        if limit_nights < 1:
            raise ValueError(f"limit_nights must be >= 1, got {limit_nights}")
        with self._open(write=False) as conn:
            return frame(conn, "recent_results", {"limit_nights": limit_nights, "profile": profile})

    def metrics(
        self,
        test: str | None = None,
        metric: str | None = None,
        profile: str | None = None,
        since: date | None = None,
    ) -> pl.DataFrame:
        """Summary metrics in long format, oldest night first; None filters match all.

        Columns: night, profile, test, metric, tags, value, unit, run_id.
        """
        params = {"test": test, "metric": metric, "profile": profile, "since": since}
        with self._open(write=False) as conn:
            return frame(conn, "metrics", params)

    def series(
        self, night: date, test: str, profile: str, metric: str | None = None
    ) -> pl.DataFrame:
        """Series rows of one test on one night, ordered by metric, tags, second: per-second
        (``resolution_s`` 1), or per-minute once compacted (``resolution_s`` 60)."""
        params = {"night": night, "test": test, "profile": profile, "metric": metric}
        with self._open(write=False) as conn:
            return frame(conn, "series", params)

    def threshold_results(
        self, night: date, profile: str | None = None, test: str | None = None
    ) -> pl.DataFrame:
        """Threshold verdicts of one night (run-wide and per window)."""
        params = {"night": night, "profile": profile, "test": test}
        with self._open(write=False) as conn:
            return frame(conn, "threshold_results", params)

    def chaos_experiments(
        self, night: date, profile: str | None = None, test: str | None = None
    ) -> pl.DataFrame:
        """The chaos experiments of one night, one row per chaos test result.

        Columns: night, profile, test, run_id, title, status, deviated, started_at,
        ended_at, error, test_started_at, load_started_at (the wall time of the test's
        series second 0, null when not recorded); times naive UTC.
        """
        params = {"night": night, "profile": profile, "test": test}
        with self._open(write=False) as conn:
            return frame(conn, "chaos_experiments", params)

    def chaos_activities(
        self, night: date, profile: str | None = None, test: str | None = None
    ) -> pl.DataFrame:
        """Every activity of the night's chaos journals, in journal order per test.

        Columns: night, profile, test, run_id, seq, phase, kind, name, status, started_at,
        ended_at, duration_s, output_json, tolerance_met, error; times naive UTC.
        """
        params = {"night": night, "profile": profile, "test": test}
        with self._open(write=False) as conn:
            return frame(conn, "chaos_activities", params)

    def runs(self, night: date | None = None) -> pl.DataFrame:
        """Runs, newest first; ``versions`` is JSON text."""
        with self._open(write=False) as conn:
            return frame(conn, "runs", {"night": night})

    # -- history analysis --------------------------------------------------------------

    def metric_history(
        self, profile: str | None = None, since: date | None = None, until: date | None = None
    ) -> pl.DataFrame:
        """Every summary metric with its test's status that night (analysis/CONTRACT.md).

        Columns: night, profile, test, metric, tags, value, unit, status.
        """
        params = {"profile": profile, "since": since, "until": until}
        with self._open(write=False) as conn:
            return frame(conn, "metric_history", params)

    def write_verdicts(self, night: date, verdicts: pl.DataFrame) -> None:
        """Replace the regression verdicts evaluated on ``night``."""
        rows = history.verdict_rows(night, verdicts)
        with self._open(write=True) as conn:
            history.replace_night(
                conn,
                self._path,
                table="verdicts",
                columns=history.VERDICT_COLUMNS,
                delete="delete_verdicts",
                key={"night": night},
                rows=rows,
            )

    def verdicts(self, night: date | None = None) -> pl.DataFrame:
        """Verdicts of ``night`` (all nights when None), regressions first."""
        with self._open(write=False) as conn:
            return history.decode_verdicts(frame(conn, "verdicts", {"night": night}))

    def write_baselines(self, computed_for: date, baselines: pl.DataFrame) -> None:
        """Replace the baselines computed for ``computed_for``."""
        rows = history.baseline_rows(computed_for, baselines)
        with self._open(write=True) as conn:
            history.replace_night(
                conn,
                self._path,
                table="baselines",
                columns=history.BASELINE_COLUMNS,
                delete="delete_baselines",
                key={"computed_for": computed_for},
                rows=rows,
            )

    def baselines(self, profile: str | None = None) -> pl.DataFrame:
        """The most recently computed baselines."""
        with self._open(write=False) as conn:
            return frame(conn, "baselines", {"profile": profile})
