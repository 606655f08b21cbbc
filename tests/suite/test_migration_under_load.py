"""Test 13 against the embedded platform (ci profile): the testbed's next migration under
load passes and is rolled back; the same change written unsafely (a plain CREATE INDEX,
no lock_timeout) fails the p95 check, naming the statement; a migration file that fails
stops the test with PostgreSQL's error and the statement, rolled back, nothing after it run."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import asyncpg
import pytest

from nightly_pipeline.suite.catalog import select_tests
from nightly_pipeline.suite.context import SuiteTest
from nightly_pipeline.suite.migration import MigrationFailed, MigrationSource
from nightly_pipeline.suite.profiles import PROFILES
from nightly_pipeline.suite.runner import run_suite_test
from nightly_pipeline.testbed.next_migration import (
    BREAKING,
    SAFE,
    UNSAFE,
    migrations_dir,
    next_migration,
)
from tests.processes import group_killed_on_exit, interrupt, processes_left
from tests.suite.platforms import (
    NIGHT,
    assert_blocking_passed,
    ci_platform,
    metric,
    run_ci,
    scenario_module,
)

MIGRATION = select_tests("13")[0]
MODULE = scenario_module("13")


def schema(dsn: str) -> tuple[list[tuple[str, str]], list[str], int]:
    """messages' columns and indexes, and how many rows it has."""

    async def read() -> tuple[list[tuple[str, str]], list[str], int]:
        conn = await asyncpg.connect(dsn)
        try:
            columns = await conn.fetch(
                "SELECT column_name, data_type FROM information_schema.columns"
                " WHERE table_name = 'messages' ORDER BY column_name"
            )
            indexes = await conn.fetch(
                "SELECT indexdef FROM pg_indexes WHERE tablename = 'messages' ORDER BY 1"
            )
            rows = await conn.fetchval("SELECT count(*) FROM messages")
            return [tuple(c) for c in columns], [i[0] for i in indexes], rows
        finally:
            await conn.close()

    return asyncio.run(read())


def no_migration_left() -> None:
    assert not [t for t in threading.enumerate() if t.name == "migration-under-load"]


@pytest.fixture(scope="module")
def platform(tmp_path_factory, system_dir):
    with ci_platform(tmp_path_factory, system_dir, "migration") as up:
        yield up


def test_the_next_migration_passes_under_load_after_undoing_a_crashed_runs_leftovers(
    platform, tmp_path
) -> None:
    """A run killed mid-migration left the column, an index and the prefilled rows'
    conversation, and earlier tests left messages of their own: this run rolls the
    leftovers back first and migrates a table of exactly its prefill; the migration
    passes under load (posts and reads, a batched backfill, the index phases seen) and is
    rolled back: the schema is the one before the crash, the prefilled rows are gone."""
    dsn = platform.datastores()["postgres"]
    columns, indexes, _ = schema(dsn)
    conversation = uuid.UUID(MODULE.PREFILL_CONVERSATION)

    async def crash_leftovers() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            owner = await conn.fetchval("SELECT id FROM users ORDER BY id LIMIT 1")
            await conn.execute(
                "INSERT INTO conversations (id, owner_id) VALUES ($1, $2)", conversation, owner
            )
            earlier = await conn.fetchval(
                "INSERT INTO conversations (id, owner_id) VALUES (gen_random_uuid(), $1)"
                " RETURNING id",
                owner,
            )
            await conn.execute(  # an earlier test's messages
                "INSERT INTO messages"
                " (id, conversation_id, sender_id, client_msg_id, seq, ciphertext, sha256)"
                " SELECT gen_random_uuid(), $1, $2, 'earlier-' || i, i, '\\x00', 'x'"
                " FROM generate_series(1, 5000) AS i",
                earlier,
                owner,
            )
            await conn.execute("ALTER TABLE messages ADD COLUMN size_bytes INTEGER DEFAULT 0")
            await conn.execute("CREATE INDEX messages_size_idx ON messages (size_bytes)")
        finally:
            await conn.close()

    asyncio.run(crash_leftovers())
    outcome = run_ci(MIGRATION, platform.target(), tmp_path)
    assert_blocking_passed(outcome)  # the p95 ratio and the errors; < 60 s is WARN
    assert metric(outcome, "http_reqs.count") > 100  # the load really ran
    mix: dict[str, float] = {}
    for m in outcome.record.metrics:
        if m.metric == "http_reqs.count" and "name" in m.tags:
            mix[m.tags["name"]] = mix.get(m.tags["name"], 0.0) + m.value
    assert mix.keys() == {"post_message", "read_messages"}, mix  # posts and reads
    assert mix["post_message"] > mix["read_messages"] > 0  # 60 % / 40 %
    assert metric(outcome, "migration_batches.count") >= 10  # a batched backfill
    assert metric(outcome, "lock_samples.count") > 5
    assert metric(outcome, "migration_duration_s.max") > 0  # it finished
    assert metric(outcome, "migration_table_rows.value") == MIGRATION.spec.knobs.prefill_rows
    phases = {m.metric for m in outcome.record.metrics if m.metric.startswith("create_index")}
    assert phases, "pg_stat_progress_create_index never seen"
    after_columns, after_indexes, _ = schema(dsn)
    assert (after_columns, after_indexes) == (columns, indexes)
    left = asyncio.run(sql(dsn, f"SELECT count(*) FROM conversations WHERE id = '{conversation}'"))
    assert left == 0
    no_migration_left()


