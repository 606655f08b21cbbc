"""Verdicts, baselines and the metric history read (the History issue's store part)."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from nightly_pipeline.store import MetricStore, StoreWriteError
from tests.store.conftest import build_result

NIGHT = date(2026, 11, 20)


def _verdicts(verdict: str, magnitude: float) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "profile": ["ci"],
            "test": ["01_message_soak"],
            "metric": ["http_req_duration.p95"],
            "tags": ["{}"],
            "direction": ["lower"],
            "verdict": [verdict],
            "first_bad_night": [date(2026, 11, 18)],
            "magnitude": [magnitude],
            "confidence": [0.999],
            "baseline_mean": [10.0],
            "latest_value": [11.2],
            "nights": [30],
            "skipped_nights": [1],
            "plan_rule_fired": [False],
            "change_nights": [[date(2026, 11, 1), date(2026, 11, 18)]],
        }
    )


def test_verdicts_of_a_night_are_replaced_and_read_back(store: MetricStore) -> None:
    store.write_verdicts(NIGHT, _verdicts("stable", 0.01))
    store.write_verdicts(NIGHT, _verdicts("regression", 0.12))
    store.write_verdicts(date(2026, 11, 19), _verdicts("stable", 0.0))
    got = store.verdicts(NIGHT)
    assert got.height == 1
    row = got.row(0, named=True)
    assert row["verdict"] == "regression" and row["magnitude"] == 0.12
    assert row["change_nights"] == [date(2026, 11, 1), date(2026, 11, 18)]
    assert store.verdicts().height == 2


def test_verdicts_missing_a_column_are_refused_before_writing(store: MetricStore) -> None:
    store.write_verdicts(NIGHT, _verdicts("stable", 0.01))
    with pytest.raises(StoreWriteError, match="change_nights"):
        store.write_verdicts(NIGHT, _verdicts("regression", 0.1).drop("change_nights"))
    assert store.verdicts(NIGHT)["verdict"].to_list() == ["stable"]


def test_latest_baselines_replace_per_night(store: MetricStore) -> None:
    def frame(mean: float) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "profile": ["ci"],
                "test": ["t"],
                "metric": ["m"],
                "tags": ["{}"],
                "mean": [mean],
                "std": [1.0],
                "low": [mean - 2],
                "high": [mean + 2],
                "n": [7],
                "first_night": [date(2026, 11, 1)],
                "last_night": [date(2026, 11, 7)],
            }
        )

    store.write_baselines(date(2026, 11, 19), frame(5.0))
    store.write_baselines(NIGHT, frame(6.0))
    store.write_baselines(NIGHT, frame(7.0))
    assert store.baselines()["mean"].to_list() == [7.0]


def test_metric_history_carries_each_nights_test_status(store: MetricStore) -> None:
    store.write_test_result(build_result(date(2026, 11, 1), value=1.0))
    store.write_test_result(build_result(date(2026, 11, 2), status="failed", value=2.0))
    history = store.metric_history(profile="ci")
    assert set(history.columns) >= {"night", "test", "metric", "tags", "value", "status"}
    by_night = history.filter(pl.col("metric") == "metric_0").sort("night")
    assert by_night["status"].to_list() == ["passed", "failed"]
    assert by_night["value"].to_list() == [1.0, 2.0]
    assert store.metric_history(since=date(2026, 11, 2))["night"].unique().to_list() == [
        date(2026, 11, 2)
    ]
