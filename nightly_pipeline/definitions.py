"""The code location: one Definitions object, imports and one setting.

An entry point, so it reads the environment: ``$NIGHTLY_SCHEDULE_PROFILE`` (default
``nightly``) is the profile of the scheduled night and of a version-change run; an
unknown name fails loading the code location with the valid names. ``$NIGHTLY_EXECUTOR``
(``celery``, with ``$NIGHTLY_CELERY_BROKER``) runs the jobs' steps on Celery workers
(``automation.executors.code_location_executor``); unset, Dagster's default executor.
``$NIGHTLY_SCHEDULE_TARGETS`` fans the scheduled night out over N targets, one run per
target (``automation.schedules.scheduled_places``); unset, one target and one run.
``$NIGHTLY_SCHEDULE_CRON`` moves the night from 02:10 UTC (``scheduled_cron``).
"""

import os

import dagster as dg

from nightly_pipeline.assets.engine import engine_selfcheck, engine_selfcheck_job
from nightly_pipeline.assets.history import baseline_snapshot, nightly_report, regressions
from nightly_pipeline.assets.suite import SUITE_ASSETS
from nightly_pipeline.automation.after_night import HISTORY_ENDS, make_history_finished_sensor
from nightly_pipeline.automation.executors import code_location_executor
from nightly_pipeline.automation.jobs import (
    baseline_snapshot_job,
    nightly_history_job,
    nightly_suite_job,
)
from nightly_pipeline.automation.schedules import (
    baseline_snapshot_schedule,
    make_nightly_suite_schedule,
    scheduled_cron,
    scheduled_places,
    scheduled_profile,
)
from nightly_pipeline.automation.sensors import (
    make_regression_alert_sensor,
    make_run_failure_alert_sensor,
    make_suite_finished_sensor,
    make_target_version_sensor,
)
from nightly_pipeline.automation.suite_runs import SUITE_OUTCOMES
from nightly_pipeline.resources import (
    AlertsResource,
    MetricStoreResource,
    ProfileResource,
    TargetResource,
    TargetVersionResource,
)

SCHEDULED_PROFILE = scheduled_profile(os.environ)
SCHEDULED_PLACES = scheduled_places(os.environ)
SCHEDULED_CRON = scheduled_cron(os.environ)
EXECUTOR = code_location_executor(os.environ, fanned_out=SCHEDULED_PLACES is not None)

defs = dg.Definitions(
    assets=[engine_selfcheck, *SUITE_ASSETS, regressions, nightly_report, baseline_snapshot],
    jobs=[engine_selfcheck_job, nightly_suite_job, nightly_history_job, baseline_snapshot_job],
    schedules=[
        make_nightly_suite_schedule(
            SCHEDULED_PROFILE, places=SCHEDULED_PLACES, cron=SCHEDULED_CRON
        ),
        baseline_snapshot_schedule,
    ],
    sensors=[
        make_run_failure_alert_sensor(),
        make_regression_alert_sensor(),
        make_target_version_sensor(profile=SCHEDULED_PROFILE, places=SCHEDULED_PLACES),
        *(make_suite_finished_sensor(status) for status in SUITE_OUTCOMES),
        *(make_history_finished_sensor(status) for status in HISTORY_ENDS),
    ],
    executor=EXECUTOR,
    resources={
        "store": MetricStoreResource(),
        "alerts": AlertsResource(),
        "target": TargetResource(),
        "target_version": TargetVersionResource(),
        "profile": ProfileResource(),
    },
)
