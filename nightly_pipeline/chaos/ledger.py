"""The faults injected and not yet reverted, on disk (``$NIGHTLY_HOME/chaos/active.json``),
so that a run killed between inject and revert is repaired at the next start.

An entry is written before a fault touches anything, completed with what the fault
leaves in the world once injected (``PlatformFault.leftover``), and removed when it is
reverted. ``revert_leftovers`` (at the start of every chaos test and of ``nightly
run``) reverts the entries whose owning process is gone, from their description alone.
Writers in several processes are serialised by an flock on a sibling file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil


class FaultLedger:
    def __init__(self, path: Path) -> None:
        self.path = path

    def record(self, run_id: str, type_name: str, description: Mapping[str, Any]) -> str:
        entry = uuid.uuid4().hex
        with self._entries() as entries:
            entries[entry] = {
                "run_id": run_id,
                "type": type_name,
                "fault": dict(description),
                "leftover": {},
                "owner": _me(),
                "recorded_at": datetime.now(UTC).isoformat(),
            }
        return entry

    def update(self, entry: str, leftover: Mapping[str, Any]) -> None:
        with self._entries() as entries:
            if entry in entries:
                entries[entry]["leftover"] = dict(leftover)

    def forget(self, entry: str) -> None:
        with self._entries() as entries:
            entries.pop(entry, None)

    def active(self) -> dict[str, dict[str, Any]]:
        with self._entries() as entries:
            return dict(entries)

    def revert_leftovers(self) -> list[str]:
        """Revert the faults of dead owners; one line per fault, for the log."""
        from nightly_pipeline.chaos.platform_faults import fault_class

        done = []
        with self._entries() as entries:
            for entry, found in list(entries.items()):
                if _alive(found.get("owner", {})):
                    continue
                try:
                    what = fault_class(found["type"]).revert_leftover(found.get("leftover", {}))
                except Exception as exc:
                    done.append(f"{found['type']} of run {found['run_id']}: NOT reverted: {exc}")
                    continue
                done.append(f"{found['type']} of run {found['run_id']}: {what}")
                del entries[entry]
        return done

    @contextlib.contextmanager
    def _entries(self) -> Iterator[dict[str, dict[str, Any]]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            entries = json.loads(self.path.read_text()) if self.path.exists() else {}
            yield entries
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps(entries, indent=2, sort_keys=True))
            os.replace(tmp, self.path)


def _me() -> dict[str, Any]:
    return {"pid": os.getpid(), "create_time": psutil.Process().create_time()}


def _alive(owner: Mapping[str, Any]) -> bool:
    try:
        return psutil.Process(int(owner["pid"])).create_time() == owner.get("create_time")
    except (psutil.Error, KeyError, ValueError, TypeError):
        return False
