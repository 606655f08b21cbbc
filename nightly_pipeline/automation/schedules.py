"""The nightly suite at 02:10 UTC (the plan's time) and Test 15 on Sundays. The night's
verdicts and report are not scheduled: the ``nightly_suite_*`` run-status sensors start
``nightly_history`` when the suite run ends.

A scheduled night runs an explicit profile (``nightly`` unless the deployment names
another in ``$NIGHTLY_SCHEDULE_PROFILE``, read by ``definitions.py``), never the
``profile`` resource's default (``smoke``, for launches from the UI). The profile goes
into the run's config, as a launch from the UI would set it, and into a
``nightly/profile`` tag; the target-version sensor requests its runs the same way
(``profile_launch``).

The scheduled night over N targets: ``$NIGHTLY_SCHEDULE_TARGETS`` (read by
``definitions.py``; ``scheduled_places``) names them as ``nightly run --target/--targets``
would (``suite.night_plan.night_places``). Unset, the night runs on one target as one
run. Set, the schedule plans the night (``suite.night_plan.plan_night`` at the scheduled
profile) and requests one ``nightly_suite`` run per target, with that target's tests,
its ``target`` resource config and the plan as tags (``fanout.plan_tags``): the UI shows
each queued run's line of the plan and the night's expected end before it starts.

Why these runs share the code location's ``target`` pool rather than one pool each: a
pool is fixed on the op's definition and one code location defines each asset once
(``automation.fanout``). So per-target exclusivity comes from elsewhere, each part
checked in Dagster 1.13's source and in ``tests/dagster/test_scheduled_fanout.py``:
- within a run, one step at a time: the code location's executor is then
  ``multiprocess`` with ``max_concurrent: 1`` (``executors.code_location_executor``),
  for every run, so a launch from the UI cannot put two tests on its target either;
- across runs, one run per target: the instance's run tag limit on ``nightly/target``
  (``automation/dagster.yaml``, ``applyLimitPerUniqueValue``, limit 1);
- the ``target`` pool gets one slot per target (``ensure_pool_slots``, at each tick):
  with its default one slot it would run the targets one after another.
"""

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import dagster as dg
from dagster._utils.schedules import is_valid_cron_string

from nightly_pipeline.assets.engine import engine_selfcheck
from nightly_pipeline.assets.partitions import NIGHTS
from nightly_pipeline.assets.steps import TARGET_POOL
from nightly_pipeline.assets.suite import SUITE_ASSETS
from nightly_pipeline.automation.fanout import TARGET_TAG, plan_tags
from nightly_pipeline.automation.jobs import baseline_snapshot_job, nightly_suite_job
from nightly_pipeline.automation.suite_runs import FANOUT_TAG, PROFILE_TAG, TRIGGER_TAG
from nightly_pipeline.suite.catalog import TESTS
from nightly_pipeline.suite.context import SuiteTest
from nightly_pipeline.suite.errors import ConfigurationError, SelectionError
from nightly_pipeline.suite.night_plan import (
    NightPlan,
    PlacedTarget,
    TargetPlan,
    night_places,
    plan_night,
)
from nightly_pipeline.suite.profiles import ProfileName, profile_named

SCHEDULE_PROFILE_ENV = "NIGHTLY_SCHEDULE_PROFILE"
DEFAULT_SCHEDULED_PROFILE: ProfileName = "nightly"
"""The profile of a scheduled night when the deployment names none: the plan's durations."""


SCHEDULE_CRON_ENV = "NIGHTLY_SCHEDULE_CRON"
DEFAULT_SCHEDULE_CRON = "10 2 * * *"
"""02:10 in the nights' time zone (UTC): the plan's time."""


def scheduled_cron(env: Mapping[str, str]) -> str:
    """``$NIGHTLY_SCHEDULE_CRON`` (five cron fields, in UTC), or 02:10 when unset or
    empty: a deployment whose quiet hours are elsewhere moves its night. An invalid
    string raises ``ConfigurationError`` with an example (the code location does not
    load)."""
    cron = env.get(SCHEDULE_CRON_ENV, "").strip() or DEFAULT_SCHEDULE_CRON
    if not is_valid_cron_string(cron):
        raise ConfigurationError(
            f"${SCHEDULE_CRON_ENV}={cron!r} is not a cron schedule: give five fields, "
            f"minute hour day-of-month month day-of-week, e.g. {DEFAULT_SCHEDULE_CRON!r}"
        )
    return cron


