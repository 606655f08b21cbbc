"""The nightly suite at 02:10 UTC (the plan's time) and Test 15 on Sundays. The night's
verdicts and report are not scheduled: the ``nightly_suite_*`` run-status sensors start
``nightly_history`` when the suite run ends.

A scheduled night runs an explicit profile (``nightly`` unless the deployment names
another in ``$NIGHTLY_SCHEDULE_PROFILE``, read by ``definitions.py``), never the
``profile`` resource's default (``smoke``, for launches from the UI). The profile goes
into the run's config, as a launch from the UI would set it, and into a
``nightly/profile`` tag; the target-version sensor requests its runs the same way
(``profile_launch``).
"""

from collections.abc import Mapping
from typing import Any

import dagster as dg

from nightly_pipeline.assets.partitions import NIGHTS
from nightly_pipeline.automation.jobs import baseline_snapshot_job, nightly_suite_job
from nightly_pipeline.automation.suite_runs import PROFILE_TAG, TRIGGER_TAG
from nightly_pipeline.suite.errors import SelectionError
from nightly_pipeline.suite.profiles import ProfileName, profile_named

SCHEDULE_PROFILE_ENV = "NIGHTLY_SCHEDULE_PROFILE"
DEFAULT_SCHEDULED_PROFILE: ProfileName = "nightly"
"""The profile of a scheduled night when the deployment names none: the plan's durations."""


def scheduled_profile(env: Mapping[str, str]) -> ProfileName:
    """``$NIGHTLY_SCHEDULE_PROFILE``, or ``nightly`` when unset or empty; an unknown name
    raises ``SelectionError`` listing the valid ones (so the code location does not load)."""
    name = env.get(SCHEDULE_PROFILE_ENV, "").strip() or DEFAULT_SCHEDULED_PROFILE
    try:
        return profile_named(name).name
    except SelectionError as exc:
        raise SelectionError(f"${SCHEDULE_PROFILE_ENV}: {exc}") from None


def profile_launch(profile: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The run config and tags of a ``nightly_suite`` run at ``profile``; an unknown name
    raises ``SelectionError`` listing the valid ones.

    A resource's run config replaces its whole config: ``ProfileResource`` has only
    ``name``, so nothing else of it is lost."""
    name = profile_named(profile).name
    return {"resources": {"profile": {"config": {"name": name}}}}, {PROFILE_TAG: name}


def make_nightly_suite_schedule(
    profile: ProfileName = DEFAULT_SCHEDULED_PROFILE, name: str = "nightly_suite_0210_utc"
) -> dg.ScheduleDefinition:
    """``nightly_suite`` at 02:10 UTC at ``profile``, for the night that just ended: at
    02:10 on the 24th, the night keyed 2026-11-23 (the latest complete partition, as
    ``build_schedule_from_partitioned_job`` would pick, which cannot set run config)."""
    run_config, tags = profile_launch(profile)

    @dg.schedule(
        name=name,
        cron_schedule="10 2 * * *",
        execution_timezone=NIGHTS.timezone,
        job=nightly_suite_job,
        description=f"Every test at the {tags[PROFILE_TAG]!r} profile, for the night that "
        "just ended; nightly_history follows when the run ends.",
    )
    def nightly_suite_schedule(
        context: dg.ScheduleEvaluationContext,
    ) -> dg.RunRequest | dg.SkipReason:
        with dg.partition_loading_context(effective_dt=context.scheduled_execution_time):
            night = NIGHTS.get_last_partition_key()
        if night is None:
            return dg.SkipReason(f"no complete night yet (the first is {NIGHTS.start.date()})")
        return dg.RunRequest(
            run_key=night,
            partition_key=night,
            run_config=run_config,
            tags={**tags, TRIGGER_TAG: "schedule"},
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
