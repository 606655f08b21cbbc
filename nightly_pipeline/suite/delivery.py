"""Delivery by message id: WebSocket listeners for every participant, and the verdict of
what was sent against what arrived (lost, duplicated, corrupted counted separately)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
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
    """One WebSocket per label, in ``processes`` child processes (``suite.ws_listen``,
    each with its own GIL and core; labels dealt round-robin); their receipts are folded
    here, per (message, label), as they arrive.

    ``layout`` (conversation -> its labels) stores receipts per conversation (see
    ``Receipts``), for many sockets that each hear a few conversations.
    ``on_frame`` (``Receipts.add``'s arguments), when given, takes each message frame
    instead of ``received`` (a ``ledger.DeliveryLedger`` that settles as it goes).
    ``ws_disconnects`` counts sockets the server closed before the listener did; with
    ``ping_every_s`` every socket pings at that interval: ``ping_rtts_ms`` holds the round
    trips, ``missed_pongs`` the pings unanswered within the interval.
    """

    ws_url: str
    tokens: Mapping[str, str]  # socket label -> access token
    processes: int = 1
    ping_every_s: float | None = None
    layout: Mapping[str, Sequence[str]] | None = None
    on_frame: Callable[..., None] | None = None
    received: Receipts = field(init=False)
    ws_disconnects: int = 0
    disconnected: list[str] = field(default_factory=list)  # labels, in the order closed
    missed_pongs: int = 0
    ping_rtts_ms: list[float] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    _children: list[_Child] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.received = Receipts(tuple(self.tokens), self.layout)  # sized up front

    def __enter__(self) -> Listener:
        labels = list(self.tokens)
        shares = [labels[i :: self.processes] for i in range(max(1, self.processes))]
        try:
            for share in filter(None, shares):
                child = _Child(
                    {
                        "ws_url": self.ws_url,
                        "tokens": {lb: self.tokens[lb] for lb in share},
                        "ping_every_s": self.ping_every_s,
                    },
                    self.on_record,
                )
                self._children.append(child)
                self.pids.append(child.pid)
            deadline = time.monotonic() + 30.0 + len(labels) / 20.0  # ~5 ms a handshake
            for child in self._children:
                child.wait_ready(max(0.0, deadline - time.monotonic()), self.ws_url)
        except BaseException:
            self._shutdown()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._shutdown()

    def memory_per_socket_kib(self) -> float | None:
        """The listeners' RSS growth from before to after opening their sockets, per
        socket (what a socket costs the generator, the interpreter not counted)."""
        if not self.tokens or not self._children:
            return None
        return sum(c.socket_bytes for c in self._children) / len(self.tokens) / 1024.0

    def _shutdown(self) -> None:
        for child in self._children:
            child.close_stdin()
        for child in self._children:
            child.join()

    def on_record(self, record: list[Any]) -> None:
        """Fold one record of ``ws_listen``'s protocol (from any child's pump thread)."""
        kind = record[0]
        with self._lock:
            if kind == "m":
                _, label, message_id, digest, matches, at, *rest = record
                conversation = rest[0] if rest else None
                fold = self.received.add if self.on_frame is None else self.on_frame
                fold(message_id, label, digest, matches, at, conversation)
            elif kind == "p":
                self.ping_rtts_ms.append(float(record[2]))
            elif kind == "pm":
                self.missed_pongs += 1
            elif kind == "d":
                self.ws_disconnects += 1
                self.disconnected.append(str(record[1]))

    def delivered(self, expected: Mapping[str, tuple[str, ...]]) -> int:
        """How many of the expected (message, recipient) pairs have arrived."""
        with self._lock:
            return sum(
                1 for msg, users in expected.items() for u in users if (msg, u) in self.received
            )


class _Child:
    """One ``ws_listen`` process and the thread that reads its records."""

    def __init__(self, config: Mapping[str, Any], on_record: Callable[[list[Any]], None]) -> None:
        self.on_record = on_record
        self.ready = threading.Event()
        self.error: str | None = None
        self.socket_bytes = 0  # its RSS growth from before to after opening its sockets
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nightly_pipeline.suite.ws_listen"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.pid = self.proc.pid
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(config) + "\n")
        self.proc.stdin.flush()
        self.thread = threading.Thread(target=self._pump, name="ws-receipts", daemon=True)
        self.thread.start()

    def wait_ready(self, timeout_s: float, ws_url: str) -> None:
        if not self.ready.wait(timeout_s):
            raise RuntimeError(
                f"WebSocket listeners for {ws_url} not connected in {timeout_s:.0f} s"
            )
        if self.error is not None:
            raise RuntimeError(f"WebSocket listener failed: {self.error}")

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if record[0] == "ready":
                    if len(record) == 3:
                        self.socket_bytes = max(0, int(record[2]) - int(record[1]))
                    self.ready.set()
                elif record[0] == "error":
                    self.error = str(record[1])
                    self.ready.set()
                else:
                    self.on_record(record)
        if not self.ready.is_set():  # the child died before it was ready
            self.error = self.error or f"exited with {self.proc.wait()}"
            self.ready.set()

    def close_stdin(self) -> None:
        """The child's stop signal."""
        with contextlib.suppress(OSError):
            self.proc.stdin.close()  # type: ignore[union-attr]

    def join(self) -> None:
        """Its last receipts, then its exit (killed if it does not go)."""
        self.thread.join(timeout=10)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


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
    with the ciphertext that was sent. ``corrupted`` counts bad frames: those whose body
    does not match the digest they carry, and at least one per delivery whose bodies are
    not what was sent (a swapped body with its own digest counts too); a frame wrong
    both ways is one corrupted frame, not two."""
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
            corrupted += max(got.corrupted, 1 if got.digests - {s.sha256} else 0)
            e2e.append((got.first_at - s.sent_at) * 1000.0)
    return DeliveryVerdict(expected, lost, duplicated, corrupted, e2e)