def scheduled_profile(env: Mapping[str, str]) -> ProfileName:
    """``$NIGHTLY_SCHEDULE_PROFILE``, or ``nightly`` when unset or empty; an unknown name
    raises ``SelectionError`` listing the valid ones (so the code location does not load)."""
    name = env.get(SCHEDULE_PROFILE_ENV, "").strip() or DEFAULT_SCHEDULED_PROFILE
    try:
        return profile_named(name).name
    except SelectionError as exc:
        raise SelectionError(f"${SCHEDULE_PROFILE_ENV}: {exc}") from None


SCHEDULE_TARGETS_ENV = "NIGHTLY_SCHEDULE_TARGETS"
TARGETS_FORMS = (
    "N (N embedded platforms), docker:N (N Docker platforms), FILE (every target a "
    'target file lists under "targets") or FILE:N (its first N); unset: one target'
)


def scheduled_places(env: Mapping[str, str]) -> dict[str, PlacedTarget] | None:
    """The targets of the scheduled night from ``$NIGHTLY_SCHEDULE_TARGETS`` (forms:
    ``TARGETS_FORMS``), by the plan's names; None when unset or empty (one target, one
    run). A value that names no usable targets raises ``ConfigurationError`` naming the
    forms, so the code location does not load."""
    value = env.get(SCHEDULE_TARGETS_ENV, "").strip()
    if not value:
        return None
    where, _, count = value.rpartition(":")
    if value.isdigit():
        where, count = "embedded", value
    elif not count.isdigit():
        where, count = value, ""
    try:
        if count and int(count) < 1:
            raise ConfigurationError(f"{count} target(s): at least 1")
        return night_places(where, int(count) if count else None)
    except ConfigurationError as exc:
        raise ConfigurationError(
            f"${SCHEDULE_TARGETS_ENV}={value!r}: {exc}. Expected {TARGETS_FORMS}"
        ) from None


def fanned_night_plan(
    profile: ProfileName, places: Mapping[str, PlacedTarget], tests: Sequence[SuiteTest] = TESTS
) -> NightPlan:
    """The scheduled night's plan over ``places``: ``tests`` (every test) at ``profile``,
    as ``nightly plan --profile P --targets N`` prints it."""
    return plan_night(list(tests), profile_named(profile), list(places))


def target_launch(
    target: TargetPlan, place: PlacedTarget, first: bool
) -> tuple[list[dg.AssetKey], dict[str, Any]]:
    """The asset selection and ``target`` resource config of ``target``'s run: its
    tests' assets (the first target's also ``engine_selfcheck``, which the one-target
    night runs too), against ``place``. The resource's run config replaces its config
    (see ``profile_launch``): ``TargetResource``'s other fields keep their defaults."""
    keys = [k for key in target.keys for a in SUITE_ASSETS for k in a.keys if k.path[0] == key]
    if first:
        keys = [*engine_selfcheck.keys, *keys]
    return keys, {"config": {"target": place.target, "entry": place.entry}}


