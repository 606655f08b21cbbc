"""Schema versions: creation, forward migration, refusing newer files, bad files."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path

import duckdb
import pytest

from nightly_pipeline.store import (
    MetricStore,
    StoreCorruptError,
    StoreSchemaTooNewError,
    TestResultRecord,
    latest_version,
)
from nightly_pipeline.store.migrations import load_migrations, parse_migrations
from tests.store.old_versions import apply_first
from tests.store.test_store_chaos import chaos_result

MakeResult = Callable[..., TestResultRecord]
NIGHT = date(2024, 3, 1)


def versions_recorded(path: Path) -> list[int]:
    with duckdb.connect(str(path), read_only=True) as conn:
        return [
            v for (v,) in conn.execute("SELECT version FROM schema_version ORDER BY 1").fetchall()
        ]


def file_state(directory: Path) -> dict[str, tuple[int, str]]:
    """mtime and content hash of every file in ``directory``, except our lock file."""
    return {
        p.name: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(directory.iterdir())
        if not p.name.endswith(".lock")
    }


def test_at_least_two_real_migrations() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, latest_version() + 1))
    assert latest_version() >= 2
    assert migrations[0].name == "initial"


def test_new_store_creates_parent_and_records_every_version(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "metrics.duckdb"
    store = MetricStore(path)
    assert store.schema_version() == latest_version()
    assert versions_recorded(path) == list(range(1, latest_version() + 1))
    MetricStore(path)  # reopening a current file applies nothing
    assert versions_recorded(path) == list(range(1, latest_version() + 1))


def test_migrates_a_version_1_file_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "metrics.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute(load_migrations()[0].sql)
        conn.execute("INSERT INTO schema_version VALUES (1, TIMESTAMP '2024-01-01 00:00:00')")
        conn.execute(
            "INSERT INTO test_results (night, profile, test, run_id, status, detail, "
            "started_at, finished_at, duration_s) VALUES (DATE '2024-03-01', 'ci', 'a', 'r0', "
            "'failed', 'p95 too high', TIMESTAMP '2024-03-01 02:10:00', "
            "TIMESTAMP '2024-03-01 02:11:00', 60.0)"
        )
        conn.execute(
            "INSERT INTO metrics VALUES (DATE '2024-03-01', 'ci', 'a', 'p95', '{}', 120.5, "
            "'ms', 'r0')"
        )
        columns = [r[0] for r in conn.execute("DESCRIBE test_results").fetchall()]
        assert "generator_bound" not in columns

    store = MetricStore(path)

    assert versions_recorded(path) == list(range(1, latest_version() + 1))
    rows = store.recent_results().select("test", "status", "detail", "generator_bound").rows()
    assert rows == [("a", "failed", "p95 too high", False)]
    assert store.metrics().select("metric", "value").rows() == [("p95", 120.5)]


def test_migrates_a_version_3_file_to_the_chaos_journal(
    tmp_path: Path, make_result: MakeResult
) -> None:
    path = tmp_path / "metrics.duckdb"
    with duckdb.connect(str(path)) as conn:
        apply_first(conn, 3)
        conn.execute(
            "INSERT INTO test_results (night, profile, test, run_id, status, detail, "
            "started_at, finished_at, duration_s, generator_bound) VALUES (DATE '2024-03-01', "
            "'ci', '08_consumer_resilience', 'r0', 'passed', '', "
            "TIMESTAMP '2024-03-01 02:10:00', TIMESTAMP '2024-03-01 02:11:00', 60.0, FALSE)"
        )
        tables = {t for (t,) in conn.execute("SHOW TABLES").fetchall()}
        assert "chaos_activities" not in tables

    store = MetricStore(path)

    assert versions_recorded(path) == list(range(1, latest_version() + 1))
    assert store.recent_results().select("test", "status").rows() == [
        ("08_consumer_resilience", "passed")
    ]
    assert store.chaos_activities(NIGHT).height == 0
    with duckdb.connect(str(path), read_only=True) as conn:
        (load_started,) = conn.execute("SELECT load_started_at FROM test_results").fetchone()
    assert load_started is None  # not recorded before 0004

    # The migrated file takes a chaos result, replacing the old row of that test.
    store.write_test_result(chaos_result(make_result))
    assert store.chaos_experiments(NIGHT)["load_started_at"].null_count() == 0
    assert store.chaos_activities(NIGHT).height == 4


def test_refuses_a_newer_file_without_touching_it(
    store: MetricStore, store_path: Path, make_result: MakeResult
) -> None:
    store.write_test_result(make_result(NIGHT, "a"))
    newer = latest_version() + 1
    with duckdb.connect(str(store_path)) as conn:
        conn.execute("INSERT INTO schema_version VALUES (?, ?)", [newer, datetime(2030, 1, 1)])
    before = file_state(store_path.parent)

    with pytest.raises(StoreSchemaTooNewError) as excinfo:
        MetricStore(store_path)
    message = str(excinfo.value)
    assert f"schema version {newer}" in message
    assert f"supports up to version {latest_version()}" in message
    assert "upgrade nightly_pipeline" in message
    assert "NIGHTLY_HOME" in message
    assert str(store_path) in message
    assert excinfo.value.file_version == newer

    # An already open store refuses too, on its next write, and still changes nothing.
    with pytest.raises(StoreSchemaTooNewError):
        store.write_test_result(make_result(NIGHT, "b"))
    with pytest.raises(StoreSchemaTooNewError):
        store.recent_results()
    assert file_state(store_path.parent) == before


@pytest.mark.parametrize("content", [b"", b"definitely not a database\n" * 200])
def test_a_file_that_is_not_duckdb_is_reported_by_path(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "metrics.duckdb"
    path.write_bytes(content)
    with pytest.raises(StoreCorruptError, match="not a readable DuckDB metric store") as excinfo:
        MetricStore(path)
    assert str(path) in str(excinfo.value)
    assert path.read_bytes() == content


@pytest.mark.parametrize(
    ("files", "error"),
    [
        ({"0001_a.sql": "", "0003_c.sql": ""}, "without gaps"),
        ({"0002_b.sql": ""}, "without gaps"),
        ({"1_a.sql": ""}, "not named NNNN_name.sql"),
    ],
)
def test_parse_migrations_rejects_bad_sets(files: dict[str, str], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_migrations(files)


def test_parse_migrations_orders_by_number() -> None:
    parsed = parse_migrations({"0002_b.sql": "B", "0001_a.sql": "A"})
    assert [(m.version, m.name, m.sql) for m in parsed] == [(1, "a", "A"), (2, "b", "B")]


def test_migrates_a_version_4_file_whose_series_are_per_second(tmp_path: Path) -> None:
    path = tmp_path / "metrics.duckdb"
    with duckdb.connect(str(path)) as conn:
        apply_first(conn, 4)
        conn.execute(
            "INSERT INTO series (night, profile, test, metric, tags, second, count) "
            "VALUES (DATE '2024-03-01', 'ci', 'a', 'http_reqs', '{}', 7, 10)"
        )

    store = MetricStore(path)

    rows = store.series(NIGHT, "a", "ci").select("second", "resolution_s", "seconds_present")
    assert rows.rows() == [(7, 1, 1)]  # rows from before 0005 are per-second


def test_migrates_a_version_6_file_whose_unmeasurable_checks_were_stored_passed(
    tmp_path: Path,
) -> None:
    """Before 0007 a check the target could not support was stored passed with severity
    ``not_measurable``: after, ``passed`` is NULL (not judged) and ``not_measurable``
    says so; a judged row is untouched."""
    path = tmp_path / "metrics.duckdb"
    with duckdb.connect(str(path)) as conn:
        apply_first(conn, 6)
        conn.execute(
            "INSERT INTO threshold_results (night, profile, test, metric, expression, scope,"
            " passed, observed, severity) VALUES"
            " (DATE '2024-03-01', 'ci', 'a', 'process_rss_growth_pct', 'max<10', 'run', TRUE,"
            " NULL, 'not_measurable'),"
            " (DATE '2024-03-01', 'ci', 'a', 'http_req_duration', 'p(95)<100', 'run', FALSE,"
            " 120.0, 'error')"
        )

    store = MetricStore(path)

    rows = store.threshold_results(NIGHT).select("metric", "passed", "severity", "not_measurable")
    by_metric = {r["metric"]: r for r in rows.iter_rows(named=True)}
    skipped = by_metric["process_rss_growth_pct"]
    assert skipped["passed"] is None and skipped["severity"] == "not_measurable"
    assert skipped["not_measurable"].startswith("not measurable on this target")
    judged = by_metric["http_req_duration"]
    assert (judged["passed"], judged["severity"], judged["not_measurable"]) == (
        False,
        "error",
        None,
    )
