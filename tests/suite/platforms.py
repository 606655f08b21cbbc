"""The embedded platform as the suite's tests start it (one per test module)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nightly_pipeline.testbed.embedded import Platform, PlatformSettings, embedded_platform
from nightly_pipeline.testbed.stack import StackConfig


@contextlib.contextmanager
def ci_platform(
    tmp_path_factory: pytest.TempPathFactory, system_dir: Path, name: str, **settings: Any
) -> Iterator[Platform]:
    """20 users with cheap password hashes, unless ``settings`` say otherwise."""
    stack = StackConfig(
        run_dir=tmp_path_factory.mktemp(name) / "run",
        system_dir=system_dir,
        stop_timeout_s=5,
        search_path=os.environ.get("PATH"),
    )
    chosen = {"users": 20, "password_hash_n": 2**10, **settings}
    with embedded_platform(stack, PlatformSettings(**chosen)) as up:
        yield up
