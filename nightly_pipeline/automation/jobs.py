"""Jobs the schedules and sensors start.

The night runs as two jobs: ``nightly_suite`` (the tests) and ``nightly_history`` (the
verdicts and the report), which a run-status sensor starts when the suite run ends. A
failed blocking check fails its step, and Dagster skips everything downstream of it in
the same run; in one job, a failing night, the one that most needs its verdicts and
report, would get neither.
"""

import dagster as dg

from nightly_pipeline.assets.history import (
    TEST_ASSETS,
    baseline_snapshot,
    nightly_report,
    regressions,
)

MAX_RUNTIME_S = 3 * 3600
"""The plan's nightly budget (60-120 min) with room; run monitoring enforces it."""
HISTORY_MAX_RUNTIME_S = 1800

nightly_suite_job = dg.define_asset_job(
    "nightly_suite",
    selection=TEST_ASSETS,
    tags={"dagster/max_runtime": MAX_RUNTIME_S},
    description="Every test of the night; nightly_history follows when the run ends.",
)

nightly_history_job = dg.define_asset_job(
    "nightly_history",
    selection=[regressions, nightly_report],
    tags={"dagster/max_runtime": HISTORY_MAX_RUNTIME_S},
    description="The night's verdicts, baselines and report, after its nightly_suite run.",
)

baseline_snapshot_job = dg.define_asset_job(
    "baseline_snapshot_job",
    selection=[baseline_snapshot],
    tags={"dagster/max_runtime": 1800},
    description="Test 15: the weekly regression snapshot.",
)
