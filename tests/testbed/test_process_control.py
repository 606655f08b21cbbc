"""Process control of the embedded platform on real processes: kill -9 and restart each
process by the stack's handles (the pid changes, the service answers again at the same
address), pause and resume, clear errors, and a teardown that leaves nothing running
(after restarts and with processes paused)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest
import redis
from websockets.asyncio.client import connect

from nightly_pipeline.chaos import ProxyControl
from nightly_pipeline.chaos.backend import ChaosBackend
from nightly_pipeline.testbed.embedded import Platform, PlatformSettings, embedded_platform
from nightly_pipeline.testbed.stack import (
    ProcessNotRunningError,
    StackConfig,
    UnknownProcessError,
)
from tests.testbed.api_fixtures import message_body
from tests.testbed.pipeline_fixtures import all_gone, wait_until

pytestmark = pytest.mark.slow

NAMES = {"api", "dispatcher", "consumer", "postgres", "redis", "proxy-postgres", "proxy-redis"}
STREAM = "messaging:stream"
SETTINGS = PlatformSettings(users=4, password_hash_n=2**10)


def _stack_config(run_dir: Path, system_dir: Path, **changes: object) -> StackConfig:
    return StackConfig(
        run_dir=run_dir,
        system_dir=system_dir,
        stop_timeout_s=5,
        search_path=os.environ.get("PATH"),
        **changes,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, system_dir: Path) -> Iterator[Platform]:
    run_dir = tmp_path_factory.mktemp("control") / "run"
    with embedded_platform(_stack_config(run_dir, system_dir), SETTINGS) as up:
        yield up


@pytest.fixture(autouse=True)
def _everything_running(request: pytest.FixtureRequest) -> Iterator[None]:
    """A failed test must not leave a process dead or paused for the next one."""
    yield
    if "platform" not in request.fixturenames:
        return
    up: Platform = request.getfixturevalue("platform")
    for name in up.process_names():
        if up.is_running(name):
            up.signal(name, signal.SIGCONT)
        else:
            up.restart(name)


# ---------------------------------------------------------------- helpers


def _get(url: str) -> int:
    try:
        return httpx.get(url, timeout=5, trust_env=False).status_code
    except httpx.HTTPError:
        return 0


def _ready(up: Platform, timeout_s: float = 30) -> None:
    wait_until(lambda: _get(f"{up.base_url}/readyz") == 200, timeout_s, "/readyz 200")


def _send(up: Platform, path: str, body: dict, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = f"{up.base_url}{path}"
    return httpx.post(url, json=body, headers=headers, trust_env=False, timeout=10)


def _token(up: Platform, user: str) -> str:
    response = _send(up, "/v1/auth/login", {"username": user, "password": up.password})
    response.raise_for_status()
    return response.json()["access_token"]


def _conversation(up: Platform) -> tuple[str, str, str]:
    """(conversation id, sender's token, recipient's token)."""
    alice, bob = sorted(up.users)[:2]
    sender, recipient = _token(up, alice), _token(up, bob)
    created = _send(up, "/v1/conversations", {"title": "c", "participants": [bob]}, sender)
    assert created.status_code == 201, created.text
    return created.json()["id"], sender, recipient


def _post(up: Platform, conversation: str, token: str) -> str:
    response = _send(up, "/v1/messages", message_body(conversation, os.urandom(256)), token)
    assert response.status_code == 202, response.text
    return response.json()["message_id"]


def _receive(up: Platform, token: str, action: Callable[[], str], timeout_s: float = 30) -> None:
    """Open ``token``'s WebSocket, run ``action`` (it returns the id of the message to wait
    for), and wait until that message's frame arrives (bounded; on timeout the assertion
    says where the message got stuck)."""
    sent: list[str] = []

    async def scenario() -> None:
        headers = {"Authorization": f"Bearer {token}"}
        async with connect(up.ws_url, additional_headers=headers) as ws:
            sent.append(await asyncio.to_thread(action))
            async with asyncio.timeout(timeout_s):
                async for frame in ws:
                    data = json.loads(frame)
                    if data.get("type") == "message" and data["message_id"] == sent[0]:
                        return

    try:
        asyncio.run(scenario())
    except TimeoutError:
        raise AssertionError(f"not delivered within {timeout_s:g} s: {_where(up, sent)}") from None


def _where(up: Platform, sent: list[str]) -> dict[str, object]:
    """Where a message is stuck: outbox, stream, delivered marker, processes, /readyz."""
    state: dict[str, object] = {"running": {n: up.is_running(n) for n in up.process_names()}}
    with contextlib.suppress(Exception):
        state["readyz"] = httpx.get(f"{up.base_url}/readyz", timeout=5, trust_env=False).text
    if sent:
        message = uuid.UUID(sent[0])
        with contextlib.suppress(Exception):
            state["outbox_rows"] = _sql(
                up.endpoints.postgres_dsn,
                "SELECT count(*) FROM outbox WHERE message_id = $1",
                message,
            )
        with contextlib.suppress(Exception):
            state["in_stream"] = _in_stream(up, sent[0])
            with redis.Redis.from_url(up.endpoints.redis_url, socket_timeout=5) as client:
                state["delivered_marker"] = bool(client.exists(f"messaging:delivered:{sent[0]}"))
    return state


def _delivered(up: Platform) -> None:
    """A message posted now reaches the recipient's WebSocket: the whole pipeline works."""
    conversation, sender, recipient = _conversation(up)
    _receive(up, recipient, lambda: _post(up, conversation, sender))


