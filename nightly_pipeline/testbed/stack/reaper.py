"""Reap the stacks of dead runs: at every stack start (siblings of its run dir) and at
every ``nightly run`` start (``$NIGHTLY_HOME/stack``), each ``<dir>/owner.json`` whose
owner process is gone (``kill -9``, a crash, a Dagster run worker killed by run
monitoring) is a dead run's stack.

For each: every recorded process still alive *as recorded* (same pid and create time: a
reused pid is never touched) is SIGKILLed with its descendants and its process group
(PostgreSQL's backends); so is a postmaster named by a ``postmaster.pid`` in the
recorded data and not recorded itself, if it is a postgres started after the stack's
first process. Then the recorded data (PostgreSQL's data dir, Redis's
directory; only inside the run dir, or the PostgreSQL home its ``postgres.location``
names) is removed and the record deleted; the logs stay. Stopped by pid, never by
name (DESIGN §8). A stack with a process that survives SIGKILL (permissions) keeps its
record and data, and the line says so. Concurrent reapers are serialised by an flock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import psutil

from nightly_pipeline.testbed.stack.owner import (
    RECORD,
    SAME_START_S,
    identity,
    is_same_process,
    postmaster_pid,
)

log = logging.getLogger(__name__)
PREFIX = "reaped a dead run's stack"
_GONE_TIMEOUT_S = 5.0
_POLL_S = 0.05


def reap_dead_stacks(stacks_dir: Path) -> list[str]:
    """Reap every dead run's stack under ``stacks_dir``; one line per stack, for the user."""
    lines = []
    for record in sorted(stacks_dir.glob(f"*/{RECORD}")):
        try:
            line = reap_stack(record.parent)
        except Exception as exc:  # one bad record must not stop the others or the run
            line = f"{PREFIX} {record.parent}: FAILED: {type(exc).__name__}: {exc}"
        if line is not None:
            log.warning("%s", line)
            lines.append(line)
    return lines


def reap_stack(run_dir: Path) -> str | None:
    """Reap the stack in ``run_dir`` if its owner is dead; what was done, else None."""
    with _locked(run_dir):
        path = run_dir / RECORD
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            return None  # reaped meanwhile, or released
        except (OSError, ValueError) as exc:
            return f"{PREFIX} {run_dir}: NOT reaped: {path} is unreadable ({exc}); remove it"
        owner = record.get("owner", {})
        if is_same_process(owner):
            return None
        entries = list(record.get("processes", []))
        entries += _postmasters(record.get("remove", []), entries)
        victims = {}
        for entry in entries:  # zombies are dead already: only their parent can clear them
            victims |= {p: entry.get("name", "?") for p in _recorded_tree(entry) if _alive(p)}
        for pid in victims:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        survivors = _wait_gone(set(victims))
        what = f"{PREFIX} {run_dir} (owner pid {owner.get('pid')} is gone)"
        if survivors:
            return f"{what}: NOT reaped: pid(s) {sorted(survivors)} survived SIGKILL"
        places = [p for p in record.get("remove", []) if os.path.lexists(p)]
        removed = [p for p in places if _removable(run_dir, Path(p))]
        for target in removed:
            shutil.rmtree(target, ignore_errors=True)
        path.unlink(missing_ok=True)
        names = sorted(set(victims.values()))
        killed = f"killed {len(victims)} process(es)" + (f" ({', '.join(names)})" if names else "")
        data = f"removed {', '.join(removed)}" if removed else "no data to remove"
        if kept := [p for p in places if p not in removed]:
            data += f"; left {', '.join(kept)} (not the stack's: outside its run dir)"
        return f"{what}: {killed}; {data}"


def _removable(run_dir: Path, place: Path) -> bool:
    """Only the stack's own data goes: inside its run dir, or the PostgreSQL home that
    its ``postgres.location`` names (a record is a file anyone could have edited)."""
    target = place.resolve()
    if run_dir.resolve() in target.parents:
        return True
    try:
        external = Path((run_dir / "postgres.location").read_text().strip()).resolve()
    except OSError:
        return False
    return target == external or external in target.parents


def _postmasters(remove: list[str], recorded: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A postmaster named by ``postmaster.pid`` in the recorded data and not recorded
    itself (a server that forked off, e.g. started by ``pg_ctl``), if it started after
    the stack's first recorded process and is a postgres: only then is it the stack's."""
    if not recorded:
        return []
    first = min(float(e.get("create_time") or 0) for e in recorded)
    pids = {int(e.get("pid", 0)) for e in recorded}
    found = []
    for place in remove:
        for data in (Path(place), Path(place) / "data"):
            pid = postmaster_pid(data)
            if pid is None or pid in pids:
                continue
            me = identity(pid)
            with contextlib.suppress(psutil.Error):
                is_postgres = "postgres" in psutil.Process(pid).name()
                if is_postgres and me["create_time"] is not None and me["create_time"] >= first:
                    found.append({"name": "postmaster", **me})
    return found


def _recorded_tree(entry: Mapping[str, Any]) -> set[int]:
    """The recorded process (if still it), its descendants, and its process group's
    members (each stack process leads its own group). A group id stays reserved while
    any member lives, so members of a group whose leader is gone are the leader's."""
    pid = int(entry.get("pid", 0))
    if pid <= 0:
        return set()
    found: set[int] = set()
    try:
        leader = psutil.Process(pid)
        if abs(leader.create_time() - float(entry.get("create_time") or 0)) >= SAME_START_S:
            return set()  # the pid is another process now: neither it nor its group is ours
        found.add(pid)
        found |= {c.pid for c in leader.children(recursive=True)}
    except psutil.NoSuchProcess:
        pass  # gone: its group's members, if any, are still ours
    except psutil.Error:
        return set()
    for proc in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(proc.info["pid"]) == pid and proc.info["pid"] != os.getpid():
                found.add(proc.info["pid"])
    return found


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _wait_gone(pids: set[int]) -> set[int]:
    deadline = time.monotonic() + _GONE_TIMEOUT_S
    while (left := {p for p in pids if _alive(p)}) and time.monotonic() < deadline:
        time.sleep(_POLL_S)
    return left


@contextlib.contextmanager
def _locked(run_dir: Path) -> Iterator[None]:
    with open(run_dir / ".owner.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
