"""History assets downstream of every test's metric assets: regressions and baselines,
the nightly report, and Test 15's weekly baseline snapshot."""

from datetime import date, timedelta

import dagster as dg

from nightly_pipeline import evaluate
from nightly_pipeline.assets.engine import engine_selfcheck
from nightly_pipeline.assets.partitions import NIGHTS, SUNDAYS
from nightly_pipeline.assets.suite import SUITE_ASSETS
from nightly_pipeline.resources.store import MetricStoreResource

TEST_ASSETS = [engine_selfcheck, *SUITE_ASSETS]
"""Every test's metric assets: history is downstream of all of them."""


@dg.asset(partitions_def=NIGHTS, deps=TEST_ASSETS, group_name="history", kinds={"duckdb"})
def regressions(context: dg.AssetExecutionContext, store: MetricStoreResource) -> dg.Output:
    """Change-point verdicts and baselines of every (test, metric) up to this night."""
    result = evaluate.evaluate_night(store.open(), date.fromisoformat(context.partition_key))
    counts = result.counts()
    return dg.Output(
        None,
        metadata={
            **{kind.replace(" ", "_"): dg.MetadataValue.int(n) for kind, n in counts.items()},
            "baselines": dg.MetadataValue.int(result.baselines.height),
        },
    )


@dg.asset(partitions_def=NIGHTS, deps=[regressions], group_name="history", kinds={"html"})
def nightly_report(context: dg.AssetExecutionContext, store: MetricStoreResource) -> dg.Output:
    """One self-contained HTML page for the night, and the index of nights."""
    files = evaluate.write_report(
        store.open(), date.fromisoformat(context.partition_key), store.home().reports
    )
    return dg.Output(
        None,
        metadata={
            "path": dg.MetadataValue.path(str(files.page)),
            "url": dg.MetadataValue.url(files.page.as_uri()),
            "index": dg.MetadataValue.path(str(files.index)),
            "summary": dg.MetadataValue.md(files.markdown),
        },
    )


@dg.asset(
    partitions_def=SUNDAYS,
    deps=[regressions],
    group_name="history",
    kinds={"duckdb"},
    check_specs=[dg.AssetCheckSpec("no_regression", asset="baseline_snapshot", blocking=True)],
)
def baseline_snapshot(
    context: dg.AssetExecutionContext, store: MetricStoreResource
) -> dg.MaterializeResult:
    """Test 15, weekly: no metric regressed by more than 10 % (change-point verdicts)."""
    week_end = context.partition_time_window.end.date() - timedelta(days=1)  # Saturday
    record = evaluate.weekly_snapshot(store.open(), week_end)
    figures = {m.metric: m.value for m in record.metrics}
    return dg.MaterializeResult(
        metadata={name: dg.MetadataValue.float(v) for name, v in figures.items()},
        check_results=[
            dg.AssetCheckResult(
                check_name="no_regression",
                passed=record.status == "passed",
                description=record.detail or "no regression above 10 %",
            )
        ],
    )
