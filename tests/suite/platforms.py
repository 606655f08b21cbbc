"""The embedded platform as the suite's tests start it (one per test module), and one
test run of a spec against it at the ci profile."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from nightly_pipeline.resources.target import PLATFORM_PROCESSES
from nightly_pipeline.suite.runner import TestOutcome, run_suite_test
from nightly_pipeline.suite.spec import PROFILES, TestSpec
from nightly_pipeline.testbed.embedded import Platform, PlatformSettings, embedded_platform
from nightly_pipeline.testbed.stack import StackConfig
from nightly_pipeline.testbed.target import Target

NIGHT = date(2026, 11, 20)


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


def pids_of(platform: Platform) -> dict[str, int]:
    """The platform's processes whose memory the suite watches (as TargetResource does)."""
    return {name: platform.endpoints.pids[name] for name in PLATFORM_PROCESSES}


def run_ci(
    spec: TestSpec, target: Target, run_dir: Path, pids: Mapping[str, int] | None = None
) -> TestOutcome:
    """``spec`` at the ci profile against ``target`` for ``NIGHT``."""
    return run_suite_test(
        spec, PROFILES["ci"], target, night=NIGHT, run_id=spec.name, run_dir=run_dir, pids=pids
    )


def metric(outcome: TestOutcome, name: str) -> float:
    """A whole-run figure of the outcome (``stale_reads.count``); fails if not recorded."""
    found = [m.value for m in outcome.record.metrics if m.metric == name]
    assert found, f"{name} not recorded"
    return found[0]
