"""Compaction: per-second series older than the newest N nights become per-minute rows,
then the file is rewritten so that it really shrinks (DESIGN §12).

Only ``series`` is touched: summary metrics, threshold results, verdicts, baselines, runs
and chaos journals are kept forever, row for row. A per-minute row keeps what the report
charts from a night (queries.sql ``downsample_series_to_minutes`` says how each column is
merged); the verdicts read summary metrics only, so they do not change.

Why a rewrite: DuckDB frees whole blocks at a CHECKPOINT and reuses them for later writes,
but never truncates its file, and VACUUM does not either (measured on duckdb 2.0.1:
bench/storage_growth.py prints both sizes). ``COPY FROM DATABASE`` into a sibling file,
a row count check of every table, then an atomic rename, does shrink it.

Everything runs under the store's exclusive file lock: a writer that arrives meanwhile
waits (within its retry budget) and then writes into the compacted file, so no row
written by anyone is lost.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb

from nightly_pipeline.store import migrations
from nightly_pipeline.store.connection import connect
from nightly_pipeline.store.errors import StoreError
from nightly_pipeline.store.locking import hold_file_lock
from nightly_pipeline.store.paths import lock_path_for
from nightly_pipeline.store.queries import query
from nightly_pipeline.store.retry import Budget, RetryPolicy

DEFAULT_KEEP_NIGHTS = 30
"""Nights whose series stay per-second (DESIGN §12)."""

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class CompactionResult:
    """What one compaction did; sizes are the database file plus its WAL, in bytes."""

    path: Path
    keep_nights: int
    cutoff: date | None
    """Series of nights before it are per-minute; None while fewer nights are stored."""
    nights: tuple[date, ...]
    """The nights this compaction downsampled (none when already compact)."""
    series_rows_before: int
    series_rows_after: int
    bytes_before: int
    bytes_after: int
    rewritten: bool
    free_bytes: int
    """Free space inside the file after the downsampling, before any rewrite."""

    def summary(self) -> str:
        """A few lines for a person: what changed, rows and bytes before and after."""
        if self.cutoff is None:
            kept = f"fewer than {self.keep_nights} nights stored: every series stays per-second"
        elif self.nights:
            kept = (
                f"{len(self.nights)} night(s) before {self.cutoff} downsampled to per-minute "
                f"({self.nights[0]} .. {self.nights[-1]}); the newest {self.keep_nights} "
                "nights stay per-second"
            )
        else:
            kept = f"series before {self.cutoff} were already per-minute"
        file_line = (
            "file rewritten"
            if self.rewritten
            else f"file not rewritten ({_mb(self.free_bytes)} free)"
        )
        return "\n".join(
            [
                f"{self.path}: {kept}",
                f"  series rows: {self.series_rows_before:,} -> {self.series_rows_after:,}",
                f"  file bytes:  {self.bytes_before:,} -> {self.bytes_after:,}"
                f" ({_mb(self.bytes_before)} -> {_mb(self.bytes_after)}; {file_line})",
            ]
        )


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def file_bytes(path: Path) -> int:
    """The database file and its write-ahead log, as they take room on disk."""
    wal = _wal_of(path)
    return sum(p.stat().st_size for p in (path, wal) if p.exists())


def _wal_of(path: Path) -> Path:
    return path.with_name(path.name + ".wal")


def compact(
    path: Path,
    *,
    keep_nights: int = DEFAULT_KEEP_NIGHTS,
    rewrite_min_free: float | None = 0.0,
    policy: RetryPolicy | None = None,
    progress: Progress = lambda _: None,
) -> CompactionResult:
    """Downsample the series of nights older than the newest ``keep_nights`` nights, then
    rewrite the file when that deleted rows or at least ``rewrite_min_free`` of the file is
    free space (0.0: always, which also drops the rows an earlier compaction without a
    rewrite deleted; None: never). Idempotent: a second run finds nothing to downsample.

    Raises StoreError (the file left whole: either as before or compacted) on failure.
    """
    if keep_nights < 1:
        raise ValueError(f"keep_nights must be >= 1, got {keep_nights}")
    if rewrite_min_free is not None and not 0.0 <= rewrite_min_free <= 1.0:
        raise ValueError(f"rewrite_min_free must be in [0, 1] or None, got {rewrite_min_free}")
    budget = (policy or RetryPolicy()).start()
    if not path.exists():
        raise StoreError(f"no metric store at {path}: nothing to compact (check --store)")
    with hold_file_lock(lock_path_for(path), path, exclusive=True, budget=budget):
        bytes_before = file_bytes(path)
        conn = connect(path, read_only=False, budget=budget)
        try:
            _check_version(conn, path)
            rows_before = _count(conn, "series_row_count")
            cutoff, nights = _downsample(conn, path, keep_nights, progress)
            conn.execute("CHECKPOINT")
            rows_after = _count(conn, "series_row_count")
            free_bytes, total_bytes = _free_space(conn)
        finally:
            conn.close()
        # Deleted rows free no block while their row group holds live rows (measured: a
        # smoke store grew 4.73 -> 4.99 MB with 0 bytes free after downsampling 5 of 6
        # nights), so a compaction that deleted rows always rewrites.
        rewritten = rewrite_min_free is not None and (
            bool(nights) or free_bytes >= rewrite_min_free * total_bytes
        )
        if rewritten:
            dropped = "the deleted per-second rows and " if nights else ""
            progress(f"rewriting {path} without {dropped}its free space ({_mb(free_bytes)})")
            _rewrite(path, budget)
        return CompactionResult(
            path=path,
            keep_nights=keep_nights,
            cutoff=cutoff,
            nights=nights,
            series_rows_before=rows_before,
            series_rows_after=rows_after,
            bytes_before=bytes_before,
            bytes_after=file_bytes(path),
            rewritten=rewritten,
            free_bytes=free_bytes,
        )


def _check_version(conn: duckdb.DuckDBPyConnection, path: Path) -> None:
    version = migrations.read_version(conn)
    if version != migrations.latest_version():
        migrations.check_not_too_new(path, version)
        raise StoreError(
            f"metric store {path} is at schema version {version}, expected "
            f"{migrations.latest_version()}; open it with MetricStore (any nightly command) "
            "to migrate it, then compact"
        )


def _count(conn: duckdb.DuckDBPyConnection, name: str) -> int:
    return int(conn.execute(query(name)).fetchall()[0][0])


def _downsample(
    conn: duckdb.DuckDBPyConnection, path: Path, keep_nights: int, progress: Progress
) -> tuple[date | None, tuple[date, ...]]:
    """One transaction: per-second rows before the cutoff replaced by per-minute rows."""
    rows = conn.execute(query("compaction_cutoff"), {"keep": keep_nights}).fetchall()
    if not rows:
        return None, ()
    cutoff: date = rows[0][0]
    found = conn.execute(query("per_second_nights_before"), {"cutoff": cutoff}).fetchall()
    nights = tuple(night for (night,) in found)
    if not nights:
        return cutoff, ()
    progress(
        f"downsampling the series of {len(nights)} night(s) before {cutoff} "
        f"({nights[0]} .. {nights[-1]}) to per-minute rows"
    )
    conn.begin()
    try:
        conn.execute(query("downsample_series_to_minutes"), {"cutoff": cutoff})
        conn.execute(query("delete_per_second_series_before"), {"cutoff": cutoff})
        conn.execute(query("insert_compacted_series"))
        conn.execute(query("drop_compacted_series"))
        conn.commit()
    except BaseException as exc:
        conn.rollback()
        if isinstance(exc, duckdb.Error):
            raise StoreError(
                f"compacting the series of {path} failed and was rolled back; "
                f"nothing was changed: {exc}"
            ) from exc
        raise
    return cutoff, nights


def _free_space(conn: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    """(free, total) bytes of the file's blocks, from ``PRAGMA database_size``."""
    cursor = conn.execute("PRAGMA database_size")
    names = [col[0] for col in cursor.description]
    row = dict(zip(names, cursor.fetchall()[0], strict=True))
    block = int(row["block_size"])
    return int(row["free_blocks"]) * block, int(row["total_blocks"]) * block


