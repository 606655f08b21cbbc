"""Test 13, migration under load: mixed posts and reads at a fixed rate while the
platform's next schema migration runs (a column with a constant default, a batched
backfill, an index built ``CONCURRENTLY``, every lock wait under ``lock_timeout`` with
retries). The load must not notice: errors < 1 %, and the p95 while each step runs at
most twice the p95 of the ``before_s`` seconds before the migration, for all requests and
for the posts apart (a step that holds only writes shows in them before the reads dilute
it). The migration must take less than 60 s.

Timeline (one load, ``ctx.duration_s`` long, at least ``min_length_s``): the first
``before_s`` seconds (at most ``before_share`` of the load) are the baseline; then the
migration starts, in a thread of its own, while lock waits (``pg_stat_activity`` with
``pg_blocking_pids()``) and ``pg_stat_progress_create_index`` are sampled every 100 ms
on another connection. The plan's 120 s is 30 s before and up to 90 s for the
migration; at smoke (60 s) 30 s and 30 s; at ci the 20 s minimum, 10 s and 10 s. A
migration that outlasts that length keeps the load running until it has ended and its
last step has been judged (``settle_s`` + ``window_s`` past its end), at most until
``migration_deadline_s``: every step runs under load.

What it migrates is the target's (``Target.migration``): on the embedded platform its
next migration (``testbed/next_migrations``; ``TestbedConfig.next_migration``), whose
``messages`` table first holds exactly ``prefill_rows`` rows (the earlier tests' messages
are removed: the table migrated is the same size every night, whichever tests ran
before, so the migration's duration and lock waits compare night to night) so that an
unsafe step really blocks (a plain ``CREATE INDEX`` holds writes for the whole build);
on an external target the migration its target file names, on its data as it is. The
down migration (idempotent) runs before the up one (a crashed run's leftovers) and after
it, whatever happens: the next night starts from the same schema. A migration that fails
stops the test with PostgreSQL's error and the statement (``MigrationFailed``), rolled
back, nothing else run.

When the p95 or error check fails, its detail names what blocked the load: the sessions
blocked at once, the longest wait and the statement that held the lock. Broken platforms
(``TestbedConfig.next_migration``): ``0003_message_size_unsafe`` (no lock_timeout, a
volatile default that rewrites the table, a plain CREATE INDEX) and the milder
``0003_message_size_plain_index`` (a plain CREATE INDEX alone: writes held 0.2-0.3 s on
the 300,000 rows, usually caught by the posts' p95; not reliably at ci, so untested).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import time
import uuid
from dataclasses import dataclass, field

import asyncpg

from nightly_pipeline.loadgen import LoadResult
from nightly_pipeline.loadgen.recorder import Recorder
from nightly_pipeline.loadgen.vu import Vu
from nightly_pipeline.suite.client import Conversation, PlatformClient
from nightly_pipeline.suite.context import ScenarioContext
from nightly_pipeline.suite.errors import ConfigurationError
from nightly_pipeline.suite.messaging_load import message_body
from nightly_pipeline.suite.migration import (
    MigrationRun,
    MigrationSource,
    MigrationThread,
    roll_back,
)
from nightly_pipeline.suite.spec import Check, TestSpec
from nightly_pipeline.suite.target import Target

PREFILL_CONVERSATION = "13131313-1313-4313-8313-131313131313"
"""The conversation the prefilled rows belong to: deleting it removes them (cascade)."""
JSON = ("Content-Type", "application/json")


@dataclass(frozen=True)
class MigrationUnderLoadKnobs:
    before_s: float = 30.0  # the baseline window before the migration starts
    before_share: float = 0.5  # ... at most this share of the load
    min_length_s: float = 20.0
    """The load runs at least this long whatever the profile: a baseline and a migration
    of some seconds each (the ci profile's 6 s would leave neither; at ci's 40 req/s a
    10 s baseline is 400 requests). A longer migration keeps it running (``until``)."""
    migration_deadline_s: float = 90.0  # statement_timeout and the wait for its end
    prefill_rows: int = 300_000
    """Rows added to messages first (embedded platform only), so that an unsafe step
    really blocks: measured on 2 cores, a table rewrite holds reads and writes for about
    1 s, a plain CREATE INDEX holds writes for 0.2-0.3 s; prefilling takes about 6 s."""
    posts_per_10: int = 6  # of every 10 iterations; the others read a conversation's latest
    conversations: int = 10
    payload_bytes: int = 256
    settle_s: float = 1.0
    """A step's window is judged this long past its end: requests it held are recorded
    when they finish, just after it."""
    min_window_s: int = 3
    """A step is judged over at least this many seconds: a p95 of one second's requests is
    mostly noise."""
    min_window_posts: int = 150
    """... and over at least this many posts (``window_s``: 3 s at 200 req/s, 7 s at ci's
    40): the p95 of fewer is their few slowest. At ci 3 s held 72 posts, whose p95 is
    the 4th slowest, and one ADD COLUMN's lock and commit (tens of ms on a slow host,
    everything queued behind it) made it: a CI run failed on 43.8 ms vs 5.5 before."""
    p95_floor_ms: float = 50.0
    """The baseline p95 is taken as at least this: under it the ratio of two p95s measures
    the scheduler's noise, not the migration. 10 ms was too low on 2 shared cores: a
    migration that does nothing (``SELECT 1``, ``pg_sleep`` batches) failed the 2x check in
    3 of 11 smoke runs (step p95s 25.8-42.2 ms against 5-11 ms), and a CI night at ci on
    47.9 ms, with no session of the load blocked. What the check is for still fails above
    100 ms: a table rewrite holds the load ~1 s (posts' p95 ~1,050 ms), a plain CREATE
    INDEX 0.2-0.3 s (posts' p95 110 ms at smoke: 2.2x, close to the line)."""
    max_vus: int = 1000


KNOBS = MigrationUnderLoadKnobs()

SPEC = TestSpec(
    id="13",
    name="migration_under_load",
    duration_s=120,
    rate=200,
    knobs=KNOBS,
    description="a real schema migration (column, batched backfill, index) under 200 req/s",
    assets=("latency", "migration"),
    checks=(
        Check(
            "errors_under_1pct",
            on="latency",
            metric="http_req_failed",
            expr="rate<0.01",
            severity="error",
            plan="Error rate < 1% (the whole load, the migration included)",
            unit="ratio",
        ),
        Check(
            "p95_during_migration_under_2x",
            on="latency",
            metric="migration_p95_ratio",
            expr="value<=2",
            severity="error",
            plan="P95 latency spike < 2x baseline",
            unit="ratio",
        ),
        # warn: no honest broken platform makes a ci run's migration take a minute, and a
        # blocking check must be shown failing against one (docs/adding-a-test.md)
        Check(
            "migration_under_60s",
            on="migration",
            metric="migration_duration_s",
            expr="max<60",
            severity="warn",
            plan="Migration completes < 60s",
            unit="s",
        ),
    ),
)


@dataclass
class PostsAndReads:
    """Per 10 iterations ``posts`` POST /v1/messages, the rest read the latest messages
    of a conversation, round-robin over the conversations."""

    conversations: list[Conversation]
    tokens: dict[str, str]
    payload_bytes: int
    posts: int = 6
    last_seq: dict[str, int] = field(default_factory=dict)
    _next: itertools.count = field(default_factory=itertools.count)

    async def iteration(self, vu: Vu) -> None:
        n = next(self._next)
        conversation = self.conversations[n % len(self.conversations)]
        auth = ("Authorization", f"Bearer {self.tokens[conversation.owner]}")
        if n % 10 >= self.posts:
            after = max(0, self.last_seq.get(conversation.id, 0) - 20)
            path = f"/v1/conversations/{conversation.id}/messages?after={after}&limit=20"
            await vu.http.get(path, headers=[auth], tags={"name": "read_messages"})
            return
        body, _ = message_body(conversation.id, os.urandom(self.payload_bytes))
        response = await vu.http.post(
            "/v1/messages", body, headers=[auth, JSON], tags={"name": "post_message"}
        )
        if response.status == 202:
            self.last_seq[conversation.id] = int(response.json()["seq"])


def set_up(target: Target, conversations: int) -> tuple[list[Conversation], dict[str, str]]:
    """Owners log in; each conversation is an owner and the next user."""
    users = list(target.users)
    if len(users) < 2:
        raise ConfigurationError(
            f"{target.name}: Test 13 needs 2 users, the target has {len(users)}"
        )
    pool = users[: min(len(users), conversations + 1)]
    with PlatformClient(target) as client:
        sessions = {u: client.login(u) for u in pool}
        made = [
            client.create_conversation(
                sessions[pool[i % len(pool)]], [sessions[pool[(i + 1) % len(pool)]]]
            )
            for i in range(conversations)
        ]
    return made, {u: s.token for u, s in sessions.items()}


def prefill(dsn: str, rows: int) -> int:
    """``messages`` emptied (the earlier tests' rows and their outbox entries: the
    embedded platform's, all delivered or dead by now), then ``rows`` messages in one
    conversation of their own, in one statement; how many rows the table holds."""

    async def fill() -> int:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            async with conn.transaction():
                await conn.execute("SET LOCAL lock_timeout = '10s'")
                await conn.execute("TRUNCATE messages, outbox")
                owner = await conn.fetchval("SELECT id FROM users ORDER BY id LIMIT 1")
                await conn.execute(
                    "INSERT INTO conversations (id, owner_id, title, last_seq)"
                    " VALUES ($1, $2, 'nightly 13 prefill', $3)",
                    uuid.UUID(PREFILL_CONVERSATION),
                    owner,
                    rows,
                )
                await conn.execute(
                    "INSERT INTO messages"
                    " (id, conversation_id, sender_id, client_msg_id, seq, ciphertext, sha256)"
                    " SELECT gen_random_uuid(), $1, $2, 'prefill-' || i, i,"
                    "   decode(md5(i::text) || md5((i + 1)::text), 'hex'), md5(i::text)"
                    " FROM generate_series(1, $3::int) AS i",
                    uuid.UUID(PREFILL_CONVERSATION),
                    owner,
                    rows,
                )
            # now, not by autovacuum in the middle of the baseline (300k inserted rows)
            await conn.execute("VACUUM (ANALYZE) messages")
            return int(await conn.fetchval("SELECT count(*) FROM messages"))
        finally:
            await conn.close()

    return asyncio.run(fill())


def remove_prefill(dsn: str) -> None:
    """Idempotent: also clears a crashed run's rows."""

    async def remove() -> None:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            await conn.execute("SET statement_timeout = '120s'")
            deleted = await conn.execute(
                "DELETE FROM conversations WHERE id = $1", uuid.UUID(PREFILL_CONVERSATION)
            )
            if deleted != "DELETE 0":  # the dead rows gone now, not under the next test's load
                await conn.execute("VACUUM (ANALYZE) messages")
        finally:
            await conn.close()

    asyncio.run(remove())


def window_s(knobs: MigrationUnderLoadKnobs, rate: float) -> int:
    """The seconds a step is judged over at least: ``min_window_s``, or as many as
    ``min_window_posts`` take at ``rate``."""
    posts_per_s = rate * knobs.posts_per_10 / 10
    return max(knobs.min_window_s, math.ceil(knobs.min_window_posts / posts_per_s))


def load_may_end(
    now: float,
    load_started: float,
    length_s: float,
    thread: MigrationThread,
    knobs: MigrationUnderLoadKnobs,
    judged_s: int,
) -> bool:
    """The load has run its ``length_s`` and the migration has ended (finished, failed
    or stopped) at least ``settle_s`` + ``judged_s`` (``window_s``) ago: its last step
    is judged over seconds with load."""
    if now - load_started < length_s or not thread.ended:
        return False
    ended_at = thread.run.finished or thread.ended_at
    return now >= ended_at + knobs.settle_s + judged_s


def windows(
    run_start: float,
    started: float,
    finished: float,
    end_s: int,
    before_s: float,
    settle_s: float,
    min_s: int = 1,
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Whole seconds of the load, ``[start, end)``: the ``before_s`` before ``started``
    (from second 1 at the earliest: the connections' first second is left out) and the
    seconds from ``started`` to ``settle_s`` past ``finished`` (at least ``min_s`` of
    them), within the load's ``end_s``."""
    first = max(1, math.floor(started - run_start))
    base_start = max(1, first - math.ceil(before_s)) if first > 1 else 0
    during_end = max(first + min_s, math.ceil(finished - run_start + settle_s))
    return (base_start, first), (first, max(first + 1, min(end_s, during_end)))


KINDS: dict[str, dict[str, str] | None] = {"all": None, "post_message": {"name": "post_message"}}
"""Judged: every request (the plan's p95), and the posts apart, so that a step holding only
writes (a plain CREATE INDEX) shows before the reads dilute it. Reads apart would add no
lock a post would not see (what blocks reads, ACCESS EXCLUSIVE, blocks writes too), only
the CPU the migration takes from a 2-core machine (measured at smoke: reads' p95 6 ms
before, 18 ms during a safe CREATE INDEX CONCURRENTLY; posts 4 ms and 9 ms)."""


@dataclass(frozen=True)
class StepLatency:
    step: str
    kind: str  # "all" or the requests' name tag
    seconds: tuple[int, int]
    p95_ms: float
    before_ms: float  # the same requests' p95 before the migration

    def ratio(self, floor_ms: float) -> float:
        return self.p95_ms / max(self.before_ms, floor_ms)


def p95_by_step(
    rec: Recorder, run: MigrationRun, knobs: MigrationUnderLoadKnobs, at: float, judged_s: int
) -> tuple[tuple[int, int], list[StepLatency]]:
    """The baseline's seconds, and per step and kind of request the p95 over the step's
    seconds beside the p95 before (a step that holds the load for one second shows,
    however long the others take). Steps shorter than ``judged_s`` (``window_s``) share
    seconds with the next: which statement blocked is the lock sampler's to say."""
    end_s = rec.closed_until
    base, _ = windows(rec.run_start, run.started, at, end_s, knobs.before_s, 0)
    out = []
    for kind, tags in KINDS.items():
        before = rec.window_stats("http_req_duration", tags, *base).get("p(95)")
        if before is None:
            continue
        for step in run.steps:
            _, during = windows(
                rec.run_start,
                step.started,
                step.finished or at,
                end_s,
                knobs.before_s,
                knobs.settle_s,
                judged_s,
            )
            p95 = rec.window_stats("http_req_duration", tags, *during).get("p(95)")
            if p95 is not None:
                out.append(StepLatency(step.name, kind, during, p95, before))
    return base, out


def record(
    ctx: ScenarioContext[MigrationUnderLoadKnobs],
    result: LoadResult,
    thread: MigrationThread,
    judged_s: int,
) -> None:
    """The migration's figures and the p95 ratio; the blocker as evidence."""
    knobs, rec, run, waits = ctx.knobs, result.recorder, thread.run, thread.waits
    at = time.perf_counter()
    if run.finished:
        rec.gauge("migration_duration_s", run.seconds, at)
    rec.counter("migration_lock_retries", at, value=float(run.retries))
    rec.counter("migration_batches", at, value=float(sum(s.batches for s in run.steps)))
    for step in run.steps:
        if step.finished:
            rec.gauge("migration_step_s", step.finished - step.started, at, {"step": step.name})
    rec.counter("lock_samples", at, value=float(waits.samples))
    rec.gauge("lock_blocked_sessions", float(waits.max_blocked), at)
    rec.gauge("lock_wait_longest_ms", waits.longest_wait_s * 1000.0, at)
    rec.gauge("migration_own_lock_wait_ms", waits.migration_waited_s * 1000.0, at)
    for phase, seconds in waits.phases.items():
        rec.gauge("create_index_phase_s", seconds, at, {"phase": phase})
    base, steps = p95_by_step(rec, run, knobs, at, judged_s)
    if steps:
        worst = max(steps, key=lambda s: s.ratio(knobs.p95_floor_ms))
        for s in steps:
            rec.gauge("migration_p95_before_ms", s.before_ms, at, {"name": s.kind})
            rec.gauge("migration_p95_during_ms", s.p95_ms, at, {"step": s.step, "name": s.kind})
        rec.gauge("migration_p95_ratio", worst.ratio(knobs.p95_floor_ms), at)
        result.add_evidence(
            "migration_p95_ratio",
            f"{worst.kind} p95 {worst.p95_ms:.1f} ms during step {worst.step} (s"
            f" {worst.seconds[0]}-{worst.seconds[1]}) vs {worst.before_ms:.1f} ms before (s"
            f" {base[0]}-{base[1]})",
        )
    timings = ", ".join(
        f"{s.name} {s.finished - s.started:.1f} s"
        + (f" ({s.retries} retries)" if s.retries else "")
        for s in run.steps
        if s.finished
    )
    for metric in ("migration_p95_ratio", "http_req_failed"):
        result.add_evidence(metric, waits.describe())
        result.add_evidence(metric, f"migration {run.name}: {timings or 'no step finished'}")
    if not run.finished:
        result.add_evidence("migration_duration_s", "the migration never finished")


def _source(target: Target) -> MigrationSource:
    source = target.migration
    if source is None:
        raise ConfigurationError(
            f"{target.name}: Test 13 needs a migration to apply; name it in the target file:"
            ' "migration": {"up": "up.sql", "down": "down.sql", "dsn_env": "MIGRATION_DSN"}'
        )
    problems = source.errors()
    if problems:
        raise ConfigurationError(f"{target.name}: " + "; ".join(problems))
    return source


def scenario(ctx: ScenarioContext[MigrationUnderLoadKnobs]) -> LoadResult:
    knobs, source = ctx.knobs, _source(ctx.target)
    length = max(ctx.duration_s, knobs.min_length_s)
    before = min(knobs.before_s, knobs.before_share * length)
    roll_back(source, knobs.migration_deadline_s)  # what a crashed run left, if anything
    if source.may_prefill:
        remove_prefill(source.dsn)
    try:
        table_rows: int | None = None
        if source.may_prefill:
            started = time.monotonic()
            table_rows = prefill(source.dsn, knobs.prefill_rows)
            ctx.progress(
                f"{ctx.spec.key}: messages reset to {table_rows:,} prefilled rows"
                f" in {time.monotonic() - started:.1f} s"
            )
        conversations, tokens = set_up(ctx.target, knobs.conversations)
        load = PostsAndReads(conversations, tokens, knobs.payload_bytes, knobs.posts_per_10)
        thread = MigrationThread(
            source,
            start_after_s=before,
            deadline_s=knobs.migration_deadline_s,
            progress=lambda line: ctx.progress(f"{ctx.spec.key}: {line}"),
        )
        judged_s = window_s(knobs, ctx.rate)
        longest = before + knobs.migration_deadline_s + knobs.settle_s + judged_s
        ctx.progress(
            f"{ctx.spec.key}: {ctx.rate:g} req/s for {length:g} s (up to {longest:g} s while"
            f" the migration runs), migration {thread.run.name} after {before:g} s"
        )
        thread.start()
        load_started = time.perf_counter()
        try:
            result = ctx.load(
                load,
                max_vus=knobs.max_vus,
                duration_s=max(length, longest),
                until=lambda: load_may_end(
                    time.perf_counter(), load_started, length, thread, knobs, judged_s
                ),
            )
            if result.aborted is None:
                thread.wait(max(0.0, knobs.migration_deadline_s - (length - before)) + 5.0)
        finally:
            thread.stop()
        if thread.error is not None and not isinstance(thread.error, asyncio.CancelledError):
            raise thread.error  # MigrationFailed: PostgreSQL's error and the statement
        record(ctx, result, thread, judged_s)
        if table_rows is not None:
            result.recorder.gauge("migration_table_rows", float(table_rows), time.perf_counter())
        return result
    finally:
        roll_back(source, knobs.migration_deadline_s)
        if source.may_prefill:
            remove_prefill(source.dsn)
        ctx.progress(f"{ctx.spec.key}: migration rolled back")