def _resume(up: Platform, name: str, message_id: str) -> Callable[[], str]:
    def action() -> str:
        up.signal(name, signal.SIGCONT)
        return message_id

    return action


def _in_stream(up: Platform, message_id: str) -> bool:
    with redis.Redis.from_url(up.endpoints.redis_url, socket_timeout=5) as client:
        return any(
            fields.get(b"message_id") == message_id.encode()
            for _, fields in client.xrange(STREAM, count=100_000)
        )


def _sql(dsn: str, query: str, *args: object) -> object:
    async def run() -> object:
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            return await conn.fetchval(query, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


def _kill9(up: Platform, name: str) -> int:
    pid = up.signal(name, signal.SIGKILL)
    wait_until(lambda: not up.is_running(name), 10, f"{name} dead after SIGKILL")
    return pid


def _group(pid: int) -> set[int]:
    """Every live process in ``pid``'s process group (PostgreSQL's backends, ...)."""
    found = set()
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.info["pid"]) == pid:
                found.add(proc.info["pid"])
        except (ProcessLookupError, PermissionError):
            pass
    return found


def _commit_until_killed(up: Platform, name: str, write: Callable[[int], object]) -> list[int]:
    """Call ``write(i)`` for i = 1, 2, ... in a thread, kill -9 ``name`` once a few hundred
    writes are acknowledged, restart it; the acknowledged i."""
    acknowledged: list[int] = []

    def loop() -> None:
        with contextlib.suppress(Exception):  # the kill ends it
            for i in itertools.count(1):
                write(i)
                acknowledged.append(i)

    writer = threading.Thread(target=loop, daemon=True)
    writer.start()
    wait_until(lambda: len(acknowledged) >= 300, 30, "300 acknowledged writes")
    _kill9(up, name)
    writer.join(30)
    assert not writer.is_alive()
    up.restart(name)
    return acknowledged


# ---------------------------------------------------------------- one platform per module


def test_process_names_and_pids(platform: Platform) -> None:
    assert set(platform.process_names()) == NAMES
    assert platform.pids() == dict(platform.endpoints.pids)  # nothing restarted yet
    assert all(platform.is_running(name) for name in NAMES)
    assert isinstance(platform, ChaosBackend) and platform.target().chaos is platform
    ep = platform.endpoints
    assert platform.link_controls() == {
        "postgres": ep.postgres_proxy_control,
        "redis": ep.redis_proxy_control,
        "redis-dispatcher": ep.redis_proxy_control,  # one server, a proxy per process
        "redis-consumer": ep.redis_proxy_control,
    }
    assert platform.datastores() == {"postgres": ep.postgres_dsn, "redis": ep.redis_url}


