"""Jobs the schedules and sensors start."""

import dagster as dg

from nightly_pipeline.assets.history import (
    TEST_ASSETS,
    baseline_snapshot,
    nightly_report,
    regressions,
)

MAX_RUNTIME_S = 3 * 3600
"""The plan's nightly budget (60-120 min) with room; run monitoring enforces it."""

nightly_suite_job = dg.define_asset_job(
    "nightly_suite",
    selection=[*TEST_ASSETS, regressions, nightly_report],
    tags={"dagster/max_runtime": MAX_RUNTIME_S},
    description="Every test of the night, then verdicts, baselines and the report.",
)

baseline_snapshot_job = dg.define_asset_job(
    "baseline_snapshot_job",
    selection=[baseline_snapshot],
    tags={"dagster/max_runtime": 1800},
    description="Test 15: the weekly regression snapshot.",
)
