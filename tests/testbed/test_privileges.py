"""Running PostgreSQL unprivileged as root: the install under a 0700 directory (like a
wheel under /root) is copied once to a readable cache and then runs as that user."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from nightly_pipeline.testbed.stack import find_postgres
from nightly_pipeline.testbed.stack.privileges import (
    can_traverse,
    ensure_user,
    readable_install,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@pytest.fixture
def private_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="nightly-private-"))
    path.chmod(0o700)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_wheel_under_a_private_dir_is_copied_and_runs_unprivileged(
    private_dir: Path, system_dir: Path
) -> None:
    bins = find_postgres()
    anchor, parts = bins.copy_plan()
    for part in parts:  # the wheel's layout: <pkg>/pginstall and, if any, <pkg>.libs
        shutil.copytree(part, private_dir / part.relative_to(anchor), symlinks=True)
    hidden = find_postgres(private_dir / bins.bin_dir.relative_to(anchor))
    user = ensure_user("nightly-pg")
    assert user.uid != 0
    assert not can_traverse(hidden.bin_dir, user)

    usable = readable_install(hidden, user, system_dir)
    assert usable.bin_dir.is_relative_to(system_dir)
    assert can_traverse(usable.bin_dir, user)
    for tool in ("initdb", "pg_ctl", "postgres"):  # initdb/pg_ctl load vendored libpq
        done = subprocess.run(
            [str(usable.tool(tool)), "--version"], capture_output=True, **user.popen_kwargs()
        )
        assert done.returncode == 0, done.stderr
    assert readable_install(hidden, user, system_dir) == usable  # cached: copied once


def test_readable_install_is_used_in_place(system_dir: Path) -> None:
    bins = find_postgres()
    user = ensure_user("nightly-pg")
    if not can_traverse(bins.bin_dir, user):
        pytest.skip("the installed wheel is not readable here; the copy test covers it")
    assert readable_install(bins, user, system_dir) == bins