def run_on_broken_migration(tmp_path_factory, system_dir, tmp_path, name: str):
    """Test 13 on a platform that ships the next migration ``name``: its outcome, and the
    schema of messages before and after the run (the rollback's evidence)."""
    overrides = {"next_migration": name}
    with ci_platform(tmp_path_factory, system_dir, name, overrides=overrides) as up:
        dsn = up.datastores()["postgres"]
        before = schema(dsn)
        outcome = run_ci(MIGRATION, up.target(), tmp_path)
        after = schema(dsn)
    return outcome, before, after


def test_an_unsafe_migration_fails_the_p95_check_and_names_the_statement(
    tmp_path_factory, system_dir, tmp_path
) -> None:
    outcome, before, after = run_on_broken_migration(tmp_path_factory, system_dir, tmp_path, UNSAFE)
    failed = {c.check.name: c for c in outcome.checks if not c.passed}
    assert "p95_during_migration_under_2x" in failed, outcome.record.detail
    assert outcome.blocking_failed
    detail = failed["p95_during_migration_under_2x"].detail
    assert "ALTER TABLE messages" in detail, detail
    assert metric(outcome, "lock_blocked_sessions.value") > 0
    assert metric(outcome, "lock_wait_longest_ms.value") > 0
    assert before[:2] == after[:2]
    no_migration_left()


async def sql(dsn: str, query: str) -> object:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


def migration_sessions(dsn: str) -> int:
    """Sessions other than this one still running a statement on size_bytes."""
    return asyncio.run(
        sql(
            dsn,
            "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
            " AND state = 'active' AND query LIKE '%size_bytes%'",
        )
    )


def test_a_migration_the_running_api_cannot_work_with_fails_the_error_check(
    tmp_path_factory, system_dir, tmp_path
) -> None:
    """Fault: ``next_migration: 0003_message_size_breaking``, safe locks but it renames
    ``messages.sha256``, which the API's posts and reads name: errors_under_1pct fails,
    its detail names the migration's steps; the rename is rolled back after."""
    outcome, before, after = run_on_broken_migration(
        tmp_path_factory, system_dir, tmp_path, BREAKING
    )
    failed = {c.check.name: c for c in outcome.checks if not c.passed}
    assert "errors_under_1pct" in failed, outcome.record.detail
    errors = failed["errors_under_1pct"]
    assert errors.observed > 0.01 and "rename_digest" in errors.detail, errors.detail
    assert outcome.blocking_failed
    assert before[:2] == after[:2]  # sha256 is back: the next night's API works
    no_migration_left()


