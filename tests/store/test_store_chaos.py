"""A chaos test's journal in the store: written and replaced with the rest of its result,
in one transaction; read back per night; absent for tests without an experiment."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from nightly_pipeline.store import (
    ActivityRow,
    ExperimentRow,
    MetricStore,
    StoreWriteError,
    TestResultRecord,
)

MakeResult = Callable[..., TestResultRecord]
NIGHT = date(2024, 3, 1)
T0 = datetime(2024, 3, 1, 2, 10, 5, tzinfo=UTC)

EXPERIMENT_SCHEMA = {
    "night": pl.Date, "profile": pl.String, "test": pl.String, "run_id": pl.String,
    "title": pl.String, "status": pl.String, "deviated": pl.Boolean,
    "started_at": pl.Datetime("us"), "ended_at": pl.Datetime("us"), "error": pl.String,
    "test_started_at": pl.Datetime("us"), "load_started_at": pl.Datetime("us"),
}  # fmt: skip
ACTIVITY_SCHEMA = {
    "night": pl.Date, "profile": pl.String, "test": pl.String, "run_id": pl.String,
    "seq": pl.Int32, "phase": pl.String, "kind": pl.String, "name": pl.String,
    "status": pl.String, "started_at": pl.Datetime("us"), "ended_at": pl.Datetime("us"),
    "duration_s": pl.Float64, "output_json": pl.String, "tolerance_met": pl.Boolean,
    "error": pl.String,
}  # fmt: skip


def activities(faults: tuple[str, ...] = ("kill",), *, failed: bool = False) -> list[ActivityRow]:
    """A hypothesis probe, then inject/revert per fault one second apart, then a rollback."""
    rows = [
        ActivityRow(0, "hypothesis_before", "probe", "api-ready", "succeeded", T0, T0, 0.0,
                    "200", True)
    ]  # fmt: skip
    for i, fault in enumerate(faults):
        at = T0 + timedelta(seconds=2 * i + 1)
        done = at + timedelta(milliseconds=5)
        rows.append(
            ActivityRow(len(rows), "method", "action", f"inject-{fault}", "succeeded", at, done,
                        0.005, '{"name": "x"}')
        )  # fmt: skip
        status = "failed" if failed else "succeeded"
        error = "ActivityFailed: no" if failed else None
        start, end = at + timedelta(seconds=1), at + timedelta(seconds=1.5)
        rows.append(
            ActivityRow(len(rows), "method", "action", f"revert-{fault}", status, start, end,
                        0.5, None, None, error)
        )  # fmt: skip
    rows.append(ActivityRow(len(rows), "rollback", "action", "revert-every-fault", "succeeded"))
    return rows


def _naive(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=None) if moment else None


def chaos_result(make_result: MakeResult, test: str = "08_consumer_resilience", **kw):
    faults = kw.pop("faults", ("kill",))
    return make_result(
        NIGHT,
        test,
        load_started_at=T0,
        experiment=ExperimentRow("08: kill", kw.pop("status", "completed"), False, T0, None),
        activities=activities(faults, failed=kw.pop("failed", False)),
        **kw,
    )


@pytest.mark.parametrize("filled", [False, True], ids=["empty", "filled"])
def test_reads_have_expected_schema(
    store: MetricStore, make_result: MakeResult, filled: bool
) -> None:
    if filled:
        store.write_test_result(chaos_result(make_result))
    experiments, rows = store.chaos_experiments(NIGHT), store.chaos_activities(NIGHT)
    assert dict(experiments.schema) == EXPERIMENT_SCHEMA
    assert dict(rows.schema) == ACTIVITY_SCHEMA
    assert (experiments.height, rows.height) == ((1, 4) if filled else (0, 0))


def test_round_trip(store: MetricStore, make_result: MakeResult) -> None:
    record = chaos_result(make_result, failed=True)
    store.write_test_result(record)

    e = store.chaos_experiments(NIGHT).row(0, named=True)
    assert (e["test"], e["title"], e["status"], e["deviated"]) == (record.test, "08: kill",
                                                                    "completed", False)  # fmt: skip
    naive = T0.replace(tzinfo=None)
    assert (e["started_at"], e["load_started_at"]) == (naive, naive)
    assert e["test_started_at"] == record.started_at.replace(tzinfo=None)

    rows = store.chaos_activities(NIGHT, test=record.test)
    assert rows["seq"].to_list() == [0, 1, 2, 3]
    assert rows["run_id"].unique().to_list() == [record.run_id]
    columns = ("seq", "phase", "kind", "name", "status", "started_at", "ended_at")
    columns += ("duration_s", "output_json", "tolerance_met", "error")
    assert rows.select(columns).rows() == [
        (a.seq, a.phase, a.kind, a.name, a.status, _naive(a.started_at), _naive(a.ended_at),
         a.duration_s, a.output_json, a.tolerance_met, a.error)
        for a in record.activities
    ]  # fmt: skip
    assert rows.filter(pl.col("status") == "failed")["error"].to_list() == ["ActivityFailed: no"]


def test_writing_the_same_night_twice_replaces_the_journal(
    store: MetricStore, make_result: MakeResult
) -> None:
    store.write_test_result(chaos_result(make_result, faults=("kill", "cut", "slow")))
    store.write_test_result(chaos_result(make_result, "09_redis_partition"))
    assert store.chaos_activities(NIGHT, test="08_consumer_resilience").height == 8

    store.write_test_result(chaos_result(make_result, status="failed", faults=("kill",)))
    assert store.chaos_activities(NIGHT, test="08_consumer_resilience").height == 4
    assert store.chaos_experiments(NIGHT, test="08_consumer_resilience")["status"].to_list() == [
        "failed"
    ]

    # The same test rerun without an experiment (a non-chaos result) leaves none behind.
    store.write_test_result(make_result(NIGHT, "08_consumer_resilience"))
    assert store.chaos_experiments(NIGHT, test="08_consumer_resilience").height == 0
    assert store.chaos_activities(NIGHT, test="08_consumer_resilience").height == 0
    # Another test of the night is untouched.
    assert store.chaos_activities(NIGHT, test="09_redis_partition").height == 4
    assert store.chaos_experiments(NIGHT)["test"].to_list() == ["09_redis_partition"]


def test_non_chaos_tests_write_no_journal(store: MetricStore, make_result: MakeResult) -> None:
    store.write_test_result(make_result(NIGHT, "01_message_soak"))
    assert store.chaos_experiments(NIGHT).height == 0
    assert store.chaos_activities(NIGHT).height == 0


def test_filters(store: MetricStore, make_result: MakeResult) -> None:
    store.write_test_result(chaos_result(make_result, "08_consumer_resilience"))
    store.write_test_result(chaos_result(make_result, "08_consumer_resilience", profile="smoke"))
    store.write_test_result(chaos_result(make_result, "10_pool_exhaustion"))
    assert store.chaos_activities(NIGHT).height == 12
    assert store.chaos_activities(NIGHT, profile="smoke").height == 4
    assert store.chaos_experiments(NIGHT, profile="ci")["test"].to_list() == [
        "08_consumer_resilience",
        "10_pool_exhaustion",
    ]
    assert store.chaos_activities(NIGHT + timedelta(days=1)).height == 0


def test_a_rejected_activity_rolls_back_the_whole_result(
    store: MetricStore, make_result: MakeResult
) -> None:
    store.write_test_result(chaos_result(make_result, faults=("kill", "cut")))
    before = store.chaos_activities(NIGHT), store.recent_results()
    bad = chaos_result(make_result, value=9.0)
    object.__setattr__(bad.activities[1], "kind", "pause")  # past Python's check: the DB's

    with pytest.raises(StoreWriteError, match="rolled back"):
        store.write_test_result(bad)
    assert store.chaos_activities(NIGHT).equals(before[0])
    assert store.recent_results().equals(before[1])


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"activities": activities()}, "activities without the experiment"),
        (
            {
                "experiment": ExperimentRow("t", "completed", False),
                "activities": [activities()[0], activities()[0]],
            },
            "two activities share a seq",
        ),
    ],
)
def test_record_rejects_inconsistent_journals(
    make_result: MakeResult, overrides: dict, error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        make_result(NIGHT, "08", **overrides)


@pytest.mark.parametrize(
    ("field", "value"), [("phase", "during"), ("kind", "pause"), ("status", "")]
)
def test_activity_row_checks_its_fields(field: str, value: str) -> None:
    fields = {"seq": 0, "phase": "method", "kind": "action", "name": "x", "status": "succeeded"}
    with pytest.raises(ValueError, match=field):
        ActivityRow(**(fields | {field: value}))  # type: ignore[arg-type]
