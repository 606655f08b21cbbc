"""What the delivery listener received, per (message, socket label), in ~50 bytes a pair.

A dict of small objects per pair cost ~700 B (measured with tracemalloc): a 30-minute
Test 01 at 500 msg/s to 3 sockets is 2.7 M pairs, ~1.9 GB in the generator's process.
Here a message is one row (its id in one dict), a label one column, and a pair a cell of
numpy arrays: frame count, frames whose body did not match their own hash, first
arrival. Bodies are compared by digest: each message keeps the first digest seen; a cell
remembers whether it saw that digest, and the (rare) other digests go to a side dict, so
the verdict stays exact.

With a ``layout`` (conversation -> the labels its messages must reach), a row is only as
wide as the widest conversation and a label's column is its place in the row's
conversation (the one the message's first frame names): Test 12's 1,000 sockets, 100 of
them per conversation, take 100 columns, not 1,000. A frame at a label outside that
conversation is kept aside, exactly, as a *stray*: what a leak judge reads.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

CHUNK_ROWS = 1 << 14
SAW_REFERENCE = 1  # the cell saw the message's first digest
CELLS = ("count", "corrupted", "flags", "first_at")  # per (row, label); "reference" per row


@dataclass
class Received:
    """One (message, label) pair, as the verdict reads it."""

    count: int = 0
    corrupted: int = 0  # frames whose ciphertext does not match the frame's own sha256
    first_at: float = 0.0
    digests: set[str] = field(default_factory=set)  # the sha256 of every frame's ciphertext


class Receipts:
    """Mapping-like ``(message_id, label) -> Received`` over compact storage."""

    def __init__(
        self, labels: tuple[str, ...] = (), layout: Mapping[str, Sequence[str]] | None = None
    ) -> None:
        self._rows: dict[str, int] = {}
        self._free: list[int] = []  # rows of forgotten messages, reused first
        self._next_row = 0
        self._odd_rows: set[int] = set()  # rows with a digest in ``_odd``
        self._stray_ids: set[str] = set()
        self._late_conversation: dict[str, str] = {}  # forgotten messages with late strays
        self._labels: dict[str, int] = {}
        self._odd: dict[tuple[int, int], set[str]] = {}  # other digests of a cell
        self._chunks: list[dict[str, np.ndarray]] = []
        self._pairs = 0
        self._layout: dict[str, dict[str, int]] | None = None
        self._row_conversation: list[str | None] = []  # layout only: per row
        self._strays: dict[tuple[str, str], Received] = {}
        if layout is not None:
            self._layout = {c: {lb: i for i, lb in enumerate(lbs)} for c, lbs in layout.items()}
            self._width = max([len(lbs) for lbs in layout.values()] + [1])
            return
        self._width = max(1, len(labels))
        for label in labels:
            self._column(label)

    def add(
        self,
        message_id: str,
        label: str,
        digest: str,
        matches: bool,
        at: float,
        conversation: str | None = None,
    ) -> None:
        """Fold one frame: ``matches`` is whether its body hashed to its own sha256;
        ``conversation`` the one the frame names (read with a ``layout`` only)."""
        raw = _raw(digest)
        row = self._rows.get(message_id)
        if row is None:
            row = self._rows[message_id] = self._new_row()
            self._chunks[row // CHUNK_ROWS]["reference"][row % CHUNK_ROWS] = np.frombuffer(
                raw.ljust(32), np.uint8
            )
            if self._layout is not None:
                self._row_conversation[row] = conversation
        if self._layout is None:
            col = self._column(label)
        else:
            found = self._layout_column(row, label)
            if found is None:
                self._add_stray(message_id, label, digest, matches, at)
                return
            col = found
        chunk, i = self._chunks[row // CHUNK_ROWS], row % CHUNK_ROWS
        if chunk["count"][i, col] == 0:
            chunk["first_at"][i, col] = at
            self._pairs += 1
        chunk["count"][i, col] += 1
        chunk["corrupted"][i, col] += not matches
        if raw and chunk["reference"][i].tobytes() == raw:
            chunk["flags"][i, col] |= SAW_REFERENCE
        else:
            self._odd.setdefault((row, col), set()).add(digest)
            self._odd_rows.add(row)

    def _new_row(self) -> int:
        if self._free:
            return self._free.pop()
        row, self._next_row = self._next_row, self._next_row + 1
        if row % CHUNK_ROWS == 0:
            self._chunks.append(self._new_chunk())
        if self._layout is not None:
            self._row_conversation.append(None)
        return row

    def clean_first_arrivals(
        self, message_id: str, labels: Sequence[str], sha256: str, conversation: str
    ) -> list[float] | None:
        """The first arrival at each of ``labels`` when every one of them has exactly one
        frame of the message, intact and with ``sha256``, filed under ``conversation``
        and none elsewhere; ``None`` otherwise (missing, duplicated, corrupted, strayed:
        the verdict needs its cells)."""
        row = self._rows.get(message_id)
        raw = _raw(sha256)
        if row is None or not raw or row in self._odd_rows or message_id in self._stray_ids:
            return None
        cols: slice | np.ndarray
        if self._layout is not None:
            if self._row_conversation[row] != conversation:
                return None
            own = self._layout.get(conversation, {})
            if len(own) == len(labels) and all(own.get(lb) == k for k, lb in enumerate(labels)):
                cols = slice(0, len(labels))  # the usual case: a view, no gather
            else:
                found = [own.get(label) for label in labels]
                if None in found:
                    return None
                cols = np.array(found, dtype=np.intp)
        else:
            found = [self._labels.get(label) for label in labels]
            if None in found:
                return None
            cols = np.array(found, dtype=np.intp)
        chunk, i = self._chunks[row // CHUNK_ROWS], row % CHUNK_ROWS
        if chunk["reference"][i].tobytes() != raw:
            return None
        n = len(labels)
        ones, zeros, seen = _clean_cells(n)
        if (
            chunk["count"][i, cols].tobytes() != ones
            or chunk["corrupted"][i, cols].tobytes() != zeros
            or chunk["flags"][i, cols].tobytes() != seen
        ):
            return None
        return chunk["first_at"][i, cols].tolist()

    def forget(self, message_id: str) -> None:
        """Drop a settled message's row (its pairs no longer count in ``len``)."""
        row = self._rows.pop(message_id, None)
        if row is None:
            return
        chunk, i = self._chunks[row // CHUNK_ROWS], row % CHUNK_ROWS
        self._pairs -= int(np.count_nonzero(chunk["count"][i]))
        for name in CELLS:
            chunk[name][i] = 0
        if row in self._odd_rows:
            self._odd_rows.discard(row)
            for key in [k for k in self._odd if k[0] == row]:
                del self._odd[key]
        if self._layout is not None:
            self._row_conversation[row] = None
        self._free.append(row)

    def rows(self) -> int:
        """Messages held (what settling keeps bounded)."""
        return len(self._rows)

    def add_late_stray(
        self,
        message_id: str,
        label: str,
        digest: str,
        matches: bool,
        at: float,
        conversation: str,
    ) -> None:
        """A frame of a forgotten (settled) message at a socket outside ``conversation``,
        its own: kept as a stray, and ``conversation_of`` still answers for it."""
        self._late_conversation[message_id] = conversation
        self._add_stray(message_id, label, digest, matches, at)

    def _layout_column(self, row: int, label: str) -> int | None:
        columns = self._layout.get(self._row_conversation[row] or "", {})  # type: ignore[union-attr]
        return columns.get(label)

    def _add_stray(
        self, message_id: str, label: str, digest: str, matches: bool, at: float
    ) -> None:
        self._stray_ids.add(message_id)
        got = self._strays.get((message_id, label))
        if got is None:
            got = self._strays[(message_id, label)] = Received(first_at=at)
        got.count += 1
        got.corrupted += not matches
        got.digests.add(digest)

    def strays(self) -> Mapping[tuple[str, str], Received]:
        """Layout only: the pairs whose label is not one of its conversation's."""
        return self._strays

    def conversation_of(self, message_id: str) -> str | None:
        """Layout only: the conversation a message's first frame named."""
        row = self._rows.get(message_id)
        if row is None or self._layout is None:
            return self._late_conversation.get(message_id)
        return self._row_conversation[row]

    def get(self, key: tuple[str, str], default: Received | None = None) -> Received | None:
        stray = self._strays.get(key)
        if stray is not None:
            return stray
        cell = self._cell(key)
        if cell is None:
            return default
        chunk, i, row, col = cell
        digests = set(self._odd.get((row, col), ()))
        if chunk["flags"][i, col] & SAW_REFERENCE:
            digests.add(chunk["reference"][i].tobytes().hex())
        return Received(
            int(chunk["count"][i, col]),
            int(chunk["corrupted"][i, col]),
            float(chunk["first_at"][i, col]),
            digests,
        )

    def __getitem__(self, key: tuple[str, str]) -> Received:
        found = self.get(key)
        if found is None:
            raise KeyError(key)
        return found

    def __contains__(self, key: object) -> bool:
        """Without building a ``Received``: the drain loop asks this of every pair."""
        if not isinstance(key, tuple):
            return False
        return self._cell(key) is not None or key in self._strays  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self._pairs + len(self._strays)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        if self._layout is None:
            labels = list(self._labels)
            for message_id, row in self._rows.items():
                chunk, i = self._chunks[row // CHUNK_ROWS], row % CHUNK_ROWS
                for col in np.flatnonzero(chunk["count"][i, : len(labels)]):
                    yield message_id, labels[col]
        else:
            by_column = {c: list(lbs) for c, lbs in self._layout.items()}
            for message_id, row in self._rows.items():
                chunk, i = self._chunks[row // CHUNK_ROWS], row % CHUNK_ROWS
                labels = by_column.get(self._row_conversation[row] or "", [])
                for col in np.flatnonzero(chunk["count"][i, : len(labels)]):
                    yield message_id, labels[col]
        yield from self._strays

    def _cell(self, key: tuple[str, str]) -> tuple[dict[str, np.ndarray], int, int, int] | None:
        """(chunk, index in it, row, column) of a pair that received a frame, else None."""
        message_id, label = key
        row = self._rows.get(message_id)
        if row is None:
            return None
        col = self._labels.get(label) if self._layout is None else self._layout_column(row, label)
        if col is None:
            return None
        chunk, i = self._chunks[row // CHUNK_ROWS], row % CHUNK_ROWS
        return (chunk, i, row, col) if chunk["count"][i, col] else None

    def _column(self, label: str) -> int:
        col = self._labels.get(label)
        if col is None:
            col = self._labels[label] = len(self._labels)
            if col >= self._width:  # a label not announced: widen (rare, all at once)
                self._width *= 2
                pad = self._width - self._chunks[0]["count"].shape[1] if self._chunks else 0
                for chunk in self._chunks:
                    for name in CELLS:
                        chunk[name] = np.pad(chunk[name], ((0, 0), (0, pad)))
        return col

    def _new_chunk(self) -> dict[str, np.ndarray]:
        shape = (CHUNK_ROWS, self._width)
        return {
            "count": np.zeros(shape, np.uint16),
            "corrupted": np.zeros(shape, np.uint16),
            "flags": np.zeros(shape, np.uint8),
            "first_at": np.zeros(shape, np.float64),
            "reference": np.zeros((CHUNK_ROWS, 32), np.uint8),  # per row: first digest seen
        }


@functools.cache
def _clean_cells(n: int) -> tuple[bytes, bytes, bytes]:
    """The bytes of ``n`` clean cells: count 1, corrupted 0, flags SAW_REFERENCE only
    (byte compares: numpy reductions on a few cells cost more than the rest of settling)."""
    return (
        np.ones(n, np.uint16).tobytes(),
        np.zeros(n, np.uint16).tobytes(),
        np.full(n, SAW_REFERENCE, np.uint8).tobytes(),
    )


def _raw(digest: str) -> bytes:
    """The 32 bytes of a hex sha256; b"" for anything else (kept in the side dict)."""
    if len(digest) != 64:
        return b""
    try:
        return bytes.fromhex(digest)
    except ValueError:
        return b""
