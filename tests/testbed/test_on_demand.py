"""Where ``OnDemandPlatform`` puts its platform: the run's stack dir, unless another live
process of the run (a step on another Celery worker) has its platform there. Owner
records are written as a running stack writes them; no platform is started."""

from __future__ import annotations

import json
import os
from pathlib import Path

from nightly_pipeline.testbed.embedded import PlatformSettings
from nightly_pipeline.testbed.on_demand import OnDemandPlatform
from nightly_pipeline.testbed.stack.owner import RECORD, identity


def _owned_by(run_dir: Path, pid: int) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / RECORD).write_text(json.dumps({"owner": identity(pid), "processes": []}))


def _first_dir(stack_dir: Path) -> Path:
    platform = OnDemandPlatform(stack_dir, PlatformSettings())
    platform.attempts = 1  # as _start counts the attempt before choosing the dir
    return platform._run_dir()


def test_platform_goes_in_the_runs_stack_dir(tmp_path: Path) -> None:
    assert _first_dir(tmp_path / "run-1") == tmp_path / "run-1"


def test_platform_goes_beside_another_live_process_platform(tmp_path: Path) -> None:
    _owned_by(tmp_path / "run-1", os.getppid())  # alive, and not this process
    assert _first_dir(tmp_path / "run-1") == tmp_path / f"run-1-pid{os.getpid()}"


def test_a_dead_owners_dir_is_reused(tmp_path: Path) -> None:
    run_dir = tmp_path / "run-1"
    _owned_by(run_dir, os.getppid())
    record = json.loads((run_dir / RECORD).read_text())
    record["owner"]["create_time"] = 1.0  # that pid, but another process: the owner is gone
    (run_dir / RECORD).write_text(json.dumps(record))
    assert _first_dir(run_dir) == run_dir