def ensure_pool_slots(instance: dg.DagsterInstance, pool: str, slots: int) -> str | None:
    """Give ``pool`` at least ``slots`` slots (never fewer than it has: a person may have
    raised it); what changed, or None. Instances without pools (in-memory) are left."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return None
    have = storage.get_concurrency_info(pool).slot_count
    if have >= slots:
        return None
    storage.set_concurrency_slots(pool, slots)
    return f"pool {pool!r}: {have} -> {slots} slot(s), one per target"


def limits_runs_per_target(instance: dg.DagsterInstance) -> bool:
    """Whether ``instance``'s run queue lets one run per ``nightly/target`` value run at
    a time (the template's ``tag_concurrency_limits``; a home whose ``dagster.yaml`` was
    copied before it lacks it)."""
    queue = instance.get_concurrency_config().run_queue_config
    return any(
        limit.get("key") == TARGET_TAG
        and limit.get("value") == {"applyLimitPerUniqueValue": True}
        and limit.get("limit") == 1
        for limit in (queue.tag_concurrency_limits if queue else None) or ()
    )


@dataclass(frozen=True)
class FannedNight:
    """A night over several targets as the code location plans it: the plan, where each
    target is, and the run config and tags every run of it carries (its profile's)."""

    plan: NightPlan
    places: Mapping[str, PlacedTarget]
    run_config: Mapping[str, Any]
    tags: Mapping[str, str]


def fanned_requests(
    instance: dg.DagsterInstance,
    log: logging.Logger,
    night_of: FannedNight,
    night: str,
    starts_at: datetime,
    key: str,
    trigger_tags: Mapping[str, str],
) -> list[dg.RunRequest]:
    """One ``nightly_suite`` run per planned target of ``night_of`` for ``night``, keyed
    ``<key>/<target>`` and grouped by a ``nightly/fanout`` tag; the ``target`` pool gets
    one slot per target first. The schedule and the target-version sensor both use it, so
    a version change reruns the same fanned night as 02:10 does."""
    plan, places = night_of.plan, night_of.places
    planned = [t for t in plan.targets if t.tests]
    changed = ensure_pool_slots(instance, TARGET_POOL, len(planned))
    if changed:
        log.info(changed)
    if not limits_runs_per_target(instance):
        log.warning(
            f"this instance's dagster.yaml has no run limit on {TARGET_TAG!r} "
            "(concurrency.runs.tag_concurrency_limits, in nightly_pipeline/automation/"
            "dagster.yaml): two runs of one target could overlap; copy it into yours"
        )
    fanout = f"{key}@{starts_at.isoformat(timespec='seconds')}"
    requests = []
    for i, target in enumerate(planned):
        keys, target_config = target_launch(target, places[target.name], first=i == 0)
        requests.append(
            dg.RunRequest(
                run_key=f"{key}/{target.name}",
                partition_key=night,
                asset_selection=keys,
                run_config={
                    "resources": {**night_of.run_config["resources"], "target": target_config}
                },
                tags={
                    **night_of.tags,
                    **trigger_tags,
                    FANOUT_TAG: fanout,
                    **plan_tags(plan, target, starts_at),
                },
            )
        )
    return requests


def profile_launch(profile: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The run config and tags of a ``nightly_suite`` run at ``profile``; an unknown name
    raises ``SelectionError`` listing the valid ones.

    A resource's run config replaces its whole config: ``ProfileResource`` has only
    ``name``, so nothing else of it is lost."""
    name = profile_named(profile).name
    return {"resources": {"profile": {"config": {"name": name}}}}, {PROFILE_TAG: name}


def make_nightly_suite_schedule(
    profile: ProfileName = DEFAULT_SCHEDULED_PROFILE,
    name: str = "nightly_suite_0210_utc",
    places: Mapping[str, PlacedTarget] | None = None,
    tests: Sequence[SuiteTest] = TESTS,
    cron: str = DEFAULT_SCHEDULE_CRON,
) -> dg.ScheduleDefinition:
    """``nightly_suite`` at 02:10 UTC at ``profile``, for the night that just ended: at
    02:10 on the 24th, the night keyed 2026-11-23 (the latest complete partition, as
    ``build_schedule_from_partitioned_job`` would pick, which cannot set run config).

    With ``places`` (``scheduled_places``), one run per target of the night's plan,
    computed here so that a night that cannot be planned fails the load; ``tests`` (every
    test) are the night's (fewer: a test's short night)."""
    run_config, tags = profile_launch(profile)
    plan = None if places is None else fanned_night_plan(profile, places, tests)
    description = f"Every test at the {tags[PROFILE_TAG]!r} profile, for the night that "
    if plan is None:
        description += "just ended; nightly_history follows when the run ends."
    else:
        description += (
            f"just ended, over {len(plan.targets)} targets ({plan.lines()[-1]}); "
            "nightly_history follows when the night's last run ends."
        )

    @dg.schedule(
        name=name,
        cron_schedule=cron,
        execution_timezone=NIGHTS.timezone,
        job=nightly_suite_job,
        description=description,
    )
    def nightly_suite_schedule(
        context: dg.ScheduleEvaluationContext,
    ) -> dg.RunRequest | dg.SkipReason | list[dg.RunRequest]:
        with dg.partition_loading_context(effective_dt=context.scheduled_execution_time):
            night = NIGHTS.get_last_partition_key()
        if night is None:
            return dg.SkipReason(f"no complete night yet (the first is {NIGHTS.start.date()})")
        if plan is None or places is None:
            return dg.RunRequest(
                run_key=night,
                partition_key=night,
                run_config=run_config,
                tags={**tags, TRIGGER_TAG: "schedule"},
            )
        return fanned_requests(
            context.instance,
            context.log,
            FannedNight(plan, places, run_config, tags),
            night,
            context.scheduled_execution_time,
            key=night,
            trigger_tags={TRIGGER_TAG: "schedule"},
        )

    return nightly_suite_schedule


# Sundays 06:00 UTC, after that night's suite: the week that ended on Saturday.
baseline_snapshot_schedule = dg.build_schedule_from_partitioned_job(
    baseline_snapshot_job,
    name="baseline_snapshot_sunday",
    hour_of_day=6,
    minute_of_hour=0,
    day_of_week=0,
)
