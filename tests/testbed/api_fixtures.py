"""The API process on a real stack: PostgreSQL and Redis by the launcher, the schema
migrated and users seeded by the process factory, the API started as a ProcessSpec that
connects through the fault proxies (so a test can cut PostgreSQL or Redis)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import re
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from nightly_pipeline.testbed import migrate
from nightly_pipeline.testbed.config import TestbedConfig
from nightly_pipeline.testbed.metrics import parse_text
from nightly_pipeline.testbed.seed import seed_users
from nightly_pipeline.testbed.stack import (
    EmbeddedStack,
    Endpoints,
    ProcessSpec,
    ReadyLine,
    StackConfig,
)

PASSWORD = "correct horse"
READY = r"READY (\d+)"


@dataclass(frozen=True)
class ApiStack:
    endpoints: Endpoints
    config: TestbedConfig
    base_url: str
    ws_url: str
    users: dict[str, int]  # username -> id
    launcher: EmbeddedStack | None = None  # to kill and restart PostgreSQL or Redis

    @property
    def pid(self) -> int:
        return self.endpoints.pids["api"]

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=10, trust_env=False)

    def login(self, username: str, password: str = PASSWORD) -> str:
        with self.client() as c:
            resp = c.post("/v1/auth/login", json={"username": username, "password": password})
        resp.raise_for_status()
        return resp.json()["access_token"]

    def metrics(self) -> dict[str, float]:
        with self.client() as c:
            return parse_text(c.get("/metrics").text)

    def metric(self, key: str) -> float:
        return self.metrics().get(key, 0.0)


def message_body(conv: str, payload: bytes, client_msg_id: str | None = None) -> dict[str, Any]:
    """A ``POST /v1/messages`` body carrying ``payload`` and its sha256."""
    return {
        "conversation_id": conv,
        "client_msg_id": client_msg_id or uuid.uuid4().hex,
        "ciphertext": base64.b64encode(payload).decode(),
        "sha256": hashlib.sha256(payload).hexdigest(),
    }


def create_conversation(
    api: ApiStack, token: str, *others: str, title: str = "t"
) -> dict[str, Any]:
    """A conversation owned by ``token``'s user with ``others``; its JSON."""
    with api.client(token) as c:
        resp = c.post("/v1/conversations", json={"title": title, "participants": list(others)})
    assert resp.status_code == 201, resp.text
    return resp.json()


def sql(dsn: str, query: str, *args: Any, user_id: int | None = None) -> list[asyncpg.Record]:
    """Run one query (in a transaction with ``app.user_id`` set when ``user_id`` is given)."""

    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            async with conn.transaction():
                if user_id is not None:
                    await conn.execute("SELECT set_config('app.user_id', $1, true)", str(user_id))
                return await conn.fetch(query, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


@contextlib.contextmanager
def api_stack(
    run_dir: Path, system_dir: Path, n_users: int = 4, **overrides: Any
) -> Iterator[ApiStack]:
    """The stack with the API up; ``overrides`` go into the API's TestbedConfig."""
    seeded: dict[str, Any] = {}

    def processes(ep: Endpoints) -> list[ProcessSpec]:
        migrate.apply(ep.postgres_dsn)
        seeded["users"] = seed_users(ep.postgres_dsn, n_users, PASSWORD, hash_n=2**10)
        cfg = TestbedConfig(
            pg_dsn=migrate.app_dsn(ep.postgres_proxy_dsn),
            redis_url=ep.redis_proxy_url,
            password_hash_n=2**10,
        )
        cfg = replace(cfg, **overrides)
        seeded["config"] = cfg
        path = ep.run_dir / "api.json"
        path.write_text(cfg.to_json())
        argv = [sys.executable, "-m", "nightly_pipeline.testbed.api", "--config", str(path)]
        return [ProcessSpec("api", argv, ready=ReadyLine(READY), stop_timeout_s=6)]

    config = StackConfig(
        run_dir=run_dir, system_dir=system_dir, stop_timeout_s=5, search_path=os.environ.get("PATH")
    )
    launcher = EmbeddedStack(config, processes=processes)
    with launcher as ep:
        match = re.search(READY, ep.ready_lines["api"])
        assert match is not None
        port = int(match.group(1))
        yield ApiStack(
            endpoints=ep,
            config=seeded["config"],
            base_url=f"http://127.0.0.1:{port}",
            ws_url=f"ws://127.0.0.1:{port}/v1/ws",
            users=seeded["users"],
            launcher=launcher,
        )