@pytest.mark.parametrize("name", ["api", "dispatcher", "consumer"])
def test_kill9_and_restart_a_platform_process_keeps_its_address(
    platform: Platform, name: str
) -> None:
    old = _kill9(platform, name)
    if name == "api":
        assert _get(f"{platform.base_url}/healthz") == 0  # nothing listens any more
    new = platform.restart(name)
    assert new != old and platform.pids()[name] == new and platform.is_running(name)
    assert platform.target().pids[name] == new  # the suite samples the new process
    _ready(platform)
    assert _get(platform.metrics_urls[name]) == 200  # same URL as before the kill
    on_disk = json.loads((platform.endpoints.run_dir / "endpoints.json").read_text())
    assert on_disk["pids"][name] == new
    _delivered(platform)


def test_kill9_and_restart_postgres_keeps_committed_rows(platform: Platform) -> None:
    conversation, sender, _ = _conversation(platform)
    message_id = _post(platform, conversation, sender)  # 202: committed
    backends = _group(platform.pids()["postgres"])
    old = _kill9(platform, "postgres")
    assert all_gone(list(backends)), "kill -9 reaches the whole server, backends included"
    new = platform.restart("postgres")  # crash recovery on the same data directory
    assert new != old
    dsn = platform.endpoints.postgres_dsn  # same port
    found = _sql(dsn, "SELECT count(*) FROM messages WHERE id = $1", uuid.UUID(message_id))
    assert found == 1
    _ready(platform)  # the API's pool reconnects through the proxy
    _delivered(platform)


def test_kill9_of_postgres_during_commits_loses_no_acknowledged_commit(
    platform: Platform,
) -> None:
    dsn = platform.endpoints.postgres_dsn
    _sql(dsn, "CREATE TABLE crash_probe (id int PRIMARY KEY, pad text)")
    loop = asyncio.new_event_loop()  # run by the writer thread, one statement at a time
    conn = loop.run_until_complete(asyncpg.connect(dsn, timeout=5))

    def insert(i: int) -> None:
        sql = "INSERT INTO crash_probe VALUES ($1, repeat('x', 500))"
        loop.run_until_complete(conn.execute(sql, i))

    try:
        acknowledged = _commit_until_killed(platform, "postgres", insert)
    finally:
        conn.terminate()
        loop.close()
    present = _sql(dsn, "SELECT array_agg(id) FROM crash_probe")
    assert not set(acknowledged) - set(present or [])  # synchronous_commit=on
    _ready(platform)


def test_kill9_of_redis_during_writes_loses_no_acknowledged_write(platform: Platform) -> None:
    client = redis.Redis.from_url(platform.endpoints.redis_url, socket_timeout=5)
    try:
        acknowledged = _commit_until_killed(
            platform, "redis", lambda i: client.xadd("crash_probe", {"i": i}, id=f"{i}-0")
        )
    finally:
        client.close()
    with redis.Redis.from_url(platform.endpoints.redis_url, socket_timeout=5) as fresh:
        present = {int(fields[b"i"]) for _, fields in fresh.xrange("crash_probe")}
        fresh.delete("crash_probe")
    assert not set(acknowledged) - present  # appendonly yes, appendfsync always
    _ready(platform)


def test_kill9_and_restart_redis_keeps_the_stream(platform: Platform) -> None:
    conversation, sender, recipient = _conversation(platform)
    platform.signal("consumer", signal.SIGSTOP)  # hold the message in the stream
    try:
        consumer = psutil.Process(platform.pids()["consumer"])
        wait_until(lambda: consumer.status() == psutil.STATUS_STOPPED, 10, "consumer paused")
        assert platform.is_running("consumer")  # paused is running
        message_id = _post(platform, conversation, sender)
        wait_until(lambda: _in_stream(platform, message_id), 30, "the dispatcher's XADD")
        old = _kill9(platform, "redis")
        new = platform.restart("redis")  # the append-only file replayed, same port
        assert new != old
        assert _in_stream(platform, message_id), "an acknowledged XADD was lost"
        _ready(platform)  # the gateway subscribed again
        _receive(platform, recipient, _resume(platform, "consumer", message_id))
    finally:
        platform.signal("consumer", signal.SIGCONT)
    assert consumer.status() != psutil.STATUS_STOPPED


