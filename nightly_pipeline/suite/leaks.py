"""Cross-conversation leaks: a frame a socket received for a message of a conversation
its user is not a participant of (Test 12).

The receipts keep, per message, the frames at its conversation's own sockets in a grid
and every other frame aside (``Receipts.strays``); a leak is a stray whose user is not a
member of the message's conversation, or any frame of a message whose frames name another
conversation than the one it was posted to. The conversation of a message is the one the
suite posted it to (``Sent``); a message the suite did not post (its 202 never came) is
judged by the conversation its frame names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from nightly_pipeline.suite.delivery import Sent
from nightly_pipeline.suite.receipts import Receipts


@dataclass(frozen=True)
class Leak:
    message_id: str
    label: str  # the socket (user#device) that received it
    user: str
    conversation: str | None  # the message's; None when nobody knows it

    def describe(self) -> str:
        return (
            f"message {self.message_id} of conversation {self.conversation or '(unknown)'}"
            f" reached socket {self.label}: {self.user} is not a participant"
        )


def judge_leaks(
    received: Receipts,
    sent: Mapping[str, Sent],
    members: Mapping[str, frozenset[str]],  # conversation id -> usernames
    user_of: Mapping[str, str],  # socket label -> username
    layout: Mapping[str, Sequence[str]],  # conversation id -> its socket labels
) -> list[Leak]:
    """Every leaked (message, socket) pair, in the order found."""
    leaks: list[Leak] = []

    def judge(message_id: str, label: str, conversation: str | None) -> None:
        user = user_of.get(label, label)
        if user not in members.get(conversation or "", frozenset()):
            leaks.append(Leak(message_id, label, user, conversation))

    for message_id, label in received.strays():
        posted = sent.get(message_id)
        conversation = posted.conversation if posted else received.conversation_of(message_id)
        judge(message_id, label, conversation)
    for message_id, posted in sent.items():
        named = received.conversation_of(message_id)
        if named is None or named == posted.conversation:
            continue
        for label in layout.get(named, ()):  # frames filed under the conversation they named
            if (message_id, label) in received and (message_id, label) not in received.strays():
                judge(message_id, label, posted.conversation)
    return leaks
