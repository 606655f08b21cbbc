"""Reads return polars DataFrames with stable columns and types, also when empty."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

import polars as pl
import pytest

from nightly_pipeline.store import MetricStore, TestResultRecord

MakeResult = Callable[..., TestResultRecord]
NIGHT = date(2024, 3, 1)

EXPECTED_SCHEMAS: dict[str, dict[str, type[pl.DataType] | pl.DataType]] = {
    "nights": {
        "night": pl.Date,
        "tests": pl.Int64,
        "passed": pl.Int64,
        "failed": pl.Int64,
        "errored": pl.Int64,
    },
    "recent_results": {
        "night": pl.Date,
        "profile": pl.String,
        "test": pl.String,
        "status": pl.String,
        "duration_s": pl.Float64,
        "generator_bound": pl.Boolean,
        "failed_thresholds": pl.Int64,
        "detail": pl.String,
        "run_id": pl.String,
    },
    "metrics": {
        "night": pl.Date,
        "profile": pl.String,
        "test": pl.String,
        "metric": pl.String,
        "tags": pl.String,
        "value": pl.Float64,
        "unit": pl.String,
        "run_id": pl.String,
    },
    "series": {
        "night": pl.Date,
        "profile": pl.String,
        "test": pl.String,
        "metric": pl.String,
        "tags": pl.String,
        "second": pl.Int32,
        "count": pl.Int64,
        "errors": pl.Int64,
        "mean": pl.Float64,
        "p50": pl.Float64,
        "p95": pl.Float64,
        "p99": pl.Float64,
        "max": pl.Float64,
        "value": pl.Float64,
        "resolution_s": pl.Int32,
        "seconds_present": pl.Int32,
    },
    "threshold_results": {
        "night": pl.Date,
        "profile": pl.String,
        "test": pl.String,
        "metric": pl.String,
        "tags": pl.String,
        "expression": pl.String,
        "scope": pl.String,
        "passed": pl.Boolean,
        "observed": pl.Float64,
        "window_start": pl.Float64,
        "window_end": pl.Float64,
        "severity": pl.String,
        "not_measurable": pl.String,
    },
    "runs": {
        "run_id": pl.String,
        "night": pl.Date,
        "profile": pl.String,
        "target": pl.String,
        "started_at": pl.Datetime("us"),
        "finished_at": pl.Datetime("us"),
        "status": pl.String,
        "versions": pl.String,
        "dagster_run_id": pl.String,
    },
}


def read_all(store: MetricStore) -> dict[str, pl.DataFrame]:
    return {
        "nights": store.nights(),
        "recent_results": store.recent_results(),
        "metrics": store.metrics(),
        "series": store.series(NIGHT, "a", "ci"),
        "threshold_results": store.threshold_results(NIGHT),
        "runs": store.runs(),
    }


@pytest.mark.parametrize("filled", [False, True], ids=["empty", "filled"])
def test_reads_have_expected_schema(
    store: MetricStore, make_result: MakeResult, filled: bool
) -> None:
    if filled:
        store.write_test_result(make_result(NIGHT, "a"))
    frames = read_all(store)
    for name, df in frames.items():
        assert isinstance(df, pl.DataFrame), name
        assert dict(df.schema) == EXPECTED_SCHEMAS[name], name
        if filled and name != "runs":
            assert df.height > 0, name


def test_recent_results_limits_nights_and_counts_failed_thresholds(
    store: MetricStore, make_result: MakeResult
) -> None:
    for day in range(10):
        night = NIGHT + timedelta(days=day)
        store.write_test_result(make_result(night, "a", n_thresholds=3, failed_thresholds=day % 3))
        store.write_test_result(make_result(night, "b", profile="smoke"))

    recent = store.recent_results(limit_nights=7, profile="ci")
    assert recent["night"].to_list() == [NIGHT + timedelta(days=d) for d in range(9, 2, -1)]
    assert recent["failed_thresholds"].to_list() == [d % 3 for d in range(9, 2, -1)]
    assert set(store.recent_results(limit_nights=1)["profile"]) == {"ci", "smoke"}
    assert store.nights()["tests"].to_list() == [2] * 10


def test_recent_results_rejects_zero_nights(store: MetricStore) -> None:
    with pytest.raises(ValueError, match="limit_nights"):
        store.recent_results(limit_nights=0)


def test_metrics_filters(store: MetricStore, make_result: MakeResult) -> None:
    for day in range(3):
        night = NIGHT + timedelta(days=day)
        store.write_test_result(make_result(night, "a", value=float(day)))
        store.write_test_result(make_result(night, "b", profile="smoke"))

    since = store.metrics(test="a", metric="metric_1", since=NIGHT + timedelta(days=1))
    assert since.select("night", "value").rows() == [
        (NIGHT + timedelta(days=1), 2.0),
        (NIGHT + timedelta(days=2), 3.0),
    ]
    assert set(store.metrics(profile="smoke")["test"]) == {"b"}
    assert store.metrics(test="nope").height == 0


def test_series_filters_by_metric_and_orders_by_second(
    store: MetricStore, make_result: MakeResult
) -> None:
    store.write_test_result(make_result(NIGHT, "a", n_series_metrics=3, n_seconds=4))
    one = store.series(NIGHT, "a", "ci", metric="series_2")
    assert one["metric"].unique().to_list() == ["series_2"]
    assert one["second"].to_list() == [0, 1, 2, 3]
