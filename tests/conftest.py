"""Fixtures shared by every test package."""

from __future__ import annotations

import shutil
import signal
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ci_night import CiNight, run_ci_night


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C as a terminal delivers it, even when pytest was started in the background
    of a non-interactive shell (`make test &`, a CI runner): such a shell starts its
    jobs with SIGINT ignored, Python then keeps it ignored, and so would every process
    a test starts — the Ctrl-C tests would see no interrupt at all."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def system_dir() -> Iterator[Path]:
    """Stand-in for /var/lib/nightly-pipeline (root only): world-traversable, removed after."""
    path = Path(tempfile.mkdtemp(prefix="nightly-sys-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def sigint_handler_restored() -> Iterator[None]:
    """SIGINT handled after each test as before it. Dagster's execution swaps in a
    handler that only records the interrupt and restores the previous one when its
    context closes; one left in place would make a later Ctrl-C test's interrupt never
    raise. Restored here, and named in a warning. (SIGTERM is not watched: Dagster
    points it at the SIGINT handler for good, by design.)"""
    before = signal.getsignal(signal.SIGINT)
    yield
    now = signal.getsignal(signal.SIGINT)
    if now is not before:
        warnings.warn(f"SIGINT handler left as {now!r} (was {before!r}): restored", stacklevel=1)
        signal.signal(signal.SIGINT, before)


@pytest.fixture(scope="session")
def ci_night(tmp_path_factory: pytest.TempPathFactory) -> CiNight:
    """Every test of the suite at ci through ``nightly run``, once (``tests/ci_night.py``)."""
    return run_ci_night(tmp_path_factory.mktemp("ci-night"))


DOCKER_TESTS = "tests.testbed.docker."


def pytest_itemcollected(item: pytest.Item) -> None:
    """Groups for ``pytest -n N --dist loadgroup`` (``make test``): a module's tests run in
    one worker, so its module-scoped platforms start once; every test that reads the
    session's ``ci_night`` runs in one worker too, so the night runs once. (Marked as
    each test is collected: pytest-xdist reads the marks in its own
    ``pytest_collection_modifyitems``.)"""
    module = getattr(item, "module", None)
    reads_night = "ci_night" in getattr(item, "fixturenames", ())
    group = "ci_night" if reads_night else getattr(module, "__name__", "")
    if group.startswith(DOCKER_TESTS):
        group = "docker"  # one project dockerd at a time on a machine: one worker
    item.add_marker(pytest.mark.xdist_group(group))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The night's readers first: the longest group, so a worker free early picks up the
    rest instead of waiting for it at the end."""
    items.sort(key=lambda item: "ci_night" not in getattr(item, "fixturenames", ()))


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's, on the controller
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    """Stop at once if pytest-xdist dropped the groups (it did, silently, under pytest
    9.2: pytest-xdist#1386, hence the pin): the night would run in every worker."""
    ungrouped = [nodeid for nodeid in ids if "@" not in nodeid]
    if ungrouped and node.config.getvalue("dist") == "loadgroup":
        pytest.exit(
            f"pytest-xdist did not group {len(ungrouped)} test(s), e.g. {ungrouped[0]} "
            "(pytest-xdist#1386): install a pytest it supports (pyproject.toml's pin)",
            returncode=4,
        )
