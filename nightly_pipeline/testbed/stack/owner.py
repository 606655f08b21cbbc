"""The owner record of a running stack, ``<run_dir>/owner.json``: which process owns the
stack and every process it spawned, each as pid + create time (a pid alone may have been
reused by the time anyone reads it), and the data to remove if the owner dies.

    {"owner": {"pid": 4242, "create_time": 1764470000.12},
     "processes": [{"name": "redis", "pid": 4250, "create_time": 1764470001.3}, ...],
     "remove": ["<run_dir>/redis", "<run_dir>/postgres/data"]}

Written before the first process starts and after every spawn (restarts included),
atomically (temporary file + rename), and removed by a clean teardown. A record whose
owner is gone is a dead run's stack: ``reaper.reap_dead_stacks`` kills what is left of it
and removes its data at the next start.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from nightly_pipeline.testbed.stack.errors import StackError

RECORD = "owner.json"
SAME_START_S = 0.01  # create times are read from /proc in clock ticks


def identity(pid: int) -> dict[str, Any]:
    """``{"pid", "create_time"}`` of a running process (``create_time`` None if gone)."""
    try:
        return {"pid": pid, "create_time": psutil.Process(pid).create_time()}
    except psutil.Error:
        return {"pid": pid, "create_time": None}


def is_same_process(found: Mapping[str, Any]) -> bool:
    """Whether the recorded ``{"pid", "create_time"}`` is still that process, alive."""
    try:
        proc = psutil.Process(int(found["pid"]))
        same = abs(proc.create_time() - float(found["create_time"])) < SAME_START_S
        return same and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, KeyError, ValueError, TypeError):
        return False


def live_owner(run_dir: Path) -> int | None:
    """The pid of the live process whose stack is in ``run_dir``, if any."""
    try:
        owner = json.loads((run_dir / RECORD).read_text()).get("owner", {})
    except (OSError, ValueError, AttributeError):
        return None
    return int(owner["pid"]) if is_same_process(owner) else None


class StackOwner:
    """This process's record of the stack in ``run_dir``."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / RECORD
        self._lock = threading.Lock()
        self._record: dict[str, Any] | None = None

    def claim(self, remove: Iterable[Path] = ()) -> None:
        """Start the record; ``StackError`` if a live process owns this run dir."""
        with self._lock:
            if self.path.is_file():
                with contextlib.suppress(OSError, ValueError):
                    other = json.loads(self.path.read_text()).get("owner", {})
                    if is_same_process(other) and other.get("pid") != os.getpid():
                        raise StackError(
                            f"{self.path.parent} is the run dir of a stack that pid "
                            f"{other['pid']} is running; stop it or use another run dir"
                        )
            self._record = {
                "owner": identity(os.getpid()),
                "started_at": datetime.now(UTC).isoformat(),
                "processes": [],
                "remove": [str(p) for p in remove],
            }
            self._write()

    def add_process(self, name: str, pid: int) -> None:
        with self._lock:
            if self._record is None:
                return
            known = {(p["name"], p["pid"]) for p in self._record["processes"]}
            if (name, pid) not in known:
                self._record["processes"].append({"name": name, **identity(pid)})
                self._write()

    def add_removal(self, path: Path) -> None:
        """Data the reaper removes if the owner dies (teardown removes it otherwise)."""
        with self._lock:
            if self._record is not None and str(path) not in self._record["remove"]:
                self._record["remove"].append(str(path))
                self._write()

    def release(self) -> None:
        """The stack is down and its data handled: nothing left to reap."""
        with self._lock:
            if self._record is not None:
                self.path.unlink(missing_ok=True)
            self._record = None

    def _write(self) -> None:
        assert self._record is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{RECORD}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self._record, indent=2))
        os.replace(tmp, self.path)


def postmaster_pid(data_dir: Path) -> int | None:
    """The pid in ``postmaster.pid`` (first line), if the file is there and sane."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    return pid if pid > 0 else None
