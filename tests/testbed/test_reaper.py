"""A killed stack owner leaves nothing behind (Issue 15, item 1): the stack's processes
die with it (PDEATHSIG, spawned from a thread that outlives the caller's), and the next
start reaps what is left of a dead owner's stack (``owner.json``): processes killed by
pid + create time (a reused pid is never touched), data removed. Real processes
throughout: the owners are real Python processes SIGKILLed by the test."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from nightly_pipeline.testbed.stack import EmbeddedStack, StackConfig
from nightly_pipeline.testbed.stack.owner import RECORD, StackOwner, identity
from nightly_pipeline.testbed.stack.reaper import PREFIX, reap_dead_stacks
from tests.processes import kill_all, tree, wait_gone

DEADLINE_S = 60.0

# An owner whose processes are not tied to it (no PDEATHSIG): what a server that forked
# off, or another OS, would leave. "server" leads a group with a child; "forked" exits
# at once and leaves its child orphaned in its group.
LOOSE_OWNER = """
import subprocess, sys, time
from pathlib import Path
from nightly_pipeline.testbed.stack.owner import StackOwner

run_dir = Path(sys.argv[1])
data = run_dir / "postgres" / "data"
data.mkdir(parents=True)
(data / "PG_VERSION").write_text("16\\n")
owner = StackOwner(run_dir)
owner.claim(remove=[data])
server = subprocess.Popen(["sh", "-c", "sleep 600 & exec sleep 601"], start_new_session=True)
owner.add_process("server", server.pid)
forked = subprocess.Popen(["sh", "-c", "sleep 602 & sleep 1"], start_new_session=True)
owner.add_process("forked", forked.pid)
forked.wait()
print("READY", flush=True)
time.sleep(600)
"""

# A real stack, started from a thread that ends before the owner is killed.
STACK_OWNER = """
import os, sys, threading, time
from pathlib import Path
from nightly_pipeline.testbed.stack import EmbeddedStack, StackConfig

config = StackConfig(run_dir=Path(sys.argv[1]), system_dir=Path(sys.argv[2]),
                     search_path=os.environ.get("PATH"))
