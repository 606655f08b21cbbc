"""A recorder's closed per-second rows, the old ones spilled to disk: a long run's memory
stays flat while every row the store and the sliding-window thresholds read is kept.

A closed second's rows (``SeriesSecond``, ~0.9 KB for a trend with its histogram) are
needed at the end of the run: ``series_rows`` (what the store writes) and ``windows``
(thresholds over sliding windows). Kept in memory they grew a 30-minute soak by a few MB a
minute (Issue 15). ``Seconds`` is the ``dict[int, SeriesSecond]`` of one (metric, tags):
recent seconds in a dict, older ones (``Spill.move_older_than``) pickled into an SQLite
table of a private temporary file (SQLite's ``""`` database: unlinked from the start,
gone with the connection), whose page cache is capped. A row read back is the row
written (pickle round-trips the named tuple exactly), so nothing judged or stored changes.

The table is made on the first spill: a short run never touches the disk.
"""

from __future__ import annotations

import pickle
import sqlite3
from collections.abc import Iterator, MutableMapping

from nightly_pipeline.loadgen.metrics_series import SeriesSecond

CACHE_KIB = 1024


class Spill:
    """The temporary table every ``Seconds`` of one recorder spills into."""

    def __init__(self) -> None:
        self._db: sqlite3.Connection | None = None
        self._ids = 0

    def new_series(self) -> Seconds:
        self._ids += 1
        return Seconds(self, self._ids)

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect("", check_same_thread=False, isolation_level=None)
            db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            db.execute("PRAGMA journal_mode = OFF")  # scratch: nothing to recover
            db.execute("PRAGMA synchronous = OFF")
            db.execute(
                "CREATE TABLE rows (series INTEGER NOT NULL, second INTEGER NOT NULL,"
                " row BLOB NOT NULL, PRIMARY KEY (series, second)) WITHOUT ROWID"
            )
            self._db = db
        return self._db

    @property
    def used(self) -> bool:
        return self._db is not None

    def move_older_than(self, series: list[Seconds], second: int) -> int:
        """Every row before ``second`` out of memory into the table; how many moved."""
        rows = []
        for seconds in series:
            old = [s for s in seconds.recent if s < second]
            for s in old:
                rows.append((seconds.id, s, pickle.dumps(seconds.recent.pop(s), protocol=5)))
            seconds.spilled += len(old)
        if rows:
            db = self.db
            db.execute("BEGIN")
            try:
                db.executemany("INSERT OR REPLACE INTO rows VALUES (?, ?, ?)", rows)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        return len(rows)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


class Seconds(MutableMapping[int, SeriesSecond]):
    """One (metric, tags)'s rows by second: recent in ``recent``, older in the table."""

    __slots__ = ("_spill", "id", "recent", "spilled")

    def __init__(self, spill: Spill, series_id: int) -> None:
        self._spill = spill
        self.id = series_id
        self.recent: dict[int, SeriesSecond] = {}
        self.spilled = 0  # rows moved to the table (an upper bound on those there)

    def _read(self, second: int) -> SeriesSecond | None:
        if not self.spilled:
            return None
        found = self._spill.db.execute(
            "SELECT row FROM rows WHERE series = ? AND second = ?", (self.id, second)
        ).fetchone()
        return pickle.loads(found[0]) if found is not None else None

    def __getitem__(self, second: int) -> SeriesSecond:
        row = self.recent.get(second)
        if row is None:
            row = self._read(second)
            if row is None:
                raise KeyError(second)
        return row

    def get(self, second: int, default: SeriesSecond | None = None) -> SeriesSecond | None:  # type: ignore[override]
        row = self.recent.get(second)
        if row is None:
            row = self._read(second)
        return default if row is None else row

    def __setitem__(self, second: int, row: SeriesSecond) -> None:
        self.recent[second] = row  # a spilled second rewritten: the newer row wins later

    def __delitem__(self, second: int) -> None:
        raise TypeError("a recorded second is never removed")

    def _spilled_seconds(self) -> list[int]:
        if not self.spilled:
            return []
        found = self._spill.db.execute(
            "SELECT second FROM rows WHERE series = ? ORDER BY second", (self.id,)
        )
        return [s for (s,) in found if s not in self.recent]

    def __iter__(self) -> Iterator[int]:
        yield from self._spilled_seconds()
        yield from list(self.recent)

    def __len__(self) -> int:
        return len(self._spilled_seconds()) + len(self.recent)

    def items(self) -> Iterator[tuple[int, SeriesSecond]]:  # type: ignore[override]
        if self.spilled:
            found = self._spill.db.execute(
                "SELECT second, row FROM rows WHERE series = ? ORDER BY second", (self.id,)
            ).fetchall()
            for second, blob in found:
                if second not in self.recent:
                    yield second, pickle.loads(blob)
        yield from list(self.recent.items())