def _row_counts(conn: duckdb.DuckDBPyConnection) -> dict[str, int]:
    tables = [name for (name,) in conn.execute(query("user_tables")).fetchall()]
    return {t: int(conn.execute(f'SELECT count(*) FROM "{t}"').fetchall()[0][0]) for t in tables}


def _remove(*paths: Path) -> None:
    for p in paths:
        p.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rewrite(path: Path, budget: Budget) -> None:
    """Copy the database into a sibling file, check it, and rename it over ``path``.

    The caller holds the exclusive file lock. On any failure the sibling is removed and
    ``path`` is left as it was.
    """
    tmp = path.with_name(f"{path.name}.compact-{os.getpid()}.tmp")
    _remove(tmp, _wal_of(tmp))
    try:
        conn = connect(path, read_only=False, budget=budget)
        try:
            source = conn.execute("SELECT current_database()").fetchall()[0][0]
            quoted = str(tmp).replace("'", "''")
            conn.execute(f"ATTACH '{quoted}' AS compacted")
            conn.execute(f'COPY FROM DATABASE "{source}" TO compacted')
            conn.execute("DETACH compacted")
            expected = _row_counts(conn)
        finally:
            conn.close()
        if _wal_of(path).exists() or _wal_of(tmp).exists():
            raise StoreError("a write-ahead log was left behind after closing")
        with duckdb.connect(str(tmp), read_only=True) as copy:
            copied = _row_counts(copy)
        if copied != expected:
            raise StoreError(f"the copy's row counts {copied} differ from {expected}")
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent)
    except duckdb.Error as exc:
        raise StoreError(
            f"rewriting {path} failed; the file is intact (its series are compacted, the "
            f"free space stays): {exc}"
        ) from exc
    except StoreError as exc:
        raise StoreError(
            f"rewriting {path} was abandoned; the file is intact (its series are "
            f"compacted, the free space stays): {exc}"
        ) from exc
    finally:
        _remove(tmp, _wal_of(tmp))
