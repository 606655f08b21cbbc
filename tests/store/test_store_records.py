"""Record validation, canonical tags and the default path: pure functions, no I/O."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from nightly_pipeline.store import (
    RunRecord,
    TestResultRecord,
    ThresholdRow,
    canonical_tags,
)
from nightly_pipeline.store.records import to_utc_naive

T0 = datetime(2024, 3, 1, 2, 10, tzinfo=UTC)
GOOD: dict[str, Any] = {
    "night": date(2024, 3, 1),
    "profile": "ci",
    "test": "01_message_soak",
    "run_id": "r1",
    "status": "passed",
    "started_at": T0,
    "finished_at": T0 + timedelta(seconds=90),
}


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"night": datetime(2024, 3, 1)}, "night must be a datetime.date"),
        ({"night": "2024-03-01"}, "night must be a datetime.date"),
        ({"status": "ok"}, "status must be one of"),
        ({"profile": ""}, "profile must be a non-empty string"),
        ({"finished_at": T0 - timedelta(seconds=1)}, "is before started_at"),
    ],
)
def test_test_result_record_rejects(change: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        TestResultRecord(**{**GOOD, **change})


def test_test_result_record_duration_and_tuples() -> None:
    record = TestResultRecord(**GOOD, metrics=[])  # type: ignore[arg-type]
    assert record.duration_s == 90.0
    assert record.metrics == ()
    assert record.key == (date(2024, 3, 1), "ci", "01_message_soak")


def test_threshold_scope_is_checked() -> None:
    with pytest.raises(ValueError, match="scope must be one of"):
        ThresholdRow("m", "p(95)<1", "night", True)  # type: ignore[arg-type]


def test_run_record_rejects_datetime_night() -> None:
    with pytest.raises(ValueError, match="night"):
        RunRecord("r", datetime(2024, 3, 1), "ci", "embedded", T0)


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ({}, "{}"),
        ({"b": "2", "a": "1"}, '{"a":"1","b":"2"}'),
        ({"status": 200}, '{"status":"200"}'),
        ({"név": "é"}, '{"név":"é"}'),
    ],
)
def test_canonical_tags(tags: dict[str, object], expected: str) -> None:
    assert canonical_tags(tags) == expected


def test_to_utc_naive() -> None:
    cet = timezone(timedelta(hours=1))
    assert to_utc_naive(datetime(2024, 3, 1, 3, 10, tzinfo=cet)) == datetime(2024, 3, 1, 2, 10)
    assert to_utc_naive(datetime(2024, 3, 1, 2, 10)) == datetime(2024, 3, 1, 2, 10)
