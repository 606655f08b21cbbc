"""The whole platform on the embedded stack: a message posted over HTTP reaches every
participant's WebSocket exactly once, intact; nothing of the stack survives teardown."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable

import httpx
import psutil
import pytest
from websockets.asyncio.client import connect

from nightly_pipeline.testbed.embedded import PlatformSettings, embedded_platform
from nightly_pipeline.testbed.stack import StackConfig

MESSAGES = 30


@pytest.fixture(scope="module")
def platform(tmp_path_factory, system_dir):
    stack = StackConfig(
        run_dir=tmp_path_factory.mktemp("platform") / "run",
        system_dir=system_dir,
        stop_timeout_s=5,
        search_path=os.environ.get("PATH"),
    )
    with embedded_platform(stack, PlatformSettings(users=4, password_hash_n=2**10)) as up:
        yield up
    pids = list(up.endpoints.pids.values())
    assert len(pids) == 7  # postgres, redis, 2 proxies, api, dispatcher, consumer
    alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    assert not alive, f"processes of the stack survived teardown: {alive}"


def _login(platform, user: str) -> str:
    response = httpx.post(
        f"{platform.base_url}/v1/auth/login",
        json={"username": user, "password": platform.password},
        trust_env=False,
    )
    response.raise_for_status()
    return response.json()["access_token"]


async def _until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        assert loop.time() < deadline, f"timed out after {timeout_s:g} s waiting for {what}"
        await asyncio.sleep(0.05)


async def _deliveries(
    platform, tokens: dict[str, str], conversation: str, sender_token: str, members: list[str]
):
    """Open one socket per user, post MESSAGES messages as the sender, then a sentinel;
    collect frames until every member has the sentinel. That is the positive signal that
    nothing posted before it is still on its way: one Redis publishes in order and each
    socket is written in order, so a duplicate of an earlier message, had the platform
    published one, has arrived by then."""
    received: dict[str, list[dict]] = {user: [] for user in tokens}
    sockets = {
        user: await connect(platform.ws_url, additional_headers={"Authorization": f"Bearer {t}"})
        for user, t in tokens.items()
    }

    async def read(user: str) -> None:
        async for frame in sockets[user]:
            data = json.loads(frame)
            if data.get("type") == "message":
                received[user].append(data)

    readers = [asyncio.create_task(read(user)) for user in sockets]
    sent = {}
    async with httpx.AsyncClient(
        base_url=platform.base_url,
        headers={"Authorization": f"Bearer {sender_token}"},
        trust_env=False,
    ) as client:

        async def post(client_msg_id: str) -> str:
            payload = os.urandom(1024)
            body = {
                "conversation_id": conversation,
                "client_msg_id": client_msg_id,
                "ciphertext": base64.b64encode(payload).decode(),
                "sha256": hashlib.sha256(payload).hexdigest(),
            }
            response = await client.post("/v1/messages", json=body)
            assert response.status_code == 202, response.text
            sent[response.json()["message_id"]] = body["sha256"]
            return response.json()["message_id"]

        for n in range(MESSAGES):
            await post(f"m{n}")
        await _until(
            lambda: all(len(received[u]) >= MESSAGES for u in members), 30, "every message"
        )
        sentinel = await post("sentinel")
    await _until(
        lambda: all(any(f["message_id"] == sentinel for f in received[u]) for u in members),
        30,
        "the sentinel on every member's socket",
    )
    for ws in sockets.values():
        await ws.close()
    for task in readers:
        task.cancel()
    return sent, received


def test_a_posted_message_reaches_every_participant_once_intact(platform) -> None:
    alice, bob, carol, dave = sorted(platform.users)
    tokens = {user: _login(platform, user) for user in (alice, bob, carol, dave)}
    created = httpx.post(
        f"{platform.base_url}/v1/conversations",
        json={"title": "e2e", "participants": [bob, carol]},
        headers={"Authorization": f"Bearer {tokens[alice]}"},
        trust_env=False,
    )
    assert created.status_code == 201, created.text
    conversation = created.json()["id"]
    members = [alice, bob, carol]
    sent, received = asyncio.run(
        _deliveries(platform, tokens, conversation, tokens[alice], members)
    )
    assert len(sent) == MESSAGES + 1  # and the sentinel
    for user in (alice, bob, carol):
        ids = Counter(frame["message_id"] for frame in received[user])
        assert set(ids) == set(sent), f"{user} missed messages"
        assert max(ids.values()) == 1, f"{user} got duplicates"
        for frame in received[user]:
            digest = hashlib.sha256(base64.b64decode(frame["ciphertext"])).hexdigest()
            assert digest == frame["sha256"] == sent[frame["message_id"]]
    assert received[dave] == []  # not a participant: nothing leaks


def test_versions_and_metrics_of_every_process_are_reachable(platform) -> None:
    assert platform.versions["postgres"].startswith("16")
    assert httpx.get(f"{platform.base_url}/version", trust_env=False).json()["version"]
    for name, url in platform.metrics_urls.items():
        response = httpx.get(url, trust_env=False)
        assert response.status_code == 200, name
