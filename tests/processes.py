"""What a test left running, and stopping what it started: the helpers the tests use to
assert that no process of theirs outlived them (DESIGN §8: every process a run starts
dies with it), to wait for processes to be gone, and to interrupt a command's group."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Collection, Iterable, Iterator, Mapping
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


def tree(pids: Iterable[int]) -> set[int]:
    """The pids, their descendants and their groups' members that are alive."""
    pids = set(pids)
    found = set()
    for proc in psutil.process_iter(["pid", "status"]):
        with contextlib.suppress(psutil.Error, OSError):
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if proc.pid in pids or os.getpgid(proc.pid) in pids:
                found.add(proc.pid)
                found |= {c.pid for c in proc.children(recursive=True)}
    return found


def wait_gone(pids: Iterable[int], timeout_s: float = 15.0) -> set[int]:
    deadline = time.monotonic() + timeout_s
    while (left := tree(pids)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def kill_all(pids: Iterable[int]) -> None:
    for pid in tree(pids):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def group_killed_on_exit(child: subprocess.Popen) -> Iterator[subprocess.Popen]:
    """Whatever the block does (a failed assertion included), ``child``'s process group is
    SIGKILLed on the way out if it is still running: a test never leaves its run behind."""
    try:
        yield child
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()


def interrupt(child: subprocess.Popen, sig: int = signal.SIGINT) -> str:
    """Send ``sig`` to ``child``'s process group (as Ctrl-C at a terminal does) and return
    its remaining output once it exits (the 300 s timeout only catches a hang)."""
    os.killpg(child.pid, sig)
    out, _ = child.communicate(timeout=300)
    return out
