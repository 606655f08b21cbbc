"""Fixtures shared by every test package."""

from __future__ import annotations

import shutil
import signal
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ci_night import CiNight, run_ci_night


@pytest.fixture(scope="session")
def system_dir() -> Iterator[Path]:
    """Stand-in for /var/lib/nightly-pipeline (root only): world-traversable, removed after."""
    path = Path(tempfile.mkdtemp(prefix="nightly-sys-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def signal_handlers_restored() -> Iterator[None]:
    """SIGINT and SIGTERM handled after each test as before it. Dagster's execution swaps
    in a SIGINT handler that only records the interrupt and restores the previous one
    when its context closes; a context left to the garbage collector can close after
    another has opened and leave the recording handler in place, so that a later Ctrl-C
    test's interrupt never raises. Restored here, and named in a warning."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in before.items():
        now = signal.getsignal(sig)
        if now is not handler:
            warnings.warn(f"{sig.name} handler left as {now!r}: restored", stacklevel=1)
            signal.signal(sig, handler)


@pytest.fixture(scope="session")
def ci_night(tmp_path_factory: pytest.TempPathFactory) -> CiNight:
    """Every test of the suite at ci through ``nightly run``, once (``tests/ci_night.py``)."""
    return run_ci_night(tmp_path_factory.mktemp("ci-night"))
