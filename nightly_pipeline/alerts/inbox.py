"""Alerts a run-status sensor could not deliver, handed to the periodic alert sensor.

Dagster moves a run-failure sensor past a run whatever its delivery did, and a sensor
cannot write another sensor's cursor, so an alert ``run_failure_alert`` could not
deliver is written here, one JSON file per alert (a ``Pending``: the channels still
owed it), in a directory of the home. ``regression_alert`` adopts these files into its
``Outbox`` at each tick and retries them there, with the outbox's bound.

A file is removed only at a tick whose *committed* cursor already knows its key: the
tick that adopts it may not commit (a crash), and then the file is adopted again. Files
are written whole (a temporary file renamed), so a reader never sees half of one. No
Dagster here.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from nightly_pipeline.alerts.model import Alert
from nightly_pipeline.alerts.outbox import (
    RETRY_BOUND,
    Outbox,
    Pending,
    RetryBound,
    Send,
    TickOutcome,
    _pending_json,
    _pending_of,
    deliver,
)

SUFFIX = ".json"
UNREADABLE = ".unreadable"


@dataclass(frozen=True)
class Adopted:
    """The outbox with the inbox's alerts added, and what happened to the files."""

    outbox: Outbox
    adopted: list[Pending] = field(default_factory=list)
    removed: int = 0
    """Files whose key the committed outbox already knew (adopted at an earlier tick)."""
    unreadable: list[str] = field(default_factory=list)
    """Files that could not be read, renamed ``*.unreadable`` (for the error log)."""


@dataclass(frozen=True)
class PendingInbox:
    """A directory of pending alerts, one file each, named by the alert's key."""

    directory: Path

    def put(self, pending: Sequence[Pending]) -> list[Path]:
        """Write each alert whole; a key written again replaces its file."""
        self.directory.mkdir(parents=True, exist_ok=True)
        written = []
        for entry in pending:
            path = self._path(entry.key)
            temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            temporary.write_text(json.dumps(_pending_json(entry)), encoding="utf-8")
            os.replace(temporary, path)
            written.append(path)
        return written

    def files(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.glob(f"*{SUFFIX}") if not p.name.startswith("."))

    def _path(self, key: str) -> Path:
        # Keys hold ':' and run ids; a digest is a safe, stable file name.
        return self.directory / (hashlib.sha256(key.encode()).hexdigest()[:24] + SUFFIX)


def adopt(outbox: Outbox, inbox: PendingInbox) -> Adopted:
    """Add the inbox's alerts unknown to ``outbox`` (the committed cursor's) to its
    pending; remove the files of keys it already knows."""
    known = outbox.known()
    adopted: list[Pending] = []
    removed, unreadable = 0, []
    for path in inbox.files():
        try:
            entry = _pending_of(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            unreadable.append(f"{path.name}: {exc!r}")
            path.replace(path.with_name(path.name + UNREADABLE))
            continue
        if entry.key in known:
            path.unlink(missing_ok=True)
            removed += 1
        elif entry.key not in {p.key for p in adopted}:
            adopted.append(entry)
    grown = replace(outbox, pending=outbox.pending + tuple(adopted))
    return Adopted(grown, adopted, removed, unreadable)


def send_or_keep(
    key: str,
    alert: Alert,
    send: Send,
    inbox: PendingInbox,
    *,
    channels: Sequence[str],
    now: datetime,
    bound: RetryBound = RETRY_BOUND,
) -> TickOutcome:
    """Send ``alert`` once to ``channels``; what a channel did not take is written to
    ``inbox`` (that channel only, one attempt counted) for the periodic sensor to retry.
    An ``OSError`` writing the inbox is raised for the caller to log."""
    outcome = deliver(Outbox(), [(key, alert)], send, channels=channels, now=now, bound=bound)
    if outcome.outbox.pending:
        inbox.put(outcome.outbox.pending)
    return outcome
