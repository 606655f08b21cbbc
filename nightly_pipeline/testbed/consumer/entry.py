"""A stream entry as the consumer sees it: the contract's message (CONTRACT.md), parsed
from the fields the dispatcher wrote (``dispatcher.stream_fields``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def entry_key(entry_id: bytes | str) -> str:
    """An entry id (or a cursor, a consumer name) as ``str``, whatever redis-py returned."""
    return entry_id.decode() if isinstance(entry_id, bytes) else entry_id


@dataclass(frozen=True)
class Entry:
    entry_id: str
    message: dict[str, Any]

    @property
    def message_id(self) -> str:
        return self.message["message_id"]


def parse_entry(entry_id: bytes | str, fields: dict[bytes, bytes] | None) -> Entry | None:
    """The contract's message from a stream entry; ``None`` if malformed or trimmed."""
    eid = entry_key(entry_id)
    if not fields:
        return None
    try:
        f = {k.decode(): v.decode() for k, v in fields.items()}
        message = {
            "message_id": f["message_id"],
            "conversation_id": f["conversation_id"],
            "sender_id": int(f["sender_id"]),
            "seq": int(f["seq"]),
            "sha256": f["sha256"],
            "ciphertext": f["ciphertext"],
            "created_at": float(f["created_at"]),
        }
    except (KeyError, ValueError, UnicodeDecodeError):
        return None
    return Entry(eid, message)
