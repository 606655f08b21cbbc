"""The shared messaging load without a platform: the user/socket layout, the listener's
receipts (disconnects, duplicates, corruption) and its child process's errors."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil
import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosedError
from websockets.frames import Close

from nightly_pipeline.suite.client import Conversation
from nightly_pipeline.suite.delivery import Listener
from nightly_pipeline.suite.messaging_load import (
    MessagingKnobs,
    drain,
    layout,
    recipients_by_socket,
    socket_labels,
)
from nightly_pipeline.suite.ws_listen import read_socket, receipt_of

USERS = [f"u{n}" for n in range(20)]


def test_conversations_ring_over_the_pool() -> None:
    plan = layout(USERS, MessagingKnobs(1024, conversations=4, participants=3, pool=3))
    assert plan == [
        ("u0", ("u1", "u2")),
        ("u1", ("u2", "u0")),
        ("u2", ("u0", "u1")),
        ("u0", ("u1", "u2")),
    ]


@pytest.mark.parametrize(
    ("participants", "sockets", "expected"),
    [
        (["a", "b"], None, {"a#0": "a", "b#0": "b"}),
        (["a", "b"], 5, {"a#0": "a", "b#0": "b", "a#1": "a", "b#1": "b", "a#2": "a"}),
        (["a", "b", "c"], 1, {"a#0": "a"}),
    ],
)
def test_sockets_are_spread_over_the_participants_as_devices(
    participants: list[str], sockets: int | None, expected: dict[str, str]
) -> None:
    assert socket_labels(participants, sockets) == expected


def test_fifty_sockets_over_ten_users_are_five_devices_each() -> None:
    users = USERS[:10]
    sockets = socket_labels(users, 50)
    assert len(sockets) == 50
    assert all(list(sockets.values()).count(u) == 5 for u in users)
    conversation = Conversation("c1", "u0", ("u0", "u1", "u2"))
    assert len(recipients_by_socket([conversation], sockets)["c1"]) == 15


class _Stats:
    """A load result's recorder with nothing recorded (the drain reads its error counts)."""

    recorder = type("Recorder", (), {"stats": staticmethod(lambda _name: {})})()


@pytest.mark.parametrize("held", [False, True])
def test_the_drain_does_not_call_a_stall_a_loss_while_the_faults_are_held(held: bool) -> None:
    """Nothing arrives for the first 6 polls (the consumer down on purpose), then all.
    With a stall window shorter than a poll, the drain gives up at once unless the
    experiment still holds its faults (``holding``) — then it sees every delivery. The
    scenario context is a stand-in (only its key and ``watch`` are read)."""
    polls: list[int] = []

    def progress() -> tuple[int, int]:
        polls.append(1)
        return (10, 10) if len(polls) > 6 else (0, 10)

    shown: list[int] = []
    spec = type("Spec", (), {"key": "08_consumer_resilience"})()
    ctx = type("Ctx", (), {"spec": spec, "watch": lambda _self, p: shown.append(p.pending)})()
    drain(ctx, progress, _Stats(), 60.0, 0.01, holding=lambda: held and len(polls) <= 6)  # type: ignore[arg-type]
    assert shown[-1] == (0 if held else 10)
    assert len(polls) == (7 if held else 2)


def test_too_few_users_is_reported() -> None:
    assert MessagingKnobs(1024, participants=3).errors(2) == ["needs 3 users, the target has 2"]


class _AbortedSocket:
    """A socket the server drops without a close frame after one frame."""

    def __aiter__(self):
        return self._frames()

    async def _frames(self):
        yield '{"type":"pong"}'
        raise ConnectionClosedError(None, Close(1013, "overloaded"), None)


def test_a_socket_closed_abnormally_counts_as_a_disconnect() -> None:
    records: list[list] = []
    asyncio.run(read_socket("u0#0", _AbortedSocket(), records.append, asyncio.Event()))
    assert records == [["d", "u0#0"]]
    listener = Listener("ws://127.0.0.1:1/v1/ws", {})
    for record in records:
        listener.on_record(record)
    assert listener.ws_disconnects == 1 and listener.disconnected == ["u0#0"]


def _frame(message_id: str, body: bytes, claimed: bytes | None = None) -> str:
    digest = hashlib.sha256(body if claimed is None else claimed).hexdigest()
    return json.dumps(
        {
            "type": "message",
            "message_id": message_id,
            "ciphertext": base64.b64encode(body).decode(),
            "sha256": digest,
        }
    )


def test_receipts_fold_into_counts_duplicates_and_corruption() -> None:
    listener = Listener("ws://127.0.0.1:1/v1/ws", {})
    frames = [_frame("m1", b"a"), _frame("m1", b"a"), _frame("m2", b"b", claimed=b"x")]
    assert receipt_of("u1#0", '{"type":"pong"}', 0.5) is None
    for at, frame in enumerate(frames, start=1):
        listener.on_record(receipt_of("u1#0", frame, float(at)))
    m1, m2 = listener.received[("m1", "u1#0")], listener.received[("m2", "u1#0")]
    assert (m1.count, m1.corrupted, m1.first_at) == (2, 0, 1.0)
    assert m1.digests == {hashlib.sha256(b"a").hexdigest()}
    assert (m2.count, m2.corrupted) == (1, 1)
    assert listener.delivered({"m1": ("u1#0",), "m2": ("u1#0", "u2#0")}) == 2


