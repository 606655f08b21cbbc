"""Delivery by message id: WebSocket listeners for every participant, and the verdict of
what was sent against what arrived (lost, duplicated, corrupted counted separately)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import threading
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError


@dataclass
class Sent:
    conversation: str
    sha256: str
    sent_at: float  # perf_counter before the POST


@dataclass
class Received:
    count: int = 0
    corrupted: int = 0  # frames whose ciphertext does not match the frame's own sha256
    first_at: float = 0.0
    digests: set[str] = field(default_factory=set)  # the sha256 of every frame's ciphertext


@dataclass
class Listener:
    """One WebSocket per user on a thread of its own; frames counted per (message, user).

    ``ws_disconnects`` counts sockets the server closed before the listener did.
    """

    ws_url: str
    tokens: Mapping[str, str]  # username -> access token
    received: dict[tuple[str, str], Received] = field(default_factory=lambda: defaultdict(Received))
    ws_disconnects: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _ready: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _error: BaseException | None = None

    def __enter__(self) -> Listener:
        self._thread = threading.Thread(target=self._main, name="ws-listener", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError(f"WebSocket listeners for {self.ws_url} not connected in 30 s")
        if self._error is not None:
            raise RuntimeError(f"WebSocket listener failed: {self._error}") from self._error
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _main(self) -> None:
        try:
            asyncio.run(self._listen())
        except BaseException as exc:  # reported to the caller by __enter__/wait
            self._error = exc
            self._ready.set()

    async def _listen(self) -> None:
        sockets = {}
        for user, token in self.tokens.items():
            sockets[user] = await connect(
                self.ws_url, additional_headers={"Authorization": f"Bearer {token}"}, proxy=None
            )
        readers = [asyncio.create_task(self._read(user, ws)) for user, ws in sockets.items()]
        self._ready.set()
        while not self._stop.is_set():
            await asyncio.sleep(0.05)
        for ws in sockets.values():
            await ws.close()
        for task in readers:
            task.cancel()

    async def _read(self, user: str, ws) -> None:
        try:
            async for frame in ws:
                self._count(user, frame, time.perf_counter())
        except ConnectionClosedError:  # 1006 (no close frame), 1011, 1013 overload, ...
            pass
        if not self._stop.is_set():  # the server ended it, cleanly or not
            self.ws_disconnects += 1

    def _count(self, user: str, frame: str | bytes, now: float) -> None:
        data = json.loads(frame)
        if data.get("type") != "message":
            return
        entry = self.received[(data["message_id"], user)]
        entry.count += 1
        if entry.count == 1:
            entry.first_at = now
        digest = hashlib.sha256(base64.b64decode(data["ciphertext"])).hexdigest()
        entry.digests.add(digest)
        if digest != data.get("sha256"):
            entry.corrupted += 1

    def delivered(self, expected: Mapping[str, tuple[str, ...]]) -> int:
        """How many of the expected (message, recipient) pairs have arrived."""
        return sum(1 for msg, users in expected.items() for u in users if (msg, u) in self.received)


@dataclass(frozen=True)
class DeliveryVerdict:
    expected: int
    lost: int
    duplicated: int
    corrupted: int
    e2e_ms: list[float]


def judge_delivery(
    sent: Mapping[str, Sent],
    recipients: Mapping[str, tuple[str, ...]],  # conversation -> usernames
    received: Mapping[tuple[str, str], Received],
) -> DeliveryVerdict:
    """Every sent message must reach every participant of its conversation exactly once,
    with the ciphertext that was sent: a frame is corrupted when its ciphertext does not
    hash to the digest we sent (so swapped bodies count, whatever the frame claims)."""
    lost = duplicated = corrupted = expected = 0
    e2e = []
    for message_id, s in sent.items():
        for user in recipients[s.conversation]:
            expected += 1
            got = received.get((message_id, user))
            if got is None:
                lost += 1
                continue
            duplicated += got.count - 1
            corrupted += got.corrupted + (1 if got.digests - {s.sha256} else 0)
            e2e.append((got.first_at - s.sent_at) * 1000.0)
    return DeliveryVerdict(expected, lost, duplicated, corrupted, e2e)
