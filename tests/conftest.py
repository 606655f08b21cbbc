"""Fixtures shared by every test package."""

from __future__ import annotations

import shutil
import tempfile
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


@pytest.fixture(scope="session")
def ci_night(tmp_path_factory: pytest.TempPathFactory) -> CiNight:
    """Every test of the suite at ci through ``nightly run``, once (``tests/ci_night.py``)."""
    return run_ci_night(tmp_path_factory.mktemp("ci-night"))
