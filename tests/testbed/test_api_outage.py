"""The API while its dependencies fail, against real PostgreSQL and Redis (a stack per test),
and the fault knobs that break exactly that (Tests 10 and 11 must catch them):

- the PostgreSQL pool saturated by a held lock: bounded waits counted as
  ``storage_errors_total{type="TimeoutError"}``, the breaker opens, then closes once the
  lock is gone, same process, never more than ``pg_pool_size`` connections;
  ``pg_pool_timeout_s=None`` waits without bound, ``storage_breaker=False`` never opens;
- PostgreSQL and Redis killed (SIGKILL) and restarted on the same port: only 503s naming
  the dependency while down, ``/readyz`` names it, ``/healthz`` alive, recovery without a
  restart; ``exit_on_db_loss=True`` dies instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest

from nightly_pipeline.chaos import ProxyControl
from tests.testbed.api_fixtures import ApiStack, api_stack, create_conversation, message_body
from tests.testbed.outage import (
    Answers,
    alive,
    burst,
    burst_async,
    kill_postgres,
    kill_redis,
    log_problems,
    start_postgres,
    start_redis,
)
from tests.testbed.pipeline_fixtures import wait_until

pytestmark = pytest.mark.slow

# Short bounds so that a test sees every state in seconds.
FAST = {
    "breaker_failures": 3,
    "breaker_reset_s": 0.5,
    "pg_pool_timeout_s": 0.5,
    "pg_command_timeout_s": 1.0,
}
TIMEOUTS = 'storage_errors_total{type="TimeoutError"}'
DEADLINES = "http_request_deadline_total"
API_BACKENDS = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'testbed-api'"


def transitions(api: ApiStack, state: str, adapter: str = "pg") -> float:
    key = f'storage_circuit_breaker_transitions_total{{adapter="{adapter}",state="{state}"}}'
    return api.metric(key)


@asynccontextmanager
async def held_lock(dsn: str, table: str = "conversations") -> AsyncIterator[asyncpg.Connection]:
    """``LOCK TABLE`` held by another session: every API query on it waits."""
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        async with conn.transaction():
            await conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            yield conn
    finally:
        await conn.close()


async def _saturate(api: ApiStack, token: str, n: int) -> tuple[Answers, int]:
    """``n`` concurrent requests against a locked table; (answers, most API backends)."""
    dsn = api.endpoints.postgres_dsn
    monitor = await asyncpg.connect(dsn, timeout=5)
    peak = 0
    try:
        async with held_lock(dsn):
            task = asyncio.create_task(burst_async(api.base_url, token, "/v1/conversations", n, 30))
            while not task.done():
                peak = max(peak, await monitor.fetchval(API_BACKENDS))
                await asyncio.sleep(0.05)
            answers = await task
    finally:
        await monitor.close()
    return answers, peak


def test_pool_saturated_by_a_lock_times_out_opens_then_closes_the_breaker(
    tmp_path: Path, system_dir: Path
) -> None:
    with api_stack(tmp_path / "run", system_dir, **FAST) as api:
        token = api.login("user0001")
        with api.client(token) as c:
            assert c.get("/v1/conversations").status_code == 200
        before = api.metrics()

        answers, peak = asyncio.run(_saturate(api, token, n=60))
        assert answers.only(503), answers.statuses
        assert {b["dependency"] for b in answers.bodies} == {"postgres"}
        assert peak == api.config.pg_pool_size == 20  # bounded, and all of it was used
        after = api.metrics()
        assert after[TIMEOUTS] > before.get(TIMEOUTS, 0)
        assert after.get(DEADLINES, 0) == before.get(DEADLINES, 0)  # storage bounds answered
        assert transitions(api, "open") >= 1

        # The lock is gone: a trial after breaker_reset_s succeeds and closes it.
        with api.client(token) as c:
            wait_until(lambda: c.get("/v1/conversations").status_code == 200, 15, "recovery")
            assert c.get("/readyz").status_code == 200
        assert transitions(api, "closed") >= 1
        assert alive(api.pid) and api.launcher.is_running("api")
        assert log_problems(api.endpoints.logs["api"]) == []


def test_breaker_open_fails_fast_and_lets_one_trial_through(
    tmp_path: Path, system_dir: Path
) -> None:
    with (
        api_stack(tmp_path / "run", system_dir, **{**FAST, "breaker_reset_s": 5.0}) as api,
        ProxyControl(api.endpoints.postgres_proxy_control) as proxy,
    ):
        token = api.login("user0001")
        proxy.cut()
        try:
            with api.client(token) as c:
                wait_until(
                    lambda: "circuit breaker open" in c.get("/v1/conversations").text, 10, "open"
                )
            fast0 = api.metric('storage_errors_total{type="BreakerOpen"}')
            answers = burst(api.base_url, token, "/v1/conversations", n=30)
            assert answers.only(503), answers.statuses
            assert all("circuit breaker open" in b["message"] for b in answers.bodies)
            assert api.metric('storage_errors_total{type="BreakerOpen"}') == fast0 + 30
        finally:
            proxy.restore()
        with api.client(token) as c:
            wait_until(lambda: c.get("/v1/conversations").status_code == 200, 15, "recovery")
        assert transitions(api, "half_open") >= 1 and transitions(api, "closed") >= 1


def test_knob_pool_without_timeout_waits_without_bound(tmp_path: Path, system_dir: Path) -> None:
    """``pg_pool_timeout_s=None``: nothing times out, nothing is counted, the breaker never
    moves; requests wait for the lock however long it is held (Test 10 must fail).

    "However long" has no positive signal (a timeout that never fires reports nothing),
    so the lock is held a bounded 3 s, twice what the healthy bounds allow, and then the
    requests must still be waiting."""
    knob = {**FAST, "pg_pool_timeout_s": None, "http_request_timeout_s": None}
    with api_stack(tmp_path / "run", system_dir, **knob) as api:
        token = api.login("user0001")

        async def scenario() -> tuple[bool, Answers]:
            dsn = api.endpoints.postgres_dsn
            monitor = await asyncpg.connect(dsn, timeout=5)
            try:
                async with held_lock(dsn):
                    task = asyncio.create_task(
                        burst_async(api.base_url, token, "/v1/conversations", 30, 60)
                    )
                    deadline = time.monotonic() + 15
                    while await monitor.fetchval(API_BACKENDS) < 20:
                        assert time.monotonic() < deadline, "the pool never filled"
                        await asyncio.sleep(0.05)
                    # Twice what the healthy bounds allow (0.5 s pool + 1 s statement).
                    await asyncio.sleep(3.0)
                    still_waiting = not task.done()
                return still_waiting, await task
            finally:
                await monitor.close()

        still_waiting, answers = asyncio.run(scenario())
        assert still_waiting
        assert answers.only(200), answers.statuses  # served once the lock went away
        m = api.metrics()
        assert m.get(TIMEOUTS, 0) == 0
        assert not any(k.startswith("storage_circuit_breaker_transitions_total") for k in m)


def test_knob_no_breaker_never_opens(tmp_path: Path, system_dir: Path) -> None:
    """``storage_breaker=False``: timeouts are counted but no breaker transition ever
    happens, each request waits its own timeout (Test 10's breaker checks must fail)."""
    with api_stack(tmp_path / "run", system_dir, **{**FAST, "storage_breaker": False}) as api:
        token = api.login("user0001")
        answers, _ = asyncio.run(_saturate(api, token, n=60))
        assert answers.only(503), answers.statuses
        assert not any("circuit breaker" in b["message"] for b in answers.bodies)
        m = api.metrics()
        assert m[TIMEOUTS] > 0
        assert not any(k.startswith("storage_circuit_breaker_transitions_total") for k in m)
        with api.client(token) as c:
            assert c.get("/v1/conversations").status_code == 200


def _statuses_while_down(api: ApiStack, token: str, conv: str) -> Answers:
    """What the API answers on the routes that need the dependencies."""
    answers = burst(api.base_url, token, "/v1/conversations", n=30)
    with api.client(token) as c:
        for resp in (
            c.post("/v1/messages", json=message_body(conv, b"down")),
            c.post("/v1/auth/login", json={"username": "user0002", "password": "correct horse"}),
            c.get(f"/v1/conversations/{conv}/messages"),
        ):
            answers.statuses[str(resp.status_code)] += 1
            if resp.status_code >= 500:
                answers.bodies.append(resp.json())
    return answers


def test_postgres_then_redis_killed_and_restarted(tmp_path: Path, system_dir: Path) -> None:
    """Test 11's sequence on the API alone: kill -9 PostgreSQL, then Redis, start both
    again on the same ports. Only 503s naming the dependency while down, the same process
    throughout, and it serves again by itself (its pooled connections were all broken)."""
    with api_stack(tmp_path / "run", system_dir, **FAST) as api:
        assert api.launcher is not None
        token = api.login("user0001")
        conv = create_conversation(api, token, "user0002")["id"]
        with api.client(token) as c:  # fill the pool with connections to the old server
            assert c.post("/v1/messages", json=message_body(conv, b"up")).status_code == 202
        burst(api.base_url, token, "/v1/conversations", n=20)

        kill_postgres(api.launcher)
        down = _statuses_while_down(api, token, conv)
        assert down.only(503), down.statuses
        assert {b["dependency"] for b in down.bodies} == {"postgres"}
        with api.client() as c:
            ready = c.get("/readyz")
            assert ready.status_code == 503 and ready.json()["down"] == ["postgres"]
            assert c.get("/healthz").status_code == 200

        kill_redis(api.launcher)
        with api.client() as c:
            wait_until(lambda: "pubsub" in c.get("/readyz").json()["down"], 10, "pubsub down")
            ready = c.get("/readyz")
            assert ready.status_code == 503
            assert set(ready.json()["down"]) == {"postgres", "redis", "pubsub"}
        down = _statuses_while_down(api, token, conv)
        assert down.only(503), down.statuses

        start_postgres(api.launcher)  # Redis still down: only what needs Redis fails
        with api.client(token) as c:
            wait_until(lambda: c.get("/v1/conversations").status_code == 200, 30, "PostgreSQL")
            login = c.post(
                "/v1/auth/login", json={"username": "user0002", "password": "correct horse"}
            )
            assert login.status_code == 503 and login.json()["dependency"] == "redis"

        start_redis(api.launcher)
        with api.client(token) as c:
            wait_until(lambda: c.get("/readyz").status_code == 200, 30, "ready again")
            wait_until(lambda: _login_ok(api), 15, "logins again")
            assert c.post("/v1/messages", json=message_body(conv, b"back")).status_code == 202
        assert alive(api.pid) and api.launcher.is_running("api")
        assert transitions(api, "open") >= 1 and transitions(api, "closed") >= 1
        assert log_problems(api.endpoints.logs["api"]) == []


def _login_ok(api: ApiStack) -> bool:
    with api.client() as c:
        body = {"username": "user0003", "password": "correct horse"}
        return c.post("/v1/auth/login", json=body).status_code == 200


def test_knob_exit_on_db_loss_dies_with_postgres(tmp_path: Path, system_dir: Path) -> None:
    """``exit_on_db_loss=True``: the first refused connection ends the process; the
    client gets no 503 but a dropped connection (Test 11's crash checks must fail)."""
    with (
        api_stack(tmp_path / "run", system_dir, exit_on_db_loss=True) as api,
        ProxyControl(api.endpoints.postgres_proxy_control) as proxy,
    ):
        assert api.launcher is not None
        token = api.login("user0001")
        proxy.cut()
        try:
            with api.client(token) as c, pytest.raises(httpx.TransportError):
                c.get("/v1/conversations")
            wait_until(lambda: not api.launcher.is_running("api"), 15, "the API exited")
            assert "exit_on_db_loss is set: exiting" in api.endpoints.logs["api"].read_text()
        finally:
            proxy.restore()
