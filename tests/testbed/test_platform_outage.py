"""The whole platform through Test 11's sequence: messages posted over HTTP, PostgreSQL
killed (kill -9), then Redis, both started again. While down the API answers 503 only and
``/readyz`` names what is down; no process of the platform restarts; afterwards every
message that was acknowledged (202) reaches every participant's WebSocket once, intact."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import signal
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from nightly_pipeline.testbed.embedded import Platform, PlatformSettings, embedded_platform
from nightly_pipeline.testbed.stack import StackConfig
from tests.testbed.outage import log_problems

pytestmark = pytest.mark.slow
PLATFORM = ("api", "dispatcher", "consumer")
FAST = {"breaker_failures": 3, "breaker_reset_s": 0.5}


def _body(conv: str, n: int) -> tuple[dict[str, str], str]:
    payload = os.urandom(512)
    digest = hashlib.sha256(payload).hexdigest()
    body = {
        "conversation_id": conv,
        "client_msg_id": f"m{n}",
        "ciphertext": base64.b64encode(payload).decode(),
        "sha256": digest,
    }
    return body, digest


class Run:
    """Posts, what was acknowledged, and what every socket received."""

    def __init__(self, platform: Platform, client: httpx.AsyncClient, conv: str) -> None:
        self.platform = platform
        self.client = client
        self.conv = conv
        self.acked: dict[str, str] = {}  # message_id -> sha256
        self.statuses: Counter[int] = Counter()
        self.received: dict[str, list[dict]] = {}
        self._n = 0

    async def post(self, count: int) -> Counter[int]:
        statuses: Counter[int] = Counter()
        for _ in range(count):
            self._n += 1
            body, digest = _body(self.conv, self._n)
            resp = await self.client.post("/v1/messages", json=body)
            statuses[resp.status_code] += 1
            if resp.status_code == 202:
                self.acked[resp.json()["message_id"]] = digest
        self.statuses.update(statuses)
        return statuses

    async def read(self, user: str, ws: ClientConnection) -> None:
        frames = self.received.setdefault(user, [])
        async for raw in ws:
            frame = json.loads(raw)
            if frame.get("type") == "message":
                frames.append(frame)

    async def all_delivered(self) -> bool:
        return all(
            set(self.acked) <= {f["message_id"] for f in frames}
            for frames in self.received.values()
        )

    def down(self, name: str) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            resp = await self.client.get("/readyz")
            return resp.status_code == 503 and name in resp.json()["down"]

        return check

    async def ready(self) -> bool:
        return (await self.client.get("/readyz")).status_code == 200

    async def accepted_again(self) -> bool:
        return 202 in await self.post(1)


async def _until(check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await check():
        assert loop.time() < deadline, f"timed out after {timeout_s:g} s waiting for {what}"
        await asyncio.sleep(0.1)


async def _scenario(platform: Platform) -> Run:
    users = sorted(platform.users)[:3]
    async with httpx.AsyncClient(base_url=platform.base_url, trust_env=False, timeout=30) as anon:
        tokens = {}
        for user in users:
            login = {"username": user, "password": platform.password}
            tokens[user] = (await anon.post("/v1/auth/login", json=login)).json()["access_token"]
    auth = {"Authorization": f"Bearer {tokens[users[0]]}"}
    async with httpx.AsyncClient(
        base_url=platform.base_url, headers=auth, trust_env=False, timeout=30
    ) as client:
        created = await client.post("/v1/conversations", json={"participants": users[1:]})
        run = Run(platform, client, created.json()["id"])
        sockets = {
            u: await connect(platform.ws_url, additional_headers={"Authorization": f"Bearer {t}"})
            for u, t in tokens.items()
        }
        readers = [asyncio.create_task(run.read(u, ws)) for u, ws in sockets.items()]
        try:
            assert (await run.post(30)) == {202: 30}

            await asyncio.to_thread(platform.signal, "postgres", signal.SIGKILL)
            await _until(run.down("postgres"), 10, "postgres down")
            assert set(await run.post(10)) == {503}

            await asyncio.to_thread(platform.signal, "redis", signal.SIGKILL)
            await _until(run.down("redis"), 10, "redis down")
            assert set(await run.post(5)) == {503}

            await asyncio.to_thread(platform.restart, "postgres")
            await asyncio.to_thread(platform.restart, "redis")
            await _until(run.accepted_again, 60, "a 202 again")
            await run.post(30)
            await _until(run.ready, 60, "/readyz 200")
            await _until(run.all_delivered, 60, "every acknowledged message on every socket")
            # Not a sleep: a sentinel posted after is the signal that nothing posted before
            # is still on its way (one Redis publishes in order, each socket is written in
            # order), so a duplicate of an earlier message would have arrived by then.
            assert await run.post(1) == {202: 1}
            await _until(run.all_delivered, 60, "the sentinel on every socket")
        finally:
            for ws in sockets.values():
                await ws.close()
            for task in readers:
                task.cancel()
    return run


def test_kill_postgres_then_redis_restore_both(tmp_path: Path, system_dir: Path) -> None:
    stack = StackConfig(
        run_dir=tmp_path / "run",
        system_dir=system_dir,
        stop_timeout_s=5,
        search_path=os.environ.get("PATH"),
    )
    settings = PlatformSettings(users=3, password_hash_n=2**10, overrides=FAST)
    with embedded_platform(stack, settings) as platform:
        before = {name: platform.pids()[name] for name in PLATFORM}
        run = asyncio.run(_scenario(platform))
        after = {name: platform.pids()[name] for name in PLATFORM}
        assert all(platform.is_running(name) for name in PLATFORM)
        problems = {n: log_problems(platform.endpoints.logs[n]) for n in PLATFORM}

    assert after == before  # nothing crashed or was restarted
    assert set(run.statuses) == {202, 503}, run.statuses  # never another status
    assert len(run.acked) >= 60
    for user, frames in run.received.items():
        ids = Counter(f["message_id"] for f in frames)
        assert set(ids) == set(run.acked), user
        assert set(ids.values()) == {1}, f"{user} got duplicates"
        for frame in frames:
            digest = hashlib.sha256(base64.b64decode(frame["ciphertext"])).hexdigest()
            assert digest == frame["sha256"] == run.acked[frame["message_id"]]
    assert problems == {n: [] for n in PLATFORM}
