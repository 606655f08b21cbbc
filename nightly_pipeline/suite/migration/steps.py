"""A migration file, read into steps: which statements run together, in a transaction or
not, batched or once, under which ``lock_timeout``.

The format is plain SQL with marker comments (the habits of strong_migrations, squawk and
pgroll written down as data)::

    -- migrate:settings lock_timeout=500ms retries=5
    -- migrate:step add_column
    ALTER TABLE messages ADD COLUMN IF NOT EXISTS size_bytes INTEGER NOT NULL DEFAULT 0;
    -- migrate:step backfill batch=100 pause_s=0.05 from=0
    WITH done AS (UPDATE messages SET ... WHERE ctid >= format('(%s,0)', $1::text::bigint)::tid
    ...) SELECT <the next page, NULL past the end> ...
    -- migrate:step index transaction=false
    DROP INDEX CONCURRENTLY IF EXISTS messages_size_idx;
    CREATE INDEX CONCURRENTLY messages_size_idx ON messages (conversation_id, size_bytes);

- ``settings``: ``lock_timeout`` (PostgreSQL's syntax: ``500ms``, ``2s``; absent: none,
  PostgreSQL waits for a lock without bound), ``retries`` (attempts after a lock timeout,
  per step or batch), ``retry_pause_s`` (doubled after each).
- ``step <name>``: the statements up to the next marker. ``transaction=false`` runs each
  on its own (``CREATE INDEX CONCURRENTLY``); a retry runs the whole step again, so such a
  step starts by dropping what a failed attempt left (an INVALID index).
- ``batch=N``: one statement run again and again, each time in its own transaction, with
  ``$1`` (text) the key the previous batch returned (``from`` at first) and ``$2`` = N; it
  returns the next key, or no row / NULL when nothing is left. ``pause_s`` between batches
  leaves the load room.

Statements are split at ``;`` outside quotes, dollar quotes and comments, so a failing
one can be named.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

MARKER = re.compile(r"^\s*--\s*migrate:(\w+)\s*(.*)$")
_DOLLAR = re.compile(r"\$[A-Za-z_0-9]*\$")
_DURATION = re.compile(r"^\d+(\.\d+)?\s*(us|ms|s|min|h|d)?$")


class MigrationFormatError(ValueError):
    """A migration file that cannot be read into steps; the message names the line."""


@dataclass(frozen=True)
class Step:
    name: str
    statements: tuple[str, ...]
    transaction: bool = True
    batch: int | None = None  # rows per batch: a batched backfill
    pause_s: float = 0.0
    start_key: str = ""

    @property
    def concurrent(self) -> bool:
        """Whether it builds an index without blocking writes (what a reader of the
        progress figures wants to know)."""
        return any("CONCURRENTLY" in s.upper() for s in self.statements)


@dataclass(frozen=True)
class Migration:
    name: str
    steps: tuple[Step, ...]
    lock_timeout: str | None = None
    retries: int = 0
    retry_pause_s: float = 0.2
    settings: Mapping[str, str] = field(default_factory=dict)


def split_statements(sql: str) -> list[str]:
    """The statements of ``sql``, each without its ``;``; blank ones and comment-only ones
    dropped. Quotes (``'...'``, ``"..."``), dollar quotes and comments are respected."""
    out, start, i, n = [], 0, 0, len(sql)
    while i < n:
        c = sql[i]
        if c == "-" and sql.startswith("--", i):
            i = _end_of(sql, "\n", i + 2)
        elif c == "/" and sql.startswith("/*", i):
            i = _end_of(sql, "*/", i + 2)
        elif c in "'\"":
            i = _end_of(sql, c, i + 1)
        elif c == "$" and (m := _DOLLAR.match(sql, i)):
            i = _end_of(sql, m.group(0), m.end())
        elif c == ";":
            out.append(sql[start:i])
            start = i = i + 1
        else:
            i += 1
    out.append(sql[start:])
    return [s.strip() for s in out if _has_code(s)]


def _end_of(sql: str, closing: str, i: int) -> int:
    found = sql.find(closing, i)
    return len(sql) if found < 0 else found + len(closing)


def _has_code(statement: str) -> bool:
    lines = [ln.strip() for ln in statement.strip().splitlines()]
    return any(ln and not ln.startswith("--") for ln in lines)


def _options(text: str, line: int) -> dict[str, str]:
    options = {}
    for word in text.split():
        key, eq, value = word.partition("=")
        if not eq:
            raise MigrationFormatError(f"line {line}: {word!r} is not key=value")
        options[key] = value
    return options


def parse_migration(name: str, text: str) -> Migration:
    """``text`` in the format above; ``MigrationFormatError`` naming the line otherwise.
    A file without step markers is one transactional step named ``migration``."""
    settings: dict[str, str] = {}
    heads: list[tuple[str, dict[str, str], int]] = []
    bodies: list[list[str]] = [[]]
    for number, line in enumerate(text.splitlines(), start=1):
        m = MARKER.match(line)
        if m is None:
            bodies[-1].append(line)
        elif m.group(1) == "settings":
            settings |= _options(m.group(2), number)
        elif m.group(1) == "step":
            step_name, _, rest = m.group(2).strip().partition(" ")
            if not step_name:
                raise MigrationFormatError(f"line {number}: a step needs a name")
            heads.append((step_name, _options(rest, number), number))
            bodies.append([])
        else:
            raise MigrationFormatError(f"line {number}: unknown marker migrate:{m.group(1)}")
    if not heads:
        heads, bodies = [("migration", {}, 1)], [[], bodies[0]]
    elif split_statements("\n".join(bodies[0])):
        raise MigrationFormatError("SQL before the first migrate:step marker")
    steps = tuple(
        _step(step_name, options, split_statements("\n".join(body)), number)
        for (step_name, options, number), body in zip(heads, bodies[1:], strict=True)
    )
    return _migration(name, steps, settings)


def _step(name: str, options: dict[str, str], statements: list[str], line: int) -> Step:
    where = f"line {line}, step {name}"
    unknown = set(options) - {"transaction", "batch", "pause_s", "from"}
    if unknown:
        raise MigrationFormatError(f"{where}: unknown option(s) {', '.join(sorted(unknown))}")
    if not statements:
        raise MigrationFormatError(f"{where}: no statement")
    try:
        batch = int(options["batch"]) if "batch" in options else None
        pause = float(options.get("pause_s", "0"))
    except ValueError as exc:
        raise MigrationFormatError(f"{where}: {exc}") from None
    if options.get("transaction", "true") not in ("true", "false"):
        raise MigrationFormatError(f"{where}: transaction must be true or false")
    if batch is not None and (batch < 1 or len(statements) != 1):
        raise MigrationFormatError(f"{where}: a batched step is one statement, batch >= 1")
    return Step(
        name,
        tuple(statements),
        transaction=options.get("transaction", "true") == "true",
        batch=batch,
        pause_s=max(0.0, pause),
        start_key=options.get("from", ""),
    )


def _migration(name: str, steps: tuple[Step, ...], settings: dict[str, str]) -> Migration:
    unknown = set(settings) - {"lock_timeout", "retries", "retry_pause_s"}
    if unknown:
        raise MigrationFormatError(f"unknown setting(s) {', '.join(sorted(unknown))}")
    lock_timeout = settings.get("lock_timeout")
    if lock_timeout is not None and not _DURATION.match(lock_timeout):
        raise MigrationFormatError(f"lock_timeout {lock_timeout!r} is not a duration (500ms)")
    try:
        retries = int(settings.get("retries", "0"))
        pause = float(settings.get("retry_pause_s", "0.2"))
    except ValueError as exc:
        raise MigrationFormatError(str(exc)) from None
    if not 0 <= retries <= 100:
        raise MigrationFormatError(f"retries must be in 0..100, got {retries}")
    return Migration(name, steps, lock_timeout, retries, pause, dict(settings))


def read_migration(path: Path) -> Migration:
    """The migration in ``path`` (named after the file)."""
    name = path.name.removesuffix(".sql")
    try:
        return parse_migration(name, path.read_text())
    except MigrationFormatError as exc:
        raise MigrationFormatError(f"{path}: {exc}") from None
