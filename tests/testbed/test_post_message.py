"""``POST /v1/messages`` as one statement (sql/0002_post_message.sql) against real
PostgreSQL and Redis: idempotent retries consume no seq, non-participants are refused by
row-level security inside the function and write nothing, concurrent posts to one
conversation get seqs without gaps or repeats."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from nightly_pipeline.testbed import migrate
from tests.testbed.api_fixtures import (
    ApiStack,
    api_stack,
    create_conversation,
    message_body,
    sql,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, system_dir: Path) -> Iterator[ApiStack]:
    with api_stack(tmp_path_factory.mktemp("post") / "run", system_dir) as stack:
        yield stack


@pytest.fixture(scope="module")
def tokens(api: ApiStack) -> dict[str, str]:
    return {name: api.login(name) for name in ("user0001", "user0002", "user0003")}


def _written(api: ApiStack, conv: str) -> tuple[int, list[int], int]:
    """(last_seq, message seqs, outbox rows) of ``conv``, read as the superuser."""
    conv_uuid = uuid.UUID(conv)
    dsn = api.endpoints.postgres_dsn
    last_seq = sql(dsn, "SELECT last_seq FROM conversations WHERE id = $1", conv_uuid)[0][0]
    seqs = [
        r["seq"] for r in sql(dsn, "SELECT seq FROM messages WHERE conversation_id = $1", conv_uuid)
    ]
    outbox = sql(
        dsn,
        "SELECT count(*) FROM outbox o JOIN messages m ON m.id = o.message_id"
        " WHERE m.conversation_id = $1",
        conv_uuid,
    )[0][0]
    return last_seq, sorted(seqs), outbox


def test_function_runs_as_the_caller(api: ApiStack) -> None:
    rows = sql(
        api.endpoints.postgres_dsn,
        "SELECT prosecdef, proowner::regrole::text FROM pg_proc"
        " WHERE proname = 'testbed_post_message'",
    )
    assert len(rows) == 1
    assert rows[0]["prosecdef"] is False  # SECURITY INVOKER
    assert rows[0]["proowner"] != migrate.APP_ROLE  # so FORCEd policies are not bypassed


def test_duplicate_returns_the_first_and_consumes_no_seq(
    api: ApiStack, tokens: dict[str, str]
) -> None:
    conv = create_conversation(api, tokens["user0001"], "user0002")["id"]
    with api.client(tokens["user0001"]) as a, api.client(tokens["user0002"]) as b:
        first = a.post("/v1/messages", json=message_body(conv, b"one", "c-1")).json()
        again = a.post("/v1/messages", json=message_body(conv, b"one", "c-1"))
        by_other = b.post("/v1/messages", json=message_body(conv, b"one", "c-1")).json()
        after = a.post("/v1/messages", json=message_body(conv, b"two", "c-2")).json()
    assert first == {"message_id": first["message_id"], "seq": 1, "duplicate": False}
    assert again.status_code == 202
    assert again.json() == {**first, "duplicate": True}
    assert by_other == {**first, "duplicate": True}  # unique per conversation, as before
    assert after["seq"] == 2 and not after["duplicate"]
    assert _written(api, conv) == (2, [1, 2], 2)


def test_non_participant_is_403_and_writes_nothing(api: ApiStack, tokens: dict[str, str]) -> None:
    conv = create_conversation(api, tokens["user0001"], "user0002")["id"]
    with api.client(tokens["user0001"]) as a:
        assert a.post("/v1/messages", json=message_body(conv, b"x")).status_code == 202
    before = api.metric("sanctum_security_denied_total")
    with api.client(tokens["user0003"]) as c:
        resp = c.post("/v1/messages", json=message_body(conv, b"intruder"))
    assert resp.status_code == 403
    assert resp.json()["error"] == "forbidden"
    assert api.metric("sanctum_security_denied_total") == before + 1
    assert _written(api, conv) == (1, [1], 1)


def test_stale_membership_cache_is_still_refused_by_rls(
    api: ApiStack, tokens: dict[str, str]
) -> None:
    """The API's cache still says "member" (the row went behind its back, no
    invalidation): the function's UPDATE sees no row under RLS and the POST is 403."""
    conv = create_conversation(api, tokens["user0001"], "user0002")["id"]
    with api.client(tokens["user0002"]) as b:
        assert b.post("/v1/messages", json=message_body(conv, b"x")).status_code == 202
        sql(
            api.endpoints.postgres_dsn,
            "DELETE FROM participants WHERE conversation_id = $1 AND user_id = $2",
            uuid.UUID(conv),
            api.users["user0002"],
        )
        resp = b.post("/v1/messages", json=message_body(conv, b"after removal"))
    assert resp.status_code == 403, resp.text
    assert _written(api, conv) == (1, [1], 1)


