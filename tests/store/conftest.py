"""Fixtures for the metric store tests: real DuckDB files under tmp_path."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from nightly_pipeline.store import (
    MetricRow,
    MetricStore,
    SeriesRow,
    TestResultRecord,
    ThresholdRow,
)

NIGHT = date(2024, 3, 1)


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "home" / "metrics.duckdb"


@pytest.fixture
def store(store_path: Path) -> MetricStore:
    return MetricStore(store_path)


def build_result(
    night: date = NIGHT,
    test: str = "01_message_soak",
    *,
    profile: str = "ci",
    status: str = "passed",
    n_metrics: int = 3,
    n_series_metrics: int = 2,
    n_seconds: int = 5,
    n_thresholds: int = 2,
    failed_thresholds: int = 0,
    value: float = 1.0,
    **overrides: Any,
) -> TestResultRecord:
    """A deterministic record whose values all derive from ``value``."""
    started = datetime(night.year, night.month, night.day, 2, 10, tzinfo=UTC)
    fields: dict[str, Any] = {
        "night": night,
        "profile": profile,
        "test": test,
        "run_id": f"run-{night.isoformat()}",
        "status": status,
        "started_at": started,
        "finished_at": started + timedelta(seconds=n_seconds),
        "metrics": tuple(
            MetricRow(f"metric_{i}", value + i, "ms", {"stat": "p95", "kind": str(i)})
            for i in range(n_metrics)
        ),
        "series": tuple(
            SeriesRow(f"series_{m}", s, count=10 + s, errors=0, p95=value * s, value=None)
            for m in range(n_series_metrics)
            for s in range(n_seconds)
        ),
        "thresholds": tuple(
            ThresholdRow(f"metric_{i}", "p(95)<100", "run", i >= failed_thresholds, value)
            for i in range(n_thresholds)
        ),
    }
    fields.update(overrides)
    return TestResultRecord(**fields)


@pytest.fixture
def make_result() -> Callable[..., TestResultRecord]:
    """Build a deterministic TestResultRecord; keyword arguments override its fields."""
    return build_result