def test_ctrl_c_during_the_migration_cancels_it_and_rolls_it_back(platform, tmp_path) -> None:
    """SIGINT while the backfill runs: the load stops, the interrupt reaches the caller,
    the migration's statement is cancelled on the server, the schema is the one before
    and the prefilled rows are gone; no migration thread is left."""
    dsn = platform.datastores()["postgres"]
    clean = schema(dsn)
    sent = threading.Event()

    def progress(line: str) -> None:
        if "migration step backfill" in line and not sent.is_set():
            sent.set()
            os.kill(os.getpid(), signal.SIGINT)  # as a terminal's Ctrl-C

    # Python's own handler, as a terminal's process has (one an earlier test left behind
    # might only record the interrupt); tests/conftest.py puts the previous one back
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with pytest.raises(KeyboardInterrupt):
        outcome = run_suite_test(
            MIGRATION,
            PROFILES["ci"],
            platform.target(),
            night=NIGHT,
            run_id="interrupted",
            run_dir=tmp_path,
            progress=progress,
        )
        pytest.fail(f"not interrupted (SIGINT sent: {sent.is_set()}): {outcome.record.detail}")
    assert sent.is_set()
    no_migration_left()
    assert migration_sessions(dsn) == 0
    assert schema(dsn)[:2] == clean[:2]
    prefill = MODULE.PREFILL_CONVERSATION
    prefilled = asyncio.run(
        sql(dsn, f"SELECT count(*) FROM messages WHERE conversation_id = '{prefill}'")
    )
    assert prefilled == 0


def test_a_failing_migration_stops_the_test_with_the_error_and_is_rolled_back(
    platform, tmp_path
) -> None:
    dsn = platform.datastores()["postgres"]
    bad = tmp_path / "bad.up.sql"
    bad.write_text(
        "-- migrate:settings lock_timeout=500ms retries=2\n"
        "-- migrate:step add_column\n"
        "ALTER TABLE messages ADD COLUMN IF NOT EXISTS size_bytes INTEGER NOT NULL DEFAULT 0;\n"
        "-- migrate:step broken\n"
        "ALTER TABLE messages ADD COLUMN sender_ref BIGINT REFERENCES no_such_table (id);\n"
        "-- migrate:step never\n"
        "CREATE TABLE nightly13_never_run (id INT);\n"
    )
    source = MigrationSource(dsn, up=bad, down=migrations_dir() / "0003_message_size.down.sql")
    target = dataclasses.replace(platform.target(), migration=source)
    knobs = dataclasses.replace(MODULE.KNOBS, min_length_s=4.0, before_s=1.0)
    quick = SuiteTest(dataclasses.replace(MIGRATION.spec, knobs=knobs), MIGRATION.scenario)
    before = schema(dsn)
    with pytest.raises(MigrationFailed) as failure:
        run_ci(quick, target, tmp_path)
    message = str(failure.value)
    assert 'relation "no_such_table" does not exist' in message
    assert "REFERENCES no_such_table (id)" in message and "step broken" in message
    assert schema(dsn)[:2] == before[:2]

    async def never_run() -> object:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetchval("SELECT to_regclass('nightly13_never_run')")
        finally:
            await conn.close()

    assert asyncio.run(never_run()) is None
    no_migration_left()


def test_the_windows_are_the_seconds_before_and_during_the_migration() -> None:
    base, during = MODULE.windows(100.0, 110.4, 113.2, 20, before_s=30, settle_s=1.0)
    assert base == (1, 10) and during == (10, 15)
    base, during = MODULE.windows(100.0, 130.0, 200.0, 60, before_s=10, settle_s=1.0)
    assert base == (20, 30) and during == (30, 60)  # clipped to the load's end


