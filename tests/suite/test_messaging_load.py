"""The shared messaging load without a platform: the user/socket layout and the
listener's disconnect count."""

from __future__ import annotations

import asyncio

import pytest
from websockets.exceptions import ConnectionClosedError
from websockets.frames import Close

from nightly_pipeline.suite.control import Conversation
from nightly_pipeline.suite.delivery import Listener
from nightly_pipeline.suite.messaging_load import (
    MessagingLoad,
    layout,
    recipients_by_socket,
    socket_labels,
)

USERS = [f"u{n}" for n in range(20)]


def test_conversations_ring_over_the_pool() -> None:
    plan = layout(USERS, MessagingLoad(1024, conversations=4, participants=3, pool=3))
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
    assert MessagingLoad(1024, participants=3).errors(2) == ["needs 3 users, the target has 2"]


class _AbortedSocket:
    """A socket the server drops without a close frame after one frame."""

    def __aiter__(self):
        return self._frames()

    async def _frames(self):
        yield '{"type":"pong"}'
        raise ConnectionClosedError(None, Close(1013, "overloaded"), None)


def test_a_socket_closed_abnormally_counts_as_a_disconnect() -> None:
    listener = Listener("ws://127.0.0.1:1/v1/ws", {})
    asyncio.run(listener._read("u0#0", _AbortedSocket()))
    assert listener.ws_disconnects == 1


def test_a_body_swapped_with_its_hash_still_counts_as_corrupted() -> None:
    from nightly_pipeline.suite.delivery import Received, Sent, judge_delivery

    sent = {"m1": Sent("c1", "a" * 64, 0.0)}
    swapped = Received(count=1, corrupted=0, first_at=0.01, digests={"b" * 64})
    verdict = judge_delivery(sent, {"c1": ("u1",)}, {("m1", "u1"): swapped})
    assert verdict.corrupted == 1 and verdict.lost == 0
