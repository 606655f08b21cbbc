"""``tests.processes.processes_left``, the helper every "nothing left running" assertion
uses, finds what it names and only that. Real sleeping Python processes."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from tests.processes import descendants, processes_left

SLEEP = "import time; time.sleep(300)"


@pytest.fixture
def sleeper() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A sleeping Python whose command line names a unique directory, with a mark in its
    environment; killed on the way out."""
    mark = f"/tmp/left-{uuid.uuid4().hex}"
    child = subprocess.Popen(
        [sys.executable, "-c", SLEEP, mark], env={**os.environ, "LEFT_MARK": mark}
    )
    try:
        yield child, mark
    finally:
        child.kill()
        child.wait()


def test_a_process_naming_the_directory_is_found_until_it_is_gone(sleeper) -> None:
    child, mark = sleeper
    assert _eventually_named(mark) == [f"{child.pid} {sys.executable} -c {SLEEP} {mark}"]
    child.kill()
    child.wait()
    assert processes_left(mark) == []


def test_the_scopes_narrow_and_widen_what_is_found(sleeper) -> None:
    child, mark = sleeper
    _eventually_named(mark)
    assert processes_left(mark, among=descendants()) != []
    assert processes_left(mark, among={os.getpid()}) == []  # not among those pids
    assert processes_left(mark, environ={"LEFT_MARK": mark}) != []
    assert processes_left(mark, environ={"LEFT_MARK": "another run"}) == []
    assert processes_left("no process names this", pids={child.pid}) != []


def _eventually_named(mark: str) -> list[str]:
    """The sleeper once its command line is readable (it is from the exec on; bounded)."""
    for _ in range(100):
        if found := processes_left(mark):
            return found
        subprocess.run(["true"], check=True)  # a short pause
    raise AssertionError(f"no process named {mark}")