stack = EmbeddedStack(config)
starter = threading.Thread(target=stack.start)
starter.start()
starter.join()
assert stack.endpoints is not None
print("READY", flush=True)
time.sleep(600)
"""


@contextlib.contextmanager
def owner_process(script: str, *args: Path) -> Iterator[subprocess.Popen[str]]:
    """Run ``script`` until it prints READY (bounded); SIGKILLed on the way out."""
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert child.stdout is not None
        seen = []
        deadline = time.monotonic() + DEADLINE_S
        for line in child.stdout:  # ends at EOF if the owner dies first
            seen.append(line)
            if line.startswith("READY") or time.monotonic() > deadline:
                break
        assert seen and seen[-1].startswith("READY"), "".join(seen)
        yield child
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()


def recorded(run_dir: Path) -> dict[str, int]:
    record = json.loads((run_dir / RECORD).read_text())
    return {p["name"]: p["pid"] for p in record["processes"]}


def test_a_dead_owners_processes_and_data_are_reaped(tmp_path: Path) -> None:
    """Processes that outlive their killed owner (a group leader with a child, and an
    orphan whose group leader already exited) are SIGKILLed by the reaper, the data is
    removed, the record deleted; a second reap finds nothing."""
    run_dir = tmp_path / "stacks" / "run-1"
    with owner_process(LOOSE_OWNER, run_dir) as owner:
        pids = recorded(run_dir)
        alive = tree(pids.values())
        assert len(alive) == 3, alive  # sleep 601 + its sleep 600, the orphaned sleep 602
        owner.kill()
        owner.wait()
    try:
        assert tree(pids.values()) == alive  # nothing killed them: the reaper must

        lines = reap_dead_stacks(tmp_path / "stacks")

        assert len(lines) == 1 and lines[0].startswith(PREFIX), lines
        assert f"owner pid {owner.pid} is gone" in lines[0]
        assert "killed 3 process(es) (forked, server)" in lines[0]
        assert wait_gone(alive, 1.0) == set()
        assert not (run_dir / "postgres" / "data").exists()
        assert not (run_dir / RECORD).exists()
        assert reap_dead_stacks(tmp_path / "stacks") == []
    finally:
        kill_all(alive)


def test_a_live_owners_stack_is_left_alone(tmp_path: Path) -> None:
    """A record whose owner is alive (this test's process) is not touched."""
    run_dir = tmp_path / "run"
    sleeper = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        owner = StackOwner(run_dir)
        owner.claim(remove=[run_dir / "redis"])
        (run_dir / "redis").mkdir()
        owner.add_process("redis", sleeper.pid)

        assert reap_dead_stacks(tmp_path) == []

        assert sleeper.poll() is None
        assert (run_dir / "redis").is_dir() and (run_dir / RECORD).is_file()
        owner.release()
        assert not (run_dir / RECORD).exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_reused_pid_is_never_killed(tmp_path: Path) -> None:
    """A dead owner's record names a pid that is now another process (its create time
    differs): that process and its group are left alone; the stack's data still goes."""
    run_dir = tmp_path / "run"
    (run_dir / "redis").mkdir(parents=True)
    gone = subprocess.Popen(["true"])
    dead_owner = identity(gone.pid)
    gone.wait()
    stranger = subprocess.Popen(["sh", "-c", "sleep 600 & exec sleep 601"], start_new_session=True)
    try:
        then = psutil.Process(stranger.pid).create_time() - 100  # "the pid's earlier life"
        (run_dir / RECORD).write_text(
            json.dumps(
                {
                    "owner": dead_owner,
                    "processes": [{"name": "redis", "pid": stranger.pid, "create_time": then}],
                    "remove": [str(run_dir / "redis")],
                }
            )
        )

        (line,) = reap_dead_stacks(tmp_path)

        assert "killed 0 process(es)" in line, line
        assert len(tree([stranger.pid])) == 2  # it and its child, untouched
        assert not (run_dir / "redis").exists()
    finally:
        kill_all([stranger.pid])
        stranger.wait()


def test_an_unrecorded_postmaster_named_by_its_pid_file_is_reaped(tmp_path: Path) -> None:
    """A server that forked off (``pg_ctl start`` daemonizes): not recorded, but named by
    ``postmaster.pid`` in the recorded data dir. Killed if it is a postgres started after
    the stack's first process; an older one is not the stack's and is left alone."""
    postgres = tmp_path / "bin" / "postgres"  # a process named postgres: sleep, renamed
    postgres.parent.mkdir()
    shutil.copy(shutil.which("sleep") or "/bin/sleep", postgres)
    older = subprocess.Popen([str(postgres), "600"], start_new_session=True)
    stacks = tmp_path / "stacks"
    first, second = stacks / "run-1", stacks / "run-2"
    started = []
    try:
        time.sleep(0.05)  # create times differ by at least a clock tick
        for run_dir in (first, second):
            data = run_dir / "postgres" / "data"
            data.mkdir(parents=True)
            recorded_proc = subprocess.Popen(["sleep", "600"], start_new_session=True)
            started.append(recorded_proc)
            record = {
                "owner": {"pid": 0, "create_time": None},
                "processes": [{"name": "redis", **identity(recorded_proc.pid)}],
                "remove": [str(data)],
            }
            (run_dir / RECORD).write_text(json.dumps(record))
        forked = subprocess.Popen([str(postgres), "601"], start_new_session=True)
        started.append(forked)
        (first / "postgres" / "data" / "postmaster.pid").write_text(f"{forked.pid}\n/data\n")
        (second / "postgres" / "data" / "postmaster.pid").write_text(f"{older.pid}\n/data\n")

        one, two = reap_dead_stacks(stacks)

        assert "killed 2 process(es) (postmaster, redis)" in one, one
        assert forked.wait(5) == -signal.SIGKILL
        assert "killed 1 process(es) (redis)" in two, two
        assert older.poll() is None
    finally:
        for proc in (older, *started):
            proc.kill()
            proc.wait()


def test_data_outside_the_run_dir_is_never_removed(tmp_path: Path) -> None:
    """A record naming a place outside its run dir (and not its ``postgres.location``)
    keeps it; the run dir's own data and the named external home go."""
    run_dir, elsewhere, pg_home = tmp_path / "run", tmp_path / "precious", tmp_path / "pg"
    for place in (run_dir / "redis", elsewhere, pg_home / "data"):
        place.mkdir(parents=True)
    (run_dir / "postgres.location").write_text(f"{pg_home}\n")
    places = [run_dir / "redis", elsewhere, pg_home]
    dead = {"pid": 0, "create_time": None}
    record = {"owner": dead, "processes": [], "remove": [str(p) for p in places]}
    (run_dir / RECORD).write_text(json.dumps(record))

    (line,) = reap_dead_stacks(tmp_path)

    assert elsewhere.is_dir() and f"left {elsewhere} (not the stack's" in line, line
    assert not (run_dir / "redis").exists() and not pg_home.exists()


def test_an_unreadable_record_is_named_and_left(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / RECORD).write_text("{not json")
    (line,) = reap_dead_stacks(tmp_path)
    assert "NOT reaped" in line and str(run_dir / RECORD) in line and "remove it" in line
    assert (run_dir / RECORD).is_file()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PDEATHSIG is Linux's")
def test_a_killed_owners_real_stack_dies_with_it_and_its_data_is_reaped(
    tmp_path: Path, system_dir: Path
) -> None:
    """PostgreSQL, Redis and both proxies, started from a thread that has ended: alive
    while their owner lives, all gone (backends too) once it is SIGKILLed, with no reaper;
    the next stack started beside it reaps the data and the record, and its own clean
    teardown leaves no record."""
    stacks = tmp_path / "stacks"
    run_dir = stacks / "run-1"
    with owner_process(STACK_OWNER, run_dir, system_dir) as owner:
        pids = recorded(run_dir)
        assert set(pids) == {"redis", "proxy-postgres", "proxy-redis", "postgres"}
        alive = tree(pids.values())
        assert all(psutil.pid_exists(pid) for pid in pids.values())  # the thread ended
        assert len(alive) > len(pids)  # PostgreSQL's auxiliary processes
        data = json.loads((run_dir / RECORD).read_text())["remove"]
        owner.kill()
        owner.wait()
    try:
        assert wait_gone(alive) == set()
        assert all(os.path.exists(p) for p in data)  # the data waits for the reaper

        config = StackConfig(
            run_dir=stacks / "run-2", system_dir=system_dir, search_path=os.environ.get("PATH")
        )
        beside = EmbeddedStack(config)
        with beside:
            (line,) = beside.reaped
            assert (stacks / "run-2" / RECORD).is_file()
        assert not (stacks / "run-2" / RECORD).exists()

        assert line.startswith(PREFIX) and "killed 0 process(es)" in line, line
        assert not any(os.path.exists(p) for p in data)
        assert not (run_dir / RECORD).exists()
        assert (run_dir / "logs" / "postgres.log").is_file()  # the logs stay
    finally:
        kill_all(alive)
