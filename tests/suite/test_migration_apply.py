"""Applying a migration (``suite.migration.apply``), sampling lock waits
(``suite.migration.locks``), a migration command and a target file's ``migration``
entry, against a real PostgreSQL (the embedded stack's)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from nightly_pipeline.suite.migration import (
    LockWaits,
    MigrationFailed,
    MigrationRun,
    apply_migration,
    parse_migration,
)
from nightly_pipeline.suite.migration.locks import sample, watch
from nightly_pipeline.suite.migration.session import run_command
from nightly_pipeline.suite.target import TargetConfigError, load_target
from nightly_pipeline.testbed.stack import EmbeddedStack, StackConfig
from tests.processes import wait_gone

POLLS = 500  # 500 x 20 ms: how long a test waits for PostgreSQL to reach a state


@pytest.fixture(scope="module")
def dsn(tmp_path_factory, system_dir) -> Iterator[str]:
    config = StackConfig(
        run_dir=tmp_path_factory.mktemp("migration-pg") / "run",
        system_dir=system_dir,
        search_path=os.environ.get("PATH"),
    )
    with EmbeddedStack(config) as endpoints:
        yield endpoints.postgres_dsn


def run(coro):
    return asyncio.run(coro)


async def table(dsn: str, name: str, rows: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {name}")
        await conn.execute(f"CREATE TABLE {name} (id INT PRIMARY KEY, c INT NOT NULL DEFAULT 0)")
        await conn.execute(f"INSERT INTO {name} (id) SELECT generate_series(1, {rows})")
    finally:
        await conn.close()


async def until(predicate) -> None:
    for _ in range(POLLS):
        if await predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("PostgreSQL never got there")


def test_a_batched_backfill_runs_until_no_key_is_returned(dsn) -> None:
    migration = parse_migration(
        "fill",
        "-- migrate:step fill batch=300 from=0\n"
        "WITH b AS (UPDATE fill_t SET c = id WHERE id > $1::text::int AND id <= $1::text::int + $2"
        " RETURNING id) SELECT max(id)::text FROM b;\n"
        "-- migrate:step index transaction=false\n"
        "DROP INDEX CONCURRENTLY IF EXISTS fill_c;\n"
        "CREATE INDEX CONCURRENTLY fill_c ON fill_t (c);\n",
    )

    async def go() -> tuple[MigrationRun, int, bool]:
        await table(dsn, "fill_t", 1000)
        conn = await asyncpg.connect(dsn)
        try:
            done = await apply_migration(conn, migration, deadline_s=60)
            left = await conn.fetchval("SELECT count(*) FROM fill_t WHERE c <> id")
            valid = await conn.fetchval(
                "SELECT indisvalid FROM pg_index WHERE indexrelid = 'fill_c'::regclass"
            )
            return done, left, valid
        finally:
            await conn.close()

    done, left, valid = run(go())
    assert left == 0 and valid
    assert [s.batches for s in done.steps] == [4, 0]  # 300, 300, 300, 100 rows
    assert done.retries == 0 and done.finished >= done.started


def test_a_step_that_times_out_on_a_lock_is_retried_until_it_gets_it(dsn) -> None:
    migration = parse_migration(
        "retry",
        "-- migrate:settings lock_timeout=50ms retries=50 retry_pause_s=0.02\n"
        "-- migrate:step add\nALTER TABLE retry_t ADD COLUMN d INT;\n",
    )

    async def go() -> MigrationRun:
        await table(dsn, "retry_t", 10)
        holder = await asyncpg.connect(dsn)
        conn = await asyncpg.connect(dsn)
        state = MigrationRun("retry")
        try:
            hold = holder.transaction()
            await hold.start()
            await holder.execute("LOCK TABLE retry_t IN ACCESS SHARE MODE")
            task = asyncio.create_task(apply_migration(conn, migration, deadline_s=60, run=state))

            async def retried() -> bool:
                return bool(state.steps) and state.steps[0].retries >= 1

            await until(retried)
            await hold.rollback()  # the lock goes: the next attempt gets it
            return await task
        finally:
            await holder.close()
            await conn.close()

    done = run(go())
    assert done.retries >= 1 and done.steps[0].finished > 0


def test_a_lock_never_released_fails_after_the_retries_naming_the_statement(dsn) -> None:
    migration = parse_migration(
        "stuck",
        "-- migrate:settings lock_timeout=20ms retries=2 retry_pause_s=0.01\n"
        "-- migrate:step add\nALTER TABLE stuck_t ADD COLUMN d INT;\n",
    )

    async def go() -> None:
        await table(dsn, "stuck_t", 10)
        holder = await asyncpg.connect(dsn)
        conn = await asyncpg.connect(dsn)
        try:
            async with holder.transaction():
                await holder.execute("LOCK TABLE stuck_t IN ACCESS SHARE MODE")
                await apply_migration(conn, migration, deadline_s=60)
        finally:
            await holder.close()
            await conn.close()

    with pytest.raises(MigrationFailed) as failure:
        run(go())
    assert failure.value.step == "add"
    assert failure.value.statement == "ALTER TABLE stuck_t ADD COLUMN d INT"
    assert "55P03" in failure.value.error and "after 2 retries" in failure.value.error


def test_a_failing_statement_stops_the_migration_with_postgresqls_error(dsn) -> None:
    migration = parse_migration(
        "broken",
        "-- migrate:step one\nCREATE TABLE broken_one (id INT);\nSELECT * FROM no_such_thing;\n"
        "-- migrate:step two\nCREATE TABLE broken_two (id INT);\n",
    )

    async def go() -> tuple[object, object]:
        conn = await asyncpg.connect(dsn)
        try:
            with pytest.raises(MigrationFailed) as failure:
                await apply_migration(conn, migration, deadline_s=60)
            assert failure.value.statement == "SELECT * FROM no_such_thing"
            assert 'relation "no_such_thing" does not exist' in failure.value.error
            one = await conn.fetchval("SELECT to_regclass('broken_one')")
            two = await conn.fetchval("SELECT to_regclass('broken_two')")
            return one, two
        finally:
            await conn.close()

    assert run(go()) == (None, None)  # step one rolled back, step two never run


def test_the_sampler_sees_a_blocked_session_its_wait_and_its_blocker(dsn) -> None:
    async def go() -> LockWaits:
        await table(dsn, "locked_t", 10)
        holder = await asyncpg.connect(dsn)
        waiter = await asyncpg.connect(dsn)
        watcher = await asyncpg.connect(dsn)
        try:
            hold = holder.transaction()
            await hold.start()
            await holder.execute("LOCK TABLE locked_t IN ACCESS EXCLUSIVE MODE")
            reading = asyncio.create_task(waiter.fetch("SELECT count(*) FROM locked_t"))

            async def blocked() -> bool:
                return bool((await sample(watcher))[0])

            await until(blocked)
            waits, stop = LockWaits(), asyncio.Event()
            sampling = asyncio.create_task(
                watch(watcher, waits, stop, deadline_s=30, interval_s=0.05)
            )

            async def sampled() -> bool:
                return waits.samples >= 3

            await until(sampled)
            await hold.rollback()
            await reading
            stop.set()
            return await sampling
        finally:
            for conn in (holder, waiter, watcher):
                await conn.close()

    waits = run(go())
    assert waits.max_blocked == 1 and waits.longest is not None
    assert waits.longest.query == "SELECT count(*) FROM locked_t"
    assert waits.blocking_statement() == "LOCK TABLE locked_t IN ACCESS EXCLUSIVE MODE"
    assert waits.longest_wait_s > 0


def test_a_migration_command_gets_the_dsn_and_fails_with_its_output(dsn) -> None:
    ok = (sys.executable, "-c", "import os; assert os.environ['DATABASE_URL'].startswith('post')")
    run(run_command(ok, dsn, 60))
    bad = (sys.executable, "-c", "import sys; print('boom: no such column'); sys.exit(3)")
    with pytest.raises(MigrationFailed, match="exit 3: boom: no such column"):
        run(run_command(bad, dsn, 60))


def test_a_cancelled_migration_command_is_killed_with_its_children(dsn, tmp_path) -> None:
    """Ctrl-C or a stopped test while the platform's migration tool runs: the command and
    what it started are killed (its own session), nothing keeps running."""
    pidfile = tmp_path / "child.pid"
    script = (
        "import subprocess, sys, time; "
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); "
        f"open({str(pidfile)!r}, 'w').write(str(c.pid)); time.sleep(300)"
    )

    async def go() -> None:
        task = asyncio.create_task(run_command((sys.executable, "-c", script), dsn, 600))
        for _ in range(POLLS):
            if pidfile.exists() and pidfile.read_text():
                break
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(go())
    child = int(pidfile.read_text())
    # SIGKILL went to the whole group; the grandchild dies when next scheduled (on a loaded
    # host that is not at once): wait for it, bounded, rather than read it the same instant
    assert wait_gone([child], timeout_s=30.0) == set(), (
        f"pid {child} still running after the cancel"
    )


def target_file(tmp_path: Path, migration: object) -> Path:
    path = tmp_path / "target.json"
    base = {
        "name": "staging",
        "base_url": "http://127.0.0.1:1",
        "ws_url": "ws://127.0.0.1:1/v1/ws",
        "users": ["u1"],
        "password_env": "PW",
    }
    path.write_text(json.dumps({**base, "migration": migration}))
    return path


def test_a_target_file_names_its_migration_files_and_dsn(tmp_path) -> None:
    (tmp_path / "up.sql").write_text("-- migrate:step a\nSELECT 1;\n")
    (tmp_path / "down.sql").write_text("SELECT 1;\n")
    entry = {"up": "up.sql", "down": "down.sql", "dsn_env": "MIG_DSN"}
    env = {"PW": "x", "MIG_DSN": "postgresql://owner@db.example.com/app"}
    target = load_target(target_file(tmp_path, entry), env)
    assert target.migration is not None and target.migration.up == tmp_path / "up.sql"
    assert target.migration.dsn == env["MIG_DSN"] and not target.migration.may_prefill


@pytest.mark.parametrize(
    ("entry", "env", "error"),
    [
        ({"up": "up.sql", "down": "down.sql"}, {}, "dsn_env must name a set environment"),
        ({"up": "up.sql", "dsn_env": "D"}, {"D": "postgresql://x@h/db"}, 'needs its "down"'),
        (
            {"up": "nope.sql", "down": "down.sql", "dsn_env": "D"},
            {"D": "postgresql://x@h/d"},
            "nope.sql",
        ),
        ({"command": ["migrate"], "dsn_env": "D"}, {"D": "postgresql://x@h/d"}, "down_command"),
        (
            {"command": "migrate up", "down_command": [], "dsn_env": "D"},
            {"D": "postgresql://h/d"},
            "list of strings",
        ),
        (
            {"up": "up.sql", "down": "down.sql", "dsn_env": "D"},
            {"D": "mysql://h/d"},
            "postgresql://",
        ),
        ("up.sql", {}, "must be an object"),
    ],
    ids=[
        "no-dsn",
        "no-down",
        "missing-file",
        "no-down-command",
        "command-string",
        "scheme",
        "string",
    ],
)
def test_a_bad_migration_entry_is_refused_when_the_file_is_read(
    tmp_path, entry, env, error
) -> None:
    (tmp_path / "up.sql").write_text("SELECT 1;\n")
    (tmp_path / "down.sql").write_text("SELECT 1;\n")
    with pytest.raises(TargetConfigError, match=error):
        load_target(target_file(tmp_path, entry), {"PW": "x", **env})
