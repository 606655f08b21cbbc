"""Settled message ids, ~52 bytes a message: what a late frame is judged against.

A settled message (``suite.ledger``) has left the receipts; a frame for it that arrives
later (a duplicate after a reclaim or an outbox replay) must still count, so each settled
id keeps its conversation and the sha256 that was sent. As Python objects that is ~300 B a
message; here the id is 128 bits of BLAKE2b (two sorted uint64 columns: a collision needs
~2^64 ids), the conversation a uint32 index and the sha256 32 raw bytes, in numpy arrays
merged from a small dict every ``MERGE_EVERY`` ids (sorting is amortised; a look-up is one
dict probe and one binary search).
"""

from __future__ import annotations

import hashlib

import numpy as np

MERGE_EVERY = 8192


def _key(message_id: str) -> tuple[int, int]:
    raw = hashlib.blake2b(message_id.encode(), digest_size=16).digest()
    return int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:], "little")


class SettledIds:
    """``message_id -> (conversation, sha256 hex)`` for settled messages."""

    def __init__(self) -> None:
        self._conversations: list[str] = []
        self._conversation_index: dict[str, int] = {}
        self._hi = np.empty(0, np.uint64)
        self._lo = np.empty(0, np.uint64)
        self._conv = np.empty(0, np.uint32)
        self._sha = np.empty((0, 32), np.uint8)
        self._recent: dict[tuple[int, int], tuple[int, bytes]] = {}

    def __len__(self) -> int:
        return len(self._hi) + len(self._recent)

    def nbytes(self) -> int:
        """The arrays' bytes (the recent dict not counted: at most ``MERGE_EVERY`` ids)."""
        return self._hi.nbytes + self._lo.nbytes + self._conv.nbytes + self._sha.nbytes

    def add(self, message_id: str, conversation: str, sha256: str) -> None:
        index = self._conversation_index.get(conversation)
        if index is None:
            index = self._conversation_index[conversation] = len(self._conversations)
            self._conversations.append(conversation)
        self._recent[_key(message_id)] = (index, bytes.fromhex(sha256).ljust(32, b"\0")[:32])
        if len(self._recent) >= MERGE_EVERY:
            self._merge()

    def get(self, message_id: str) -> tuple[str, str] | None:
        """(conversation, sha256 hex) of a settled message, else ``None``."""
        key = _key(message_id)
        found = self._recent.get(key)
        if found is not None:
            return self._conversations[found[0]], found[1].hex()
        hi, lo = np.uint64(key[0]), np.uint64(key[1])
        start = int(np.searchsorted(self._hi, hi, "left"))
        end = int(np.searchsorted(self._hi, hi, "right"))
        for i in range(start, end):  # almost always one row (two only if 64 bits collide)
            if self._lo[i] == lo:
                return self._conversations[int(self._conv[i])], self._sha[i].tobytes().hex()
        return None

    def _merge(self) -> None:
        keys = list(self._recent)
        values = list(self._recent.values())
        self._recent = {}
        hi = np.concatenate([self._hi, np.array([k[0] for k in keys], np.uint64)])
        lo = np.concatenate([self._lo, np.array([k[1] for k in keys], np.uint64)])
        conv = np.concatenate([self._conv, np.array([v[0] for v in values], np.uint32)])
        sha = np.concatenate(
            [self._sha, np.frombuffer(b"".join(v[1] for v in values), np.uint8).reshape(-1, 32)]
        )
        order = np.lexsort((lo, hi))
        self._hi, self._lo, self._conv, self._sha = hi[order], lo[order], conv[order], sha[order]
