"""The migration step format (``suite.migration.steps``) and the lock-wait accounting
(``suite.migration.locks.LockWaits``): pure, no database."""

from __future__ import annotations

import pytest

from nightly_pipeline.suite.migration import (
    Blocked,
    IndexProgress,
    LockWaits,
    MigrationFormatError,
    parse_migration,
    split_statements,
)


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT 1; SELECT 2;", ["SELECT 1", "SELECT 2"]),
        ("SELECT ';'; SELECT 2", ["SELECT ';'", "SELECT 2"]),
        ('SELECT 1 AS "a;b"', ['SELECT 1 AS "a;b"']),
        ("-- a comment; still\nSELECT 1;", ["-- a comment; still\nSELECT 1"]),
        ("/* x; y */ SELECT 1;", ["/* x; y */ SELECT 1"]),
        (
            "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql; SELECT 2",
            ["CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql", "SELECT 2"],
        ),
        ("DO $$ BEGIN PERFORM 1; END $$;", ["DO $$ BEGIN PERFORM 1; END $$"]),
        ("SELECT $1::uuid; ", ["SELECT $1::uuid"]),
        (";;\n-- only a comment\n;", []),
    ],
    ids=lambda v: repr(v)[:30],
)
def test_statements_split_at_semicolons_outside_quotes_and_comments(sql, expected) -> None:
    assert split_statements(sql) == expected


def test_a_file_reads_into_its_steps_settings_and_options() -> None:
    migration = parse_migration(
        "m",
        "-- migrate:settings lock_timeout=500ms retries=3 retry_pause_s=0.1\n"
        "-- migrate:step add\nALTER TABLE t ADD COLUMN c int;\n"
        "-- migrate:step fill batch=50 pause_s=0.02 from=0\nSELECT $1::text;\n"
        "-- migrate:step index transaction=false\n"
        "DROP INDEX CONCURRENTLY IF EXISTS i;\nCREATE INDEX CONCURRENTLY i ON t (c);\n",
    )
    assert (migration.lock_timeout, migration.retries, migration.retry_pause_s) == ("500ms", 3, 0.1)
    add, fill, index = migration.steps
    assert add.name == "add" and add.transaction and add.batch is None
    assert (fill.batch, fill.pause_s, fill.start_key) == (50, 0.02, "0")
    assert not index.transaction and index.concurrent and len(index.statements) == 2


def test_a_file_without_markers_is_one_step_with_no_lock_timeout() -> None:
    migration = parse_migration("plain", "CREATE INDEX i ON t (c);")
    assert migration.lock_timeout is None and migration.retries == 0
    assert [(s.name, s.statements) for s in migration.steps] == [
        ("migration", ("CREATE INDEX i ON t (c)",))
    ]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("-- migrate:step\nSELECT 1;", "needs a name"),
        ("-- migrate:step a\n", "no statement"),
        ("-- migrate:step a wat\nSELECT 1;", "not key=value"),
        ("-- migrate:step a colour=red\nSELECT 1;", "unknown option"),
        ("-- migrate:step a batch=0\nSELECT 1;", "batch >= 1"),
        ("-- migrate:step a batch=5\nSELECT 1; SELECT 2;", "one statement"),
        ("-- migrate:step a transaction=maybe\nSELECT 1;", "true or false"),
        ("SELECT 0;\n-- migrate:step a\nSELECT 1;", "before the first"),
        ("-- migrate:settings lock_timeout=soon\n-- migrate:step a\nSELECT 1;", "not a duration"),
        ("-- migrate:settings retries=1000\n-- migrate:step a\nSELECT 1;", "0..100"),
        ("-- migrate:frobnicate\nSELECT 1;", "unknown marker"),
    ],
)
def test_a_bad_file_is_refused_naming_the_problem(text, error) -> None:
    with pytest.raises(MigrationFormatError, match=error):
        parse_migration("bad", text)


def blocked(
    pid: int, wait_s: float, blocker: int, query: str = "INSERT", by: str = "DDL"
) -> Blocked:
    return Blocked(pid, "testbed-api", query, wait_s, blocker, by)


def test_lock_waits_count_the_load_blocked_and_name_the_holder_not_the_queue() -> None:
    waits = LockWaits(exclude_pids={99})
    waits.add(0.0, [], [])
    # 10 and 11 wait for the DDL (99); 11 also waits behind 10 in the queue
    waits.add(
        0.2,
        [
            blocked(10, 0.15, 99, by="CREATE INDEX i ON t (c)"),
            blocked(11, 0.1, 99, by="CREATE INDEX i ON t (c)"),
            blocked(11, 0.1, 10, by="INSERT"),
        ],
        [IndexProgress(99, "building index", 5, 10)],
    )
    waits.add(0.4, [blocked(10, 0.35, 99, by="CREATE INDEX i ON t (c)")], [])
    assert waits.samples == 3 and waits.max_blocked == 2
    assert waits.longest_wait_s == 0.35 and waits.longest is not None
    assert waits.blocking_statement() == "CREATE INDEX i ON t (c)"
    assert waits.blockers == {"CREATE INDEX i ON t (c)": 3}
    assert waits.phases == {"building index": pytest.approx(0.2)}
    assert "350 ms" in waits.describe() and "CREATE INDEX i ON t (c)" in waits.describe()


def test_the_migrations_own_waits_are_kept_apart_from_the_loads() -> None:
    waits = LockWaits(exclude_pids={99})
    waits.add(0.0, [blocked(99, 0.4, 10, query="CREATE INDEX CONCURRENTLY i", by="INSERT")], [])
    assert waits.max_blocked == 0 and waits.longest is None
    assert waits.migration_waited_s == 0.4
    assert "no session of the load was blocked" in waits.describe()
