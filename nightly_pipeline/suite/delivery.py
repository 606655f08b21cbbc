"""Delivery by message id: WebSocket listeners for every participant, and the verdict of
what was sent against what arrived (lost, duplicated, corrupted counted separately)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nightly_pipeline.suite.receipts import Receipts, Received


@dataclass
class Sent:
    conversation: str
    sha256: str
    sent_at: float  # perf_counter before the POST


@dataclass
class Listener:
    """One WebSocket per label in a child process (``suite.ws_listen``, its own GIL and
    core); its receipts are folded here, per (message, label), as they arrive.

    ``ws_disconnects`` counts sockets the server closed before the listener did.
    """

    ws_url: str
    tokens: Mapping[str, str]  # socket label -> access token
    received: Receipts = field(init=False)
    ws_disconnects: int = 0
    _ready: threading.Event = field(default_factory=threading.Event)
    _proc: subprocess.Popen[str] | None = None
    _thread: threading.Thread | None = None
    _error: str | None = None

    def __post_init__(self) -> None:
        self.received = Receipts(tuple(self.tokens))  # a column per socket, sized up front

    def __enter__(self) -> Listener:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "nightly_pipeline.suite.ws_listen"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps({"ws_url": self.ws_url, "tokens": dict(self.tokens)}))
        self._proc.stdin.write("\n")
        self._proc.stdin.flush()
        self._thread = threading.Thread(target=self._pump, name="ws-receipts", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            self._shutdown()
            raise RuntimeError(f"WebSocket listeners for {self.ws_url} not connected in 30 s")
        if self._error is not None:
            self._shutdown()
            raise RuntimeError(f"WebSocket listener failed: {self._error}")
        return self

    def __exit__(self, *exc: object) -> None:
        self._shutdown()

    def _shutdown(self) -> None:
        """Close the child's stdin (its stop signal), then collect its last receipts."""
        if self._proc is None:
            return
        with contextlib.suppress(OSError):
            self._proc.stdin.close()  # type: ignore[union-attr]
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def _pump(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            with contextlib.suppress(ValueError):
                self.on_record(json.loads(line))
        if not self._ready.is_set():  # the child died before it was ready
            self._error = self._error or f"exited with {self._proc.wait()}"
            self._ready.set()

    def on_record(self, record: list[Any]) -> None:
        """Fold one record of ``ws_listen``'s protocol."""
        kind = record[0]
        if kind == "m":
            _, label, message_id, digest, matches, at = record
            self.received.add(message_id, label, digest, matches, at)
        elif kind == "d":
            self.ws_disconnects += 1
        elif kind == "ready":
            self._ready.set()
        elif kind == "error":
            self._error = str(record[1])
            self._ready.set()

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
    received: Receipts | Mapping[tuple[str, str], Received],
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
