"""The shared messaging load without a platform: the user/socket layout, the listener's
receipts (disconnects, duplicates, corruption) and its child process's errors."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json

import pytest
from websockets.exceptions import ConnectionClosedError
from websockets.frames import Close

from nightly_pipeline.suite.client import Conversation
from nightly_pipeline.suite.delivery import Listener
from nightly_pipeline.suite.messaging_load import (
    MessagingKnobs,
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
    assert listener.ws_disconnects == 1


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
    assert listener._proc is not None and listener._proc.poll() is not None  # not left behind


def test_a_body_swapped_with_its_hash_still_counts_as_corrupted() -> None:
    from nightly_pipeline.suite.delivery import Received, Sent, judge_delivery

    sent = {"m1": Sent("c1", "a" * 64, 0.0)}
    swapped = Received(count=1, corrupted=0, first_at=0.01, digests={"b" * 64})
    verdict = judge_delivery(sent, {"c1": ("u1",)}, {("m1", "u1"): swapped})
    assert verdict.corrupted == 1 and verdict.lost == 0