def test_function_refuses_a_non_participant_in_sql(api: ApiStack) -> None:
    conv = create_conversation(api, api.login("user0001"))["id"]
    app = migrate.app_dsn(api.endpoints.postgres_dsn)
    call = "SELECT * FROM testbed_post_message($1, $2, 'c', 'x'::bytea, 'd')"
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="not a participant"):
        sql(app, call, api.users["user0003"], uuid.UUID(conv))
    assert _written(api, conv) == (0, [], 0)
    # The owner passes, and app.user_id did not outlive the statement's transaction.
    row = sql(app, call, api.users["user0001"], uuid.UUID(conv))[0]
    assert (row["seq"], row["duplicate"]) == (1, False)
    assert sql(app, "SELECT current_setting('app.user_id', true)")[0][0] in (None, "")


def test_concurrent_posts_get_seqs_without_gaps_or_repeats(
    api: ApiStack, tokens: dict[str, str]
) -> None:
    conv = create_conversation(api, tokens["user0001"], "user0002")["id"]
    n, retries = 50, 10

    async def post_all() -> list[httpx.Response]:
        async with (
            httpx.AsyncClient(base_url=api.base_url, timeout=30, trust_env=False) as c,
        ):
            posts = [
                c.post(
                    "/v1/messages",
                    json=message_body(conv, b"m%d" % i),
                    headers={"Authorization": f"Bearer {tokens[('user0001', 'user0002')[i % 2]]}"},
                )
                for i in range(n)
            ]
            # The same client_msg_id posted concurrently: one message, the rest duplicates.
            same = message_body(conv, b"retried", "same")
            posts += [
                c.post(
                    "/v1/messages",
                    json=same,
                    headers={"Authorization": f"Bearer {tokens['user0001']}"},
                )
                for _ in range(retries)
            ]
            return list(await asyncio.gather(*posts))

    responses = asyncio.run(post_all())
    assert [r.status_code for r in responses] == [202] * (n + retries), [
        r.text for r in responses if r.status_code != 202
    ]
    bodies = [r.json() for r in responses]
    new = [b for b in bodies if not b["duplicate"]]
    assert sorted(b["seq"] for b in new) == list(range(1, n + 2))
    same = bodies[n:]
    assert len({(b["message_id"], b["seq"]) for b in same}) == 1
    assert sum(not b["duplicate"] for b in same) == 1
    assert _written(api, conv) == (n + 1, list(range(1, n + 2)), n + 1)


async def _waiting_on_a_lock(monitor: asyncpg.Connection, pid: int, timeout_s: float = 10) -> None:
    """Poll pg_stat_activity (a fresh snapshot per statement: autocommit) until backend
    ``pid`` waits on a lock; fail after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    query = "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1"
    while await monitor.fetchval(query, pid) != "Lock":
        assert loop.time() < deadline, f"backend {pid} never waited on a lock"
        await asyncio.sleep(0.02)


def test_racing_retry_rolls_back_and_the_second_call_answers_it(api: ApiStack) -> None:
    """B looks before A commits, then waits on A's row lock: its INSERT hits the
    client_msg_id key (the error the handler retries on), with no seq consumed."""
    conv = uuid.UUID(create_conversation(api, api.login("user0001"))["id"])
    me = api.users["user0001"]
    app = migrate.app_dsn(api.endpoints.postgres_dsn)
    call = "SELECT * FROM testbed_post_message($1, $2, 'race', 'x'::bytea, 'd')"

    async def race() -> tuple[asyncpg.Record, BaseException, asyncpg.Record]:
        a, b = await asyncpg.connect(app), await asyncpg.connect(app)
        monitor = await asyncpg.connect(api.endpoints.postgres_dsn)
        try:
            async with a.transaction():
                first = await a.fetchrow(call, me, conv)
                blocked = asyncio.ensure_future(b.fetchrow(call, me, conv))
                # PostgreSQL's own report, not a sleep: B's backend waits on a lock.
                await _waiting_on_a_lock(monitor, b.get_server_pid())
                assert not blocked.done()
            error = await asyncio.wait_for(asyncio.gather(blocked, return_exceptions=True), 5)
            return first, error[0], await b.fetchrow(call, me, conv)
        finally:
            await a.close()
            await b.close()
            await monitor.close()

    first, error, second = asyncio.run(race())
    assert isinstance(error, asyncpg.UniqueViolationError)
    assert error.constraint_name == "messages_conversation_id_client_msg_id_key"
    assert tuple(second) == (first["message_id"], 1, True)
    assert _written(api, str(conv)) == (1, [1], 1)
