"""A night fanned out over N targets in Dagster: one ``nightly_suite`` run per target,
with the tests the plan (``suite.night_plan``) gave it, its steps in the target's own
pool ``target/<name>``.

Why one run per target, each from its own job: a Dagster pool is fixed on the op
definition (``pool=``; Dagster 1.13 reads neither run tags nor run config for it), and
one code location cannot hold two definitions of one asset key. So a target's job is
built here from the catalog's tests with ``build_test_asset(pool=target_pool(name))``,
named ``nightly_suite`` over the same asset keys: the UI shows the night's runs,
materialisations and checks on the same assets as a one-target night's, each run's steps
in its target's pool (one slot each: ``concurrency.pools.default_limit``), so a target
still runs one test at a time while the targets run side by side. The steps follow the
plan's order (``dagster/priority``), and each run carries its target's line of the plan
and the whole night's plan as tags, visible in the UI from the moment it starts.

A scheduled (daemon-launched) night cannot use these jobs (the daemon launches the code
location's): with ``$NIGHTLY_SCHEDULE_TARGETS`` it requests one run of the code
location's ``nightly_suite`` per target, with the same tags (``automation.schedules``).
"""

from collections.abc import Sequence
from datetime import datetime, timedelta

import dagster as dg

from nightly_pipeline.assets.steps import TARGET_POOL
from nightly_pipeline.assets.suite import build_test_asset
from nightly_pipeline.automation.jobs import nightly_suite_job
from nightly_pipeline.suite.catalog import TESTS
from nightly_pipeline.suite.night_plan import NightPlan, TargetPlan

TARGET_TAG = "nightly/target"
"""The target a fanned-out run's tests ran on."""
PLAN_TAG = "nightly/plan"
"""This target's tests in order with their expected ends (``TargetPlan.summary``)."""
NIGHT_PLAN_TAG = "nightly/night_plan"
"""The whole night's plan, JSON (``NightPlan.to_json``)."""
EXPECTED_END_TAG = "nightly/expected_end"
"""When the night is expected to end (UTC, ISO 8601)."""
PRIORITY_TAG = "dagster/priority"


def target_pool(name: str) -> str:
    """The pool of the target called ``name``: one test on it at a time."""
    return f"{TARGET_POOL}/{name}"


def target_job(name: str, keys: Sequence[str]) -> dg.JobDefinition:
    """``nightly_suite`` over the tests ``keys`` (in the plan's order), their steps in
    ``target_pool(name)`` and run in that order."""
    by_key = {t.spec.key: t for t in TESTS}
    unknown = [k for k in keys if k not in by_key]
    if unknown:
        raise ValueError(f"unknown test key(s) {', '.join(unknown)}")
    assets = [
        build_test_asset(
            by_key[key],
            pool=target_pool(name),
            op_tags={PRIORITY_TAG: str(len(keys) - i)},  # higher runs first
        )
        for i, key in enumerate(keys)
    ]
    job = dg.define_asset_job(
        nightly_suite_job.name,
        selection=assets,
        tags=nightly_suite_job.tags,
        description=f"The night's tests planned on target {name}.",
    )
    from nightly_pipeline.definitions import defs  # the code location's resources

    return dg.Definitions(assets=assets, jobs=[job], resources=defs.resources).resolve_job_def(
        nightly_suite_job.name
    )


def plan_tags(plan: NightPlan, target: TargetPlan, starts_at: datetime) -> dict[str, str]:
    """What a target's run shows in the UI about the night it belongs to."""
    return {
        TARGET_TAG: target.name,
        PLAN_TAG: target.summary(),
        NIGHT_PLAN_TAG: plan.to_json(),
        EXPECTED_END_TAG: (starts_at + timedelta(seconds=plan.end_s)).isoformat(timespec="seconds"),
    }
