"""Evaluate a night from the store: verdicts and baselines, the report, the alerts due,
and the weekly snapshot (Test 15). Plain Python; the Dagster assets, the sensors and the
CLI each call one function here.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl

from nightly_pipeline.alerts import Alert
from nightly_pipeline.analysis import baselines, regression_verdicts
from nightly_pipeline.report import markdown_summary, render_index, render_night_report
from nightly_pipeline.store import MetricRow, MetricStore, TestResultRecord

SNAPSHOT_TEST = "15_baseline_snapshot"
SNAPSHOT_PROFILE = "weekly"
SNAPSHOT_MIN_EFFECT = 0.10
"""Test 15 flags regressions of more than 10 % (the plan's size), found by change points."""


@dataclass(frozen=True)
class NightEvaluation:
    night: date
    verdicts: pl.DataFrame
    baselines: pl.DataFrame

    def counts(self) -> dict[str, int]:
        """Verdicts by kind, every kind present (zero when none)."""
        kinds = ("regression", "improvement", "stable", "insufficient data")
        found = dict(self.verdicts.group_by("verdict").len().iter_rows())
        return {kind: int(found.get(kind, 0)) for kind in kinds}


@dataclass(frozen=True)
class ReportFiles:
    page: Path
    index: Path
    markdown: str


def evaluate_night(store: MetricStore, night: date) -> NightEvaluation:
    """Change-point verdicts and baselines over every night up to ``night``; stored."""
    history = store.metric_history(until=night)
    verdicts = regression_verdicts(history, evaluated_night=night)
    base = baselines(history, verdicts)
    store.write_verdicts(night, verdicts)
    store.write_baselines(night, base)
    return NightEvaluation(night, verdicts, base)


def night_results(store: MetricStore, night: date) -> pl.DataFrame:
    """The test results of one night (every profile)."""
    recent = store.recent_results(limit_nights=10_000)
    return recent.filter(pl.col("night") == night)


def write_report(store: MetricStore, night: date, out_dir: Path) -> ReportFiles:
    """The night's HTML report and the index of nights, from what the store holds."""
    results = night_results(store, night)
    verdicts = store.verdicts(night)
    series = {
        (row["profile"], row["test"]): store.series(night, row["test"], row["profile"])
        for row in results.iter_rows(named=True)
    }
    page = render_night_report(
        out_dir,
        night,
        results=results,
        history=store.metric_history(until=night),
        verdicts=verdicts,
        baselines=store.baselines(),
        series=series,
        experiments=store.chaos_experiments(night),
        activities=store.chaos_activities(night),
        thresholds=store.threshold_results(night),
    )
    index = render_index(out_dir, store.nights())
    return ReportFiles(page, index, markdown_summary(night, results, verdicts))


def alert_key(alert: Alert) -> str:
    """Identity of an alert, so that a sensor sends each one once: a regression by its
    first bad night (it persists night after night), anything else by its night. The
    profile is part of it: one test failing at two profiles is two alerts."""
    if alert.kind == "regression" and alert.first_bad_night is not None:
        return json.dumps(
            [alert.kind, alert.profile, alert.test, alert.metric, alert.first_bad_night.isoformat()]
        )
    return json.dumps(
        [alert.kind, alert.profile, alert.night.isoformat(), alert.test, alert.metric]
    )


def alerts_due(
    store: MetricStore, night: date, *, sent: Collection[str] = (), report_url: str | None = None
) -> list[Alert]:
    """New regressions (by first bad night) and failed tests of ``night`` not yet sent,
    one per (profile, test, metric).

    A regression keeps its first bad night from one evaluation to the next, so it is
    alerted once, not every night it persists.
    """
    alerts: list[Alert] = []
    for row in (
        store.verdicts(night).filter(pl.col("verdict") == "regression").iter_rows(named=True)
    ):
        regression = Alert(
            kind="regression",
            night=night,
            test=row["test"],
            metric=row["metric"] if row["tags"] == "{}" else f"{row['metric']} {row['tags']}",
            magnitude=row["magnitude"],
            first_bad_night=row["first_bad_night"],
            detail=(
                f"{row['latest_value']:.4g} vs baseline {row['baseline_mean']:.4g} of "
                f"{row['profile']} nights (confidence {row['confidence']:.3f})"
            ),
            report_url=report_url,
            profile=row["profile"],
        )
        alerts.append(regression)
    for row in (
        night_results(store, night).filter(pl.col("status") != "passed").iter_rows(named=True)
    ):
        alerts.append(
            Alert(
                kind="check_failed",
                night=night,
                test=row["test"],
                metric=None,
                magnitude=None,
                first_bad_night=None,
                detail=f"{row['status']}: {row['detail']}",
                report_url=report_url,
                profile=row["profile"],
            )
        )
    return [a for a in alerts if alert_key(a) not in sent]


def weekly_snapshot(store: MetricStore, week_end: date) -> TestResultRecord:
    """Test 15: over all history up to ``week_end``, no regression above 10 %; stored
    as that night's result of the ``weekly`` profile."""
    started = datetime.now(UTC)
    history = store.metric_history(until=week_end).filter(pl.col("test") != SNAPSHOT_TEST)
    verdicts = regression_verdicts(
        history, evaluated_night=week_end, min_effect=SNAPSHOT_MIN_EFFECT
    )
    week_start = week_end - timedelta(days=6)
    recent = verdicts.filter(
        (pl.col("verdict") == "regression") & (pl.col("first_bad_night") >= week_start)
    )
    regressions = verdicts.filter(pl.col("verdict") == "regression")
    detail = "; ".join(
        f"{r['test']} {r['metric']} +{100 * r['magnitude']:.1f} % since {r['first_bad_night']}"
        for r in regressions.iter_rows(named=True)
    )
    record = TestResultRecord(
        night=week_end,
        profile=SNAPSHOT_PROFILE,
        test=SNAPSHOT_TEST,
        run_id=f"snapshot-{week_end.isoformat()}",
        status="failed" if regressions.height else "passed",
        started_at=started,
        finished_at=datetime.now(UTC),
        detail=detail,
        metrics=(
            MetricRow("regressions.count", float(regressions.height), "count"),
            MetricRow("regressions_this_week.count", float(recent.height), "count"),
            MetricRow(
                "plan_rule_fired.count", float(verdicts["plan_rule_fired"].sum() or 0), "count"
            ),
            MetricRow("series_analysed.count", float(verdicts.height), "count"),
        ),
    )
    store.write_test_result(record)
    return record
