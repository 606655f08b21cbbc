"""The embedded platform as the suite's tests start it (one per test module), one test
run against it at the ci profile, and a test's scenario module."""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Iterator, Mapping
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from nightly_pipeline.suite import catalog
from nightly_pipeline.suite.context import SuiteTest
from nightly_pipeline.suite.profiles import PROFILES
from nightly_pipeline.suite.progress import Watch
from nightly_pipeline.suite.runner import CheckOutcome, TestOutcome, run_suite_test
from nightly_pipeline.suite.target import Target
from nightly_pipeline.testbed.embedded import Platform, PlatformSettings, embedded_platform
from nightly_pipeline.testbed.stack import StackConfig

NIGHT = date(2026, 11, 20)


@contextlib.contextmanager
def ci_platform(
    tmp_path_factory: pytest.TempPathFactory,
    system_dir: Path,
    name: str,
    *,
    stack_settings: Mapping[str, Any] | None = None,
    **settings: Any,
) -> Iterator[Platform]:
    """20 users with cheap password hashes, unless ``settings`` say otherwise;
    ``stack_settings``: ``StackConfig`` fields (PostgreSQL's ``max_connections``...)."""
    stack = StackConfig(
        run_dir=tmp_path_factory.mktemp(name) / "run",
        system_dir=system_dir,
        stop_timeout_s=5,
        search_path=os.environ.get("PATH"),
        **(stack_settings or {}),
    )
    chosen = {"users": 20, "password_hash_n": 2**10, **settings}
    with embedded_platform(stack, PlatformSettings(**chosen)) as up:
        yield up


def run_ci(
    test: SuiteTest,
    target: Target,
    run_dir: Path,
    watch: Watch = lambda _: None,
) -> TestOutcome:
    """``test`` at the ci profile against ``target`` for ``NIGHT``; ``watch`` gets its
    figures about once a second while its load runs (``TestProgress``)."""
    return run_suite_test(
        test,
        PROFILES["ci"],
        target,
        night=NIGHT,
        run_id=test.spec.name,
        run_dir=run_dir,
        watch=watch,
    )


def assert_blocking_passed(outcome: TestOutcome) -> dict[str, CheckOutcome]:
    """Every blocking (error) check passed and the record says so; WARN checks (latency
    and ratio targets) are printed, not required: on a busy machine they miss for reasons
    that are not the platform's, and a WARN miss leaves the record "passed" (runner.py).
    Returns the outcomes by check name."""
    for c in outcome.checks:
        if c.check.severity == "warn":
            verdict = "ok" if c.passed else "MISSED"
            print(f"WARN {outcome.spec.id} {c.check.name}: {verdict}, observed {c.observed:g}")
    blocking = [c for c in outcome.checks if c.check.severity == "error"]
    assert blocking and all(c.passed for c in blocking), outcome.record.detail
    assert outcome.record.status == "passed", outcome.record.detail
    return {c.check.name: c for c in outcome.checks}


def metric(outcome: TestOutcome, name: str) -> float:
    """A whole-run figure of the outcome (``stale_reads.count``); fails if not recorded."""
    found = [m.value for m in outcome.record.metrics if m.metric == name]
    assert found, f"{name} not recorded"
    return found[0]


def scenario_module(test_id: str) -> ModuleType:
    """A test's module (``suite/scenarios/<id>_<name>.py``: its name starts with a digit,
    so ``import`` cannot name it), for the helpers its tests call directly."""
    return importlib.import_module(f"{catalog.PACKAGE}.{catalog.BY_ID[test_id].spec.key}")
