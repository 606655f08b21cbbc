"""A night's verdicts and baselines compare nights of the same profile only, and its
alerts are one per profile: two profiles of real runs' rows in a real store."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest

from nightly_pipeline import evaluate
from nightly_pipeline.store import MetricStore
from tests.real_rows import CI_MS, SMOKE_MS, SOAK, two_profile_history

FIRST = date(2026, 11, 1)
STEP = date(2026, 11, 12)
LAST = date(2026, 11, 22)
P95 = "http_req_duration.p95"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> MetricStore:
    path: Path = tmp_path_factory.mktemp("home") / "metrics.duckdb"
    store = MetricStore(path)
    two_profile_history(store, FIRST, (LAST - FIRST).days + 1, ci_step=STEP, failed_on=LAST)
    evaluate.evaluate_night(store, LAST)
    return store


def _p95(frame: pl.DataFrame, profile: str) -> dict:
    (row,) = frame.filter(
        (pl.col("profile") == profile) & (pl.col("test") == SOAK) & (pl.col("metric") == P95)
    ).iter_rows(named=True)
    return row


def test_a_verdict_compares_nights_of_its_own_profile(store: MetricStore) -> None:
    verdicts = store.verdicts(LAST)
    ci, smoke = _p95(verdicts, "ci"), _p95(verdicts, "smoke")
    assert ci["verdict"] == "regression"
    assert 0 <= (ci["first_bad_night"] - STEP).days <= 2
    assert ci["baseline_mean"] == pytest.approx(CI_MS, rel=0.05)
    # Smoke is twice ci's latency every night: against ci's nights it would look worse.
    assert smoke["verdict"] == "stable"
    assert smoke["nights"] == ci["nights"] == (LAST - FIRST).days + 1


def test_baselines_are_computed_per_profile(store: MetricStore) -> None:
    baselines = store.baselines().filter(pl.col("computed_for") == LAST)
    ci, smoke = _p95(baselines, "ci"), _p95(baselines, "smoke")
    assert ci["mean"] == pytest.approx(CI_MS, rel=0.05)
    assert smoke["mean"] == pytest.approx(SMOKE_MS, rel=0.05)
    assert ci["last_night"] < STEP  # ci's baseline stops before its regression
    # Smoke's passed nights: all but the failed last one; ci's stop at its step.
    assert smoke["n"] == (LAST - FIRST).days
    assert ci["n"] < smoke["n"]


def test_the_same_test_failing_at_two_profiles_is_two_alerts(store: MetricStore) -> None:
    due = evaluate.alerts_due(store, LAST)
    failed = sorted((a.profile, a.test) for a in due if a.kind == "check_failed")
    assert failed == [("ci", SOAK), ("smoke", SOAK)]
    regressions = [(a.profile, a.metric) for a in due if a.kind == "regression"]
    assert ("ci", P95) in regressions and ("smoke", P95) not in regressions
    keys = [evaluate.alert_key(a) for a in due]
    assert len(set(keys)) == len(keys)
    # Sent once, not again: the keys are stable from one evaluation to the next.
    assert evaluate.alerts_due(store, LAST, sent=set(keys)) == []


def test_one_profile_alerted_does_not_silence_the_other(store: MetricStore) -> None:
    due = evaluate.alerts_due(store, LAST)
    (ci,) = [a for a in due if a.kind == "check_failed" and a.profile == "ci"]
    left = evaluate.alerts_due(store, LAST, sent={evaluate.alert_key(ci)})
    assert [a.profile for a in left if a.kind == "check_failed"] == ["smoke"]


def test_nights_before_the_step_are_stable_at_both_profiles(store: MetricStore) -> None:
    """Control: before ci's step, neither profile's soak is a regression."""
    before = STEP - timedelta(days=1)
    evaluate.evaluate_night(store, before)
    verdicts = store.verdicts(before)
    assert {_p95(verdicts, p)["verdict"] for p in ("ci", "smoke")} <= {
        "stable",
        "insufficient data",
    }