def test_a_step_is_judged_over_enough_posts_for_a_p95_at_the_profiles_rate() -> None:
    """At the plan's 200 req/s three seconds hold 360 posts; at ci's 40 they would hold 72,
    whose p95 is their 4th slowest: the window grows to hold ``min_window_posts``."""
    knobs = MIGRATION.spec.knobs
    assert MODULE.window_s(knobs, 200.0) == knobs.min_window_s == 3
    ci_rate = PROFILES["ci"].rate(MIGRATION.spec.rate)
    judged = MODULE.window_s(knobs, ci_rate)
    assert judged == 7 and judged * ci_rate * 0.6 >= knobs.min_window_posts


def test_a_target_without_a_migration_is_refused_naming_the_fix(platform, tmp_path) -> None:
    target = dataclasses.replace(platform.target(), migration=None)
    with pytest.raises(ValueError, match='"migration": '):
        run_ci(MIGRATION, target, tmp_path)


def test_the_shipped_migrations_read_as_steps() -> None:
    safe = next_migration(SAFE, "postgresql://u@127.0.0.1/db")
    unsafe = next_migration(UNSAFE, "postgresql://u@127.0.0.1/db")
    assert safe.errors() == [] and unsafe.errors() == []
    up = safe.up_migration()
    assert up is not None and up.lock_timeout == "500ms" and up.retries > 0
    assert [s.name for s in up.steps] == ["add_column", "backfill", "index"]
    assert up.steps[1].batch and not up.steps[2].transaction and up.steps[2].concurrent
    bad = unsafe.up_migration()
    assert bad is not None and bad.lock_timeout is None
    assert not any(s.concurrent for s in bad.steps)
    assert Path(safe.down or "") == Path(unsafe.down or "")


def test_ctrl_c_of_nightly_run_during_the_migration_exits_130_leaving_no_process(
    tmp_path,
) -> None:
    """``nightly run --tests 13`` at ci, Ctrl-C (SIGINT to the process group, as a terminal
    sends it) while the backfill runs: exit 130, and no process of the run is left (the
    rollback itself is shown by the in-process test above: this platform is gone after)."""
    home = tmp_path / "home"
    argv = [sys.executable, "-m", "nightly_pipeline.cli", "--store", str(home / "metrics.duckdb")]
    argv += ["run", "--profile", "ci", "--tests", "13", "--night", "2026-11-20"]
    child = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    seen = []
    with group_killed_on_exit(child):
        assert child.stdout is not None
        for line in child.stdout:  # ends at EOF if the run dies first
            seen.append(line)
            if "migration step backfill" in line:
                break
        out = interrupt(child)
    out = "".join(seen) + out
    assert "migration step backfill" in out
    assert child.returncode == 130, out
    assert processes_left(home) == []


def test_the_load_outlasts_a_migration_longer_than_its_length_until_the_last_step_is_judged():
    """The load's nominal length is not its end while the migration runs: it ends once
    the length is past and the migration ended ``settle_s`` + ``window_s`` ago (failed
    or stopped too). A stand-in thread: the rule alone."""
    knobs = MIGRATION.spec.knobs
    judged_s = MODULE.window_s(knobs, 40.0)
    margin = knobs.settle_s + judged_s

    def thread(finished: float = 0.0, ended_at: float = 0.0):
        run = type("Run", (), {"finished": finished})()
        return type("Thread", (), {"run": run, "ended": ended_at > 0, "ended_at": ended_at})()

    def may_end(now: float, migration) -> bool:
        return MODULE.load_may_end(now, 100.0, 30.0, migration, knobs, judged_s)

    running = thread()
    assert not may_end(131.0, running) and not may_end(250.0, running)
    finished = thread(finished=110.0, ended_at=110.1)
    assert not may_end(129.0, finished)  # the length first
    assert may_end(130.0, finished)
    late = thread(finished=150.0, ended_at=150.1)
    assert not may_end(150.0 + margin - 0.1, late) and may_end(150.0 + margin, late)
    failed = thread(ended_at=140.0)  # never finished: judged from when it stopped
    assert not may_end(139.0, failed) and may_end(140.0 + margin, failed)
