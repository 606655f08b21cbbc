"""Writes against real DuckDB files: replace semantics, rollback, bulk series, runs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import duckdb
import polars as pl
import pytest

from nightly_pipeline.store import (
    MetricRow,
    MetricStore,
    RunNotFoundError,
    RunRecord,
    SeriesRow,
    StoreWriteError,
    TestResultRecord,
    ThresholdRow,
)

MakeResult = Callable[..., TestResultRecord]
NIGHT = date(2024, 3, 1)
OTHER_NIGHT = NIGHT + timedelta(days=1)


def snapshot(store: MetricStore, night: date, test: str) -> dict[str, pl.DataFrame]:
    """Everything stored for one (night, ci, test)."""
    results = store.recent_results(limit_nights=100)
    return {
        "result": results.filter((pl.col("night") == night) & (pl.col("test") == test)),
        "metrics": store.metrics(test=test).filter(pl.col("night") == night),
        "series": store.series(night, test, "ci"),
        "thresholds": store.threshold_results(night, test=test),
    }


def assert_same(left: dict[str, pl.DataFrame], right: dict[str, pl.DataFrame]) -> None:
    assert left.keys() == right.keys()
    for name in left:
        assert left[name].equals(right[name]), name


def test_writing_twice_replaces_only_that_test_and_night(
    store: MetricStore, make_result: MakeResult
) -> None:
    store.write_test_result(make_result(NIGHT, "a", status="failed", failed_thresholds=1))
    store.write_test_result(make_result(NIGHT, "b", value=5.0))
    store.write_test_result(make_result(OTHER_NIGHT, "a", value=7.0))
    controls = {
        "b": snapshot(store, NIGHT, "b"),
        "a-next": snapshot(store, OTHER_NIGHT, "a"),
    }

    second = make_result(
        NIGHT, "a", value=42.0, n_metrics=1, n_series_metrics=1, n_seconds=2, n_thresholds=0
    )
    store.write_test_result(second)

    now = snapshot(store, NIGHT, "a")
    assert now["result"].select("status", "duration_s", "failed_thresholds").rows() == [
        ("passed", 2.0, 0)
    ]
    assert now["metrics"].select("metric", "tags", "value").rows() == [
        ("metric_0", '{"kind":"0","stat":"p95"}', 42.0)
    ]
    assert now["series"].select("metric", "second", "p95").rows() == [
        ("series_0", 0, 0.0),
        ("series_0", 1, 42.0),
    ]
    assert now["thresholds"].height == 0
    assert_same(controls["b"], snapshot(store, NIGHT, "b"))
    assert_same(controls["a-next"], snapshot(store, OTHER_NIGHT, "a"))


def test_same_test_in_another_profile_is_kept(store: MetricStore, make_result: MakeResult) -> None:
    store.write_test_result(make_result(NIGHT, "a", profile="ci"))
    store.write_test_result(make_result(NIGHT, "a", profile="smoke"))
    store.write_test_result(make_result(NIGHT, "a", profile="ci", value=3.0))
    assert store.series(NIGHT, "a", "smoke").height == 10
    assert sorted(store.recent_results()["profile"].to_list()) == ["ci", "smoke"]


@pytest.mark.parametrize(
    ("change", "cause"),
    [
        # fails on the last table written, after the others were inserted in the transaction
        (
            {"thresholds": (ThresholdRow("m", "p(95)<1", "run", True, "not a number"),)},  # type: ignore[arg-type]
            duckdb.ConversionException,
        ),
        ({"metrics": (MetricRow("m", 1.0), MetricRow("m", 2.0))}, duckdb.ConstraintException),
        ({"series": (SeriesRow("s", 0, count="many"),)}, duckdb.ConversionException),  # type: ignore[arg-type]
    ],
    ids=["bad-threshold-value", "duplicate-metric", "bad-series-count"],
)
def test_rejected_write_rolls_back_to_previous_version(
    store: MetricStore,
    make_result: MakeResult,
    change: dict[str, object],
    cause: type[Exception],
) -> None:
    store.write_test_result(make_result(NIGHT, "a"))
    before = snapshot(store, NIGHT, "a")

    bad = make_result(NIGHT, "a", value=99.0, status="error", **change)
    with pytest.raises(StoreWriteError, match="rolled back") as excinfo:
        store.write_test_result(bad)

    assert isinstance(excinfo.value.__cause__, cause)
    assert_same(before, snapshot(store, NIGHT, "a"))


def test_duplicate_series_second_is_rejected_before_writing(
    store: MetricStore, make_result: MakeResult
) -> None:
    store.write_test_result(make_result(NIGHT, "a"))
    before = snapshot(store, NIGHT, "a")
    twice = (SeriesRow("s", 3, {"a": "1"}), SeriesRow("s", 3, {"a": "1"}))
    with pytest.raises(StoreWriteError, match="second 3"):
        store.write_test_result(make_result(NIGHT, "a", series=twice))
    assert_same(before, snapshot(store, NIGHT, "a"))


def test_long_series_round_trips(store: MetricStore, make_result: MakeResult) -> None:
    record = make_result(NIGHT, "a", n_series_metrics=20, n_seconds=1800)
    store.write_test_result(record)
    stored = store.series(NIGHT, "a", "ci")
    assert stored.height == 36_000
    assert stored.group_by("metric").len()["len"].to_list() == [1800] * 20
    assert stored.filter(pl.col("metric") == "series_7")["second"].to_list() == list(range(1800))


def test_write_run_then_finish_run(store: MetricStore) -> None:
    started = datetime(2024, 3, 1, 2, 10, tzinfo=UTC)
    run = RunRecord("r1", NIGHT, "ci", "embedded", started, {"postgres": "16.4"}, "dg-1")
    store.write_run(run)
    store.finish_run("r1", "failed", started + timedelta(minutes=5))
    rows = store.runs(NIGHT).select("run_id", "status", "finished_at", "versions").rows()
    assert rows == [("r1", "failed", datetime(2024, 3, 1, 2, 15), '{"postgres":"16.4"}')]

    store.write_run(run)  # a retried run starts over
    assert store.runs()["status"].to_list() == ["running"]


def test_finish_run_of_unknown_run(store: MetricStore) -> None:
    with pytest.raises(RunNotFoundError, match="nope"):
        store.finish_run("nope", "succeeded", datetime(2024, 3, 1, tzinfo=UTC))


def test_finish_run_rejects_running(store: MetricStore) -> None:
    with pytest.raises(ValueError, match="status"):
        store.finish_run("r1", "running", datetime(2024, 3, 1, tzinfo=UTC))