def test_pause_and_resume_the_consumer(platform: Platform) -> None:
    conversation, sender, recipient = _conversation(platform)
    pid = platform.signal("consumer", signal.SIGSTOP)
    consumer = psutil.Process(pid)
    try:
        wait_until(lambda: consumer.status() == psutil.STATUS_STOPPED, 10, "consumer paused")
        message_id = _post(platform, conversation, sender)
        wait_until(lambda: _in_stream(platform, message_id), 30, "the dispatcher's XADD")
        with redis.Redis.from_url(platform.endpoints.redis_url, socket_timeout=5) as client:
            assert not client.exists(f"messaging:delivered:{message_id}")  # nobody consumed it
        _receive(platform, recipient, _resume(platform, "consumer", message_id))
    finally:
        platform.signal("consumer", signal.SIGCONT)
    assert platform.pids()["consumer"] == pid  # the same process, resumed


def test_restart_of_a_running_process_and_the_proxies(platform: Platform) -> None:
    old = platform.pids()
    for name in ("proxy-postgres", "proxy-redis", "consumer"):  # alive: stopped gracefully
        assert platform.restart(name) != old[name]
    ep = platform.endpoints  # the proxies' listen and control addresses are unchanged
    assert _sql(ep.postgres_proxy_dsn, "SELECT 1") == 1
    with redis.Redis.from_url(ep.redis_proxy_url, socket_timeout=5) as client:
        assert client.ping()
    for name, control in platform.link_controls().items():
        with ProxyControl(control, proxy=name) as ctl:
            assert ctl.status()["cut"] is False  # the per-process proxies came back too
    _ready(platform)
    _delivered(platform)


def test_signal_to_a_process_that_is_not_running_is_a_clear_error(platform: Platform) -> None:
    _kill9(platform, "dispatcher")
    with pytest.raises(ProcessNotRunningError, match=r"dispatcher is not running.*SIGKILL"):
        platform.signal("dispatcher", signal.SIGTERM)
    with pytest.raises(ProcessNotRunningError, match=r"restart\('dispatcher'\)"):
        platform.signal("dispatcher", signal.SIGSTOP)
    with pytest.raises(UnknownProcessError, match=r"'nginx'.*api"):
        platform.signal("nginx", signal.SIGTERM)
    with pytest.raises(UnknownProcessError):
        platform.restart("nginx")
    platform.restart("dispatcher")
    assert platform.is_running("dispatcher")


# ---------------------------------------------------------------- teardown


@pytest.mark.parametrize("ending", ["clean", "ctrl-c"])
def test_teardown_stops_restarted_and_paused_processes(
    tmp_path: Path, system_dir: Path, ending: str
) -> None:
    config = _stack_config(tmp_path / "run", system_dir, keep_data=True)
    expected = pytest.raises(KeyboardInterrupt) if ending == "ctrl-c" else contextlib.nullcontext()
    with expected, embedded_platform(config, SETTINGS) as up:
        first = dict(up.pids())
        up.restart("consumer")
        _kill9(up, "api")
        up.restart("api")
        up.signal("dispatcher", signal.SIGSTOP)
        up.signal("postgres", signal.SIGSTOP)  # the postmaster and every backend
        current = up.pids()
        assert current["consumer"] != first["consumer"] and current["api"] != first["api"]
        everything = set(first.values()) | {p for pid in current.values() for p in _group(pid)}
        dispatcher_log = up.endpoints.logs["dispatcher"]
        data_dir = up.endpoints.postgres_data_dir
        if ending == "ctrl-c":
            raise KeyboardInterrupt
    assert not up.process_names()  # torn down: nothing left to control
    assert all_gone(sorted(everything)), "a process of the stack survived teardown"
    # Both paused processes were resumed and stopped gracefully, not killed at the timeout:
    assert "stop signal: draining" in dispatcher_log.read_text()
    assert not (data_dir / "postmaster.pid").exists()  # PostgreSQL shut down cleanly
    with pytest.raises(UnknownProcessError, match="not running"):
        up.signal("api", signal.SIGTERM)
