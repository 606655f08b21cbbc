"""History analysis: directions, change points, verdicts, baselines, leaks (no Dagster).

Public surface (analysis/CONTRACT.md), pure functions over polars frames and numpy:

- ``direction_of(metric)`` — "lower" or "higher" is better (direction.py);
- ``detect_change_points(values, ...)`` → ``list[ChangePoint]``, and
  ``detect_change_points_many`` for a batch (changepoint.py: E-divisive + t-test, as Otava);
- ``regression_verdicts(history, ...)`` → one verdict row per series (verdicts.py);
- ``baselines(history, verdicts)`` → baseline band per series (baseline.py);
- ``plan_rule(values, direction, ...)`` → ``PlanRuleResult`` — the plan's rule, reported
  only (plan_rule.py explains why it cannot decide);
- ``leak_verdict(seconds, rss_mb, ...)`` → ``LeakVerdict`` (leak.py);
- ``synthetic`` — seeded history frames with known regressions, for tests and the bench.
"""

from nightly_pipeline.analysis import synthetic
from nightly_pipeline.analysis.baseline import BASELINE_SCHEMA, baselines
from nightly_pipeline.analysis.changepoint import (
    ChangePoint,
    detect_change_points,
    detect_change_points_many,
)
from nightly_pipeline.analysis.direction import Direction, direction_of
from nightly_pipeline.analysis.leak import LeakVerdict, leak_verdict
from nightly_pipeline.analysis.plan_rule import PlanRuleResult, plan_rule
from nightly_pipeline.analysis.verdicts import VERDICT_SCHEMA, regression_verdicts

__all__ = [
    "BASELINE_SCHEMA",
    "VERDICT_SCHEMA",
    "ChangePoint",
    "Direction",
    "LeakVerdict",
    "PlanRuleResult",
    "baselines",
    "detect_change_points",
    "detect_change_points_many",
    "direction_of",
    "leak_verdict",
    "plan_rule",
    "regression_verdicts",
    "synthetic",
]
