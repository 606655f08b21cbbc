"""Fixtures for the launcher tests: real PostgreSQL and Redis, started by the launcher."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from nightly_pipeline.testbed.stack import EmbeddedStack, Endpoints, StackConfig


@pytest.fixture
def stack_config(tmp_path: Path, system_dir: Path) -> StackConfig:
    return StackConfig(run_dir=tmp_path / "run", system_dir=system_dir, stop_timeout_s=5)


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, system_dir: Path
) -> Iterator[tuple[EmbeddedStack, Endpoints]]:
    config = StackConfig(
        run_dir=tmp_path_factory.mktemp("stack") / "run",
        system_dir=system_dir,
        search_path=os.environ.get("PATH"),
    )
    launcher = EmbeddedStack(config)
    with launcher as endpoints:
        yield launcher, endpoints


@pytest.fixture
def endpoints(stack: tuple[EmbeddedStack, Endpoints]) -> Endpoints:
    return stack[1]
