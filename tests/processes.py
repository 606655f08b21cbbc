"""What a test left running: the one helper the tests use to assert that no process of
theirs outlived them (DESIGN §8: every process a run starts dies with it)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path

import psutil

SHOWN = 120  # characters of each command line in a failure's message


def descendants() -> set[int]:
    """The pids of this process's descendants, alive now."""
    return {p.pid for p in psutil.Process().children(recursive=True)}


def processes_left(
    naming: str | Path | None = None,
    *,
    pids: Collection[int] = (),
    among: Collection[int] | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """``"<pid> <command line>"`` of every live process (zombies are dead) whose command
    line contains ``naming`` (a run's directory, a module name) or whose pid is in
    ``pids``; with ``among``, only those pids are looked at (a test's own descendants,
    where another test may run the same command); with ``environ``, only processes whose
    environment holds those values (a mark a run's processes inherit, wherever they end
    up). Empty: nothing was left."""
    name = None if naming is None else str(naming)
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if among is not None and proc.pid not in among:
            continue
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        line = " ".join(proc.info["cmdline"] or ())
        if not (proc.pid in pids or (name is not None and name in line)):
            continue
        if environ is None or _holds(proc, environ):
            found.append(f"{proc.pid} {line[:SHOWN]}")
    return found


def _holds(proc: psutil.Process, environ: Mapping[str, str]) -> bool:
    try:
        found = proc.environ()
    except psutil.Error:  # gone since listed, or not ours to read
        return False
    return all(found.get(key) == value for key, value in environ.items())
