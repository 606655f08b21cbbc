"""A fanned-out night's Dagster pieces, without a platform: each target's job is
``nightly_suite`` over the same asset keys, its steps in the target's own pool and in
the plan's order; the plan travels as run tags; where the targets are comes from the
command line's choice."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import dagster as dg
import pytest

from nightly_pipeline.automation.fanout import (
    EXPECTED_END_TAG,
    NIGHT_PLAN_TAG,
    PLAN_TAG,
    TARGET_TAG,
    plan_tags,
    target_job,
    target_pool,
)
from nightly_pipeline.automation.jobs import nightly_suite_job
from nightly_pipeline.automation.target_worker import Assignment, WorkerResult
from nightly_pipeline.definitions import defs
from nightly_pipeline.report.night_summary import CheckLine
from nightly_pipeline.suite.catalog import TESTS
from nightly_pipeline.suite.night_plan import PlacedTarget, PlanError, night_places, plan_night
from nightly_pipeline.suite.profiles import PROFILES

KEYS = ("06_sustained_login", "02_conversation_crud")


def test_a_targets_job_is_nightly_suite_over_the_same_assets_in_its_own_pool():
    job = target_job("embedded-2", KEYS)
    suite = defs.resolve_job_def(nightly_suite_job.name)
    assert job.name == suite.name
    assert {n.definition.pool for n in job.graph.nodes} == {"target/embedded-2"}
    keys = job.asset_layer.selected_asset_keys
    assert keys and keys <= suite.asset_layer.selected_asset_keys
    assert {k.path[0] for k in keys} == set(KEYS)


def test_a_targets_steps_run_in_the_plans_order():
    """In-process execution takes the higher ``dagster/priority`` first."""
    job = target_job("a", KEYS)
    priority = {n.name: int(n.tags["dagster/priority"]) for n in job.graph.nodes}
    assert sorted(priority, key=priority.get, reverse=True) == list(KEYS)


def test_an_unknown_test_is_refused():
    with pytest.raises(ValueError, match="unknown test key"):
        target_job("a", ("99_nothing",))


def test_the_plan_is_in_each_runs_tags():
    plan = plan_night(TESTS, PROFILES["nightly"], ("a", "b"))
    start = datetime(2026, 11, 30, 2, 10, tzinfo=UTC)
    tags = plan_tags(plan, plan.targets[1], start)
    assert tags[TARGET_TAG] == "b"
    assert tags[PLAN_TAG] == plan.targets[1].summary()
    assert json.loads(tags[NIGHT_PLAN_TAG])["targets"]["a"][0]["test"] == plan.targets[0].keys[0]
    assert datetime.fromisoformat(tags[EXPECTED_END_TAG]) > start
    assert target_pool("b") == "target/b"


def test_places_are_n_embedded_platforms_or_a_files_targets(tmp_path):
    assert night_places("embedded", 3) == {
        f"embedded-{i}": PlacedTarget("embedded") for i in (1, 2, 3)
    }
    path = tmp_path / "targets.json"
    path.write_text(json.dumps({"targets": [{"name": "a"}, {"name": "b"}]}))
    assert night_places(str(path), None) == {
        "a": PlacedTarget(str(path), "a"),
        "b": PlacedTarget(str(path), "b"),
    }
    assert list(night_places(str(path), 1)) == ["a"]
    with pytest.raises(PlanError, match="lists 2 target"):
        night_places(str(path), 3)


def test_an_assignment_and_a_result_survive_the_trip_to_the_worker(tmp_path):
    job = Assignment(
        "a", "embedded", "", KEYS, "ci", "2026-11-18", str(tmp_path), "r1", {"x": "y"}, "out"
    )
    job.write(tmp_path / "job.json")
    assert Assignment.read(tmp_path / "job.json") == job
    line = CheckLine("02_conversation_crud", "latency", "p95_under_200ms", True, True, "d", 1.5)
    result = WorkerResult("r1", "succeeded", False, ("e",), (line,))
    result.write(tmp_path / "result.json")
    assert WorkerResult.read(tmp_path / "result.json") == result


def test_the_code_locations_nightly_suite_keeps_the_one_target_pool():
    suite = defs.resolve_job_def(nightly_suite_job.name)
    assert {n.definition.pool for n in suite.graph.nodes if n.definition.pool} == {"target"}
    assert isinstance(suite, dg.JobDefinition)
