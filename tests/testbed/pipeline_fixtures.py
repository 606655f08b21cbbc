"""Helpers for the dispatcher/consumer tests: a stack per test (real PostgreSQL and Redis)
with the schema migrated, the two workers as ProcessSpecs, messages written the way the
API writes them (message + outbox row in one transaction), and a stand-in gateway that
subscribes to ``messaging:deliver`` and records what arrives."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import json
import os
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import psutil
import redis

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
from nightly_pipeline.testbed.stack.probes import free_port
from nightly_pipeline.testbed.stack.procs import ManagedProcess

DELIVER_CHANNEL = "messaging:deliver"
READY_PATTERN = r"READY (\d+)"


def wait_until(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.05)


def sql(dsn: str, query: str, *args: Any) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return parse_text(resp.read().decode())


def all_gone(pids: list[int], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any(_alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return not any(_alive(p) for p in pids)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


# ---------------------------------------------------------------- data, as the API writes it


@dataclass(frozen=True)
class Conversation:
    id: str
    participants: list[int]


@dataclass(frozen=True)
class Sent:
    message_id: str
    conversation_id: str
    sha256: str


def seed_conversations(dsn: str, n: int, participants: int) -> list[Conversation]:
    users = sorted(seed_users(dsn, n * participants, "pw", hash_n=2**10).values())
    convs = [
        Conversation(str(uuid.uuid4()), users[i * participants : (i + 1) * participants])
        for i in range(n)
    ]

    async def run() -> None:
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            async with conn.transaction():
                for c in convs:
                    await conn.execute(
                        "INSERT INTO conversations (id, owner_id, title) VALUES ($1, $2, 't')",
                        uuid.UUID(c.id),
                        c.participants[0],
                    )
                    await conn.executemany(
                        "INSERT INTO participants (conversation_id, user_id) VALUES ($1, $2)",
                        [(uuid.UUID(c.id), u) for u in c.participants],
                    )
        finally:
            await conn.close()

    asyncio.run(run())
    return convs


def send_messages(dsn: str, conv: Conversation, n: int, size: int = 512) -> list[Sent]:
    """``n`` messages, each with its outbox row in the same transaction (the API's write)."""
    payloads = [os.urandom(size) for _ in range(n)]
    sent = [Sent(str(uuid.uuid4()), conv.id, hashlib.sha256(p).hexdigest()) for p in payloads]

    async def run() -> None:
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            async with conn.transaction():
                last = await conn.fetchval(
                    "UPDATE conversations SET last_seq = last_seq + $2 WHERE id = $1"
                    " RETURNING last_seq",
                    uuid.UUID(conv.id),
                    n,
                )
                await conn.executemany(
                    "WITH m AS (INSERT INTO messages (id, conversation_id, sender_id,"
                    " client_msg_id, seq, ciphertext, sha256)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id)"
                    " INSERT INTO outbox (message_id) SELECT id FROM m",
                    [
                        (
                            uuid.UUID(s.message_id),
                            uuid.UUID(conv.id),
                            conv.participants[0],
                            f"c-{s.message_id}",
                            last - n + i + 1,
                            p,
                            s.sha256,
                        )
                        for i, (s, p) in enumerate(zip(sent, payloads, strict=True))
                    ],
                )
        finally:
            await conn.close()

    asyncio.run(run())
    return sent


# ---------------------------------------------------------------- the stand-in gateway


class Gateway:
    """Subscribes to ``messaging:deliver`` (so PUBLISH counts a receiver) and records."""

    def __init__(self, redis_url: str) -> None:
        self._client = redis.Redis.from_url(redis_url, socket_timeout=5)
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.received: list[dict[str, Any]] = []

    def __enter__(self) -> Gateway:
        self._pubsub.subscribe(DELIVER_CHANNEL)
        wait_until(
            lambda: self._client.pubsub_numsub(DELIVER_CHANNEL)[0][1] >= 1, 5, "subscription"
        )
        self._thread = threading.Thread(target=self._loop, name="gateway", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._pubsub.close()
        self._client.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            msg = self._pubsub.get_message(timeout=0.05)
            if msg is not None and msg["type"] == "message":
                with self._lock:
                    self.received.append(json.loads(msg["data"]))

    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(m["message"]["message_id"] for m in self.received)

    def has_all(self, sent: list[Sent]) -> bool:
        got = self.counts()
        return all(s.message_id in got for s in sent)

    def check_intact(self, sent: list[Sent], convs: list[Conversation]) -> None:
        """Each received message matches what was sent: hash of the bytes, recipients."""
        by_id = {s.message_id: s for s in sent}
        members = {c.id: c.participants for c in convs}
        with self._lock:
            received = list(self.received)
        for frame in received:
            msg = frame["message"]
            if msg["message_id"] not in by_id:
                continue
            expected = by_id[msg["message_id"]]
            raw = base64.b64decode(msg["ciphertext"])
            assert hashlib.sha256(raw).hexdigest() == msg["sha256"] == expected.sha256
            assert msg["conversation_id"] == expected.conversation_id
            assert sorted(frame["recipients"]) == members[expected.conversation_id]
            assert isinstance(msg["seq"], int) and isinstance(msg["created_at"], float)


# ---------------------------------------------------------------- the stack with the workers


@dataclass
class Pipeline:
    endpoints: Endpoints
    config: TestbedConfig  # as the workers see it (dispatcher's redis_url: the proxy)
    ports: dict[str, int]  # metrics port by process name
    config_dir: Path
    launcher: EmbeddedStack | None = None  # to kill and restart PostgreSQL or Redis

    @property
    def dsn(self) -> str:
        return self.endpoints.postgres_dsn

    def metrics(self, name: str) -> dict[str, float]:
        return scrape(self.ports[name])

    def metric(self, name: str, key: str) -> float:
        return self.metrics(name).get(key, 0.0)

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.endpoints.redis_url, socket_timeout=5)

    def spec(self, kind: str, name: str | None = None, redis_url: str | None = None) -> ProcessSpec:
        """A worker's ProcessSpec; ``name`` other than ``kind`` gets a fresh metrics port.
        ``redis_url``: instead of the default (the consumer direct, the dispatcher through
        the fault proxy)."""
        name = name or kind
        if name not in self.ports:
            self.ports[name] = free_port()
        config = self.config
        if redis_url is not None:
            config = dataclasses.replace(config, redis_url=redis_url)
        elif kind == "consumer":  # the consumer talks to Redis directly
            config = dataclasses.replace(config, redis_url=self.endpoints.redis_url)
        path = self.config_dir / f"{name}.json"
        path.write_text(config.to_json())
        argv = [sys.executable, "-m", f"nightly_pipeline.testbed.{kind}", "--config", str(path)]
        argv += ["--metrics-port", str(self.ports[name])]
        if kind == "consumer":
            argv += ["--name", name]
        return ProcessSpec(
            name, argv, ready=ReadyLine(READY_PATTERN), ready_timeout_s=20, stop_timeout_s=6
        )

    @contextlib.contextmanager
    def process(self, spec: ProcessSpec) -> Iterator[ManagedProcess]:
        """Run a spec outside the stack (a restart, or to see its exit code)."""
        proc = ManagedProcess(
            spec.name, spec.argv, self.endpoints.run_dir / "logs" / f"{spec.name}.log"
        )
        proc.start()
        try:
            proc.wait_line(READY_PATTERN, spec.ready_timeout_s)
            yield proc
        finally:
            survivors = proc.stop(spec.stop_timeout_s)
            assert not survivors, f"{spec.name} left {survivors}"


@contextlib.contextmanager
def pipeline_stack(
    tmp_path: Path,
    system_dir: Path,
    *,
    workers: tuple[str, ...] = ("dispatcher", "consumer"),
    **overrides: Any,
) -> Iterator[Pipeline]:
    """A fresh stack, migrated, with ``workers`` started by it (the dispatcher reaches Redis
    through the fault proxy); every pid is verified gone on exit."""
    holder: list[Pipeline] = []

    def factory(ep: Endpoints) -> list[ProcessSpec]:
        migrate.apply(ep.postgres_dsn)
        config = TestbedConfig(
            pg_dsn=migrate.app_dsn(ep.postgres_dsn), redis_url=ep.redis_proxy_url, **overrides
        )
        config_dir = ep.run_dir / "config"
        config_dir.mkdir(exist_ok=True)
        pipeline = Pipeline(ep, config, {}, config_dir)
        holder.append(pipeline)
        return [pipeline.spec(kind) for kind in workers]

    stack = EmbeddedStack(
        StackConfig(
            run_dir=tmp_path / "run",
            system_dir=system_dir,
            search_path=os.environ.get("PATH"),
            stop_timeout_s=5,
        ),
        processes=factory,
    )
    with stack as endpoints:
        pipeline = holder[0]
        pipeline.endpoints = endpoints
        pipeline.launcher = stack
        yield pipeline
    assert all_gone(list(endpoints.pids.values())), "a process of the stack survived"
