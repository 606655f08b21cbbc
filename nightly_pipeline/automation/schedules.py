"""The nightly suite at 02:10 UTC (the plan's time) and Test 15 on Sundays. The night's
verdicts and report are not scheduled: the ``nightly_suite_*`` run-status sensors start
``nightly_history`` when the suite run ends."""

import dagster as dg

from nightly_pipeline.automation.jobs import baseline_snapshot_job, nightly_suite_job

# A partitioned schedule runs the latest complete partition: at 02:10 on the 24th it
# runs the night keyed 2026-11-23, the night that just ended.
nightly_suite_schedule = dg.build_schedule_from_partitioned_job(
    nightly_suite_job, name="nightly_suite_0210_utc", hour_of_day=2, minute_of_hour=10
)

# Sundays 06:00 UTC, after that night's suite: the week that ended on Saturday.
baseline_snapshot_schedule = dg.build_schedule_from_partitioned_job(
    baseline_snapshot_job,
    name="baseline_snapshot_sunday",
    hour_of_day=6,
    minute_of_hour=0,
    day_of_week=0,
)