def test_listener_process_reports_a_target_it_cannot_reach() -> None:
    listener = Listener("ws://127.0.0.1:1/v1/ws", {"u0#0": "token"})
    with pytest.raises(RuntimeError, match="WebSocket listener failed"):
        listener.__enter__()
    assert listener.pids and all(not psutil.pid_exists(p) for p in listener.pids)  # reaped


def test_a_listener_split_over_processes_opens_every_socket_once_and_reaps_them() -> None:
    """A real WebSocket server (websockets) that answers every connection with one frame
    naming the socket's token: three processes hold five sockets, each socket hears
    its own frame once, and no process is left after the listener."""
    frames_sent = _serve_frames_in_thread()
    tokens = {f"u{i}#0": f"t{i}" for i in range(5)}
    with Listener(frames_sent.url, tokens, processes=3) as listener:
        assert len(listener.pids) == 3
        expected = {f"m-t{i}": (f"u{i}#0",) for i in range(5)}
        deadline = 200
        while listener.delivered(expected) < 5 and deadline:  # bounded: 200 x 50 ms
            deadline -= 1
            time.sleep(0.05)
        assert listener.delivered(expected) == 5
        assert all(listener.received[(m, lb[0])].count == 1 for m, lb in expected.items())
    assert all(not psutil.pid_exists(p) for p in listener.pids)
    frames_sent.stop()


def test_a_body_swapped_with_its_hash_still_counts_as_corrupted() -> None:
    from nightly_pipeline.suite.delivery import Received, Sent, judge_delivery

    sent = {"m1": Sent("c1", "a" * 64, 0.0)}
    swapped = Received(count=1, corrupted=0, first_at=0.01, digests={"b" * 64})
    verdict = judge_delivery(sent, {"c1": ("u1",)}, {("m1", "u1"): swapped})
    assert verdict.corrupted == 1 and verdict.lost == 0


def test_a_frame_with_a_flipped_byte_is_one_corrupted_frame_not_two() -> None:
    """Its body matches neither the digest it carries nor the one sent: counted once
    (it was counted twice, so 30 flipped messages to 3 recipients read 180)."""
    from nightly_pipeline.suite.delivery import Received, Sent, judge_delivery

    sent = {"m1": Sent("c1", "a" * 64, 0.0), "m2": Sent("c1", "c" * 64, 0.0)}
    flipped = Received(count=1, corrupted=1, first_at=0.01, digests={"b" * 64})
    twice = Received(count=2, corrupted=2, first_at=0.01, digests={"d" * 64})
    received = {("m1", "u1"): flipped, ("m2", "u1"): twice}
    verdict = judge_delivery(sent, {"c1": ("u1",)}, received)
    assert (verdict.corrupted, verdict.duplicated, verdict.lost) == (3, 1, 0)


def test_a_listener_pings_each_socket_and_reports_the_round_trips() -> None:
    """websockets' server answers pings: two sockets pinging every 0.1 s report round
    trips (at least one each), and no miss on a healthy loopback server."""
    server = _serve_frames_in_thread()
    with Listener(server.url, {"a#0": "ta", "b#0": "tb"}, ping_every_s=0.1) as listener:
        deadline = 200
        while len(listener.ping_rtts_ms) < 4 and deadline:  # bounded: 200 x 50 ms
            deadline -= 1
            time.sleep(0.05)
    server.stop()
    assert len(listener.ping_rtts_ms) >= 4 and all(r >= 0 for r in listener.ping_rtts_ms)
    assert listener.missed_pongs == 0


@dataclass
class _FrameServer:
    url: str
    stop: Callable[[], None]


def _serve_frames_in_thread() -> _FrameServer:
    """A real WebSocket server on a free loopback port: each connection gets one message
    frame whose id names its bearer token, then stays open until the client leaves."""
    started = threading.Event()
    state: dict[str, object] = {}

    async def handler(ws: ServerConnection) -> None:
        token = ws.request.headers["Authorization"].removeprefix("Bearer ")  # type: ignore[union-attr]
        body = b"x"
        await ws.send(
            json.dumps(
                {
                    "type": "message",
                    "message_id": f"m-{token}",
                    "conversation_id": "c",
                    "ciphertext": base64.b64encode(body).decode(),
                    "sha256": hashlib.sha256(body).hexdigest(),
                }
            )
        )
        await ws.wait_closed()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        async with serve(handler, "127.0.0.1", 0) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            state["url"] = f"ws://127.0.0.1:{port}/v1/ws"
            state["stop"] = lambda: loop.call_soon_threadsafe(stop.set)
            started.set()
            await stop.wait()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert started.wait(10)

    def stop() -> None:
        state["stop"]()  # type: ignore[operator]
        thread.join(10)

    return _FrameServer(str(state["url"]), stop)
