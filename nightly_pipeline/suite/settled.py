"""Settled message ids, spilled to disk: what a late frame is judged against.

A settled message (``suite.ledger``) has left the receipts; a frame for it that arrives
later (a duplicate after a reclaim or an outbox replay) must still count, so each settled
id keeps its conversation and the sha256 that was sent. Held in memory that was ~52 B a
message, ~1.5 MB a minute at 500 msg/s (Issue 15): the generator grew with the run, not
with what is in flight. Here ids gather in a small dict and every ``MERGE_EVERY`` of them
go to an SQLite table in a private temporary file (SQLite's ``""`` database: deleted when
the connection closes, and unlinked from the start on Unix, so a killed run leaves
nothing), whose page cache is capped at ``CACHE_KIB``. The id is 128 bits of BLAKE2b (a
collision needs ~2^64 ids), the conversation an index, the sha256 32 raw bytes.

A look-up (only for a frame whose message is neither pending nor kept: rare) is one dict
probe and, failing that, one primary-key read.

Not thread-safe on its own: the ledger calls it under its lock.
"""

from __future__ import annotations

import hashlib
import sqlite3

MERGE_EVERY = 8192
CACHE_KIB = 1024  # SQLite's page cache for the table; the rest stays on disk


def _key(message_id: str) -> tuple[int, int]:
    raw = hashlib.blake2b(message_id.encode(), digest_size=16).digest()
    return int.from_bytes(raw[:8], "little", signed=True), int.from_bytes(
        raw[8:], "little", signed=True
    )


class SettledIds:
    """``message_id -> (conversation, sha256 hex)`` for settled messages."""

    def __init__(self) -> None:
        self._conversations: list[str] = []
        self._conversation_index: dict[str, int] = {}
        self._recent: dict[tuple[int, int], tuple[int, bytes]] = {}
        self._spilled = 0
        self._db = sqlite3.connect("", check_same_thread=False, isolation_level=None)
        self._db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        self._db.execute("PRAGMA journal_mode = OFF")  # a scratch table: nothing to recover
        self._db.execute("PRAGMA synchronous = OFF")
        self._db.execute(
            "CREATE TABLE settled (hi INTEGER NOT NULL, lo INTEGER NOT NULL,"
            " conversation INTEGER NOT NULL, sha256 BLOB NOT NULL,"
            " PRIMARY KEY (hi, lo)) WITHOUT ROWID"
        )

    def __len__(self) -> int:
        if self._spilled < 0:
            self._spilled = int(self._db.execute("SELECT count(*) FROM settled").fetchone()[0])
        return self._spilled + len(self._recent)

    def nbytes(self) -> int:
        """Bytes of the table on disk (memory holds at most ``MERGE_EVERY`` ids and
        ``CACHE_KIB`` of SQLite's cache, whatever the run's length)."""
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        size = self._db.execute("PRAGMA page_size").fetchone()[0]
        return int(pages) * int(size)

    def add(self, message_id: str, conversation: str, sha256: str) -> None:
        index = self._conversation_index.get(conversation)
        if index is None:
            index = self._conversation_index[conversation] = len(self._conversations)
            self._conversations.append(conversation)
        self._recent[_key(message_id)] = (index, bytes.fromhex(sha256).ljust(32, b"\0")[:32])
        if len(self._recent) >= MERGE_EVERY:
            self._spill()

    def get(self, message_id: str) -> tuple[str, str] | None:
        """(conversation, sha256 hex) of a settled message, else ``None``."""
        key = _key(message_id)
        found = self._recent.get(key)
        if found is None and self._spilled != 0:
            row = self._db.execute(
                "SELECT conversation, sha256 FROM settled WHERE hi = ? AND lo = ?", key
            ).fetchone()
            found = (int(row[0]), bytes(row[1])) if row is not None else None
        if found is None:
            return None
        return self._conversations[found[0]], found[1].hex()

    def close(self) -> None:
        """Free the table (its file is gone with the connection)."""
        self._db.close()

    def _spill(self) -> None:
        rows = [(hi, lo, conv, sha) for (hi, lo), (conv, sha) in self._recent.items()]
        self._db.execute("BEGIN")
        try:
            self._db.executemany("INSERT OR REPLACE INTO settled VALUES (?, ?, ?, ?)", rows)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        self._spilled = -1  # counted when asked
        self._recent = {}
