"""The test catalog: every spec valid, profiles scale load and time, never the checks."""

from __future__ import annotations

import pytest

from nightly_pipeline.suite.catalog import TESTS, SelectionError, profile_named, select_tests
from nightly_pipeline.suite.spec import PROFILES, Check, TestSpec


def test_every_spec_is_valid_and_its_checks_parse_as_k6_thresholds() -> None:
    assert [t.id for t in TESTS] == ["01", "02", "03", "04", "05", "06", "07"]
    for spec in TESTS:
        assert spec.errors() == [], spec.key


def test_a_spec_with_a_bad_threshold_or_no_check_is_invalid() -> None:
    bad = TestSpec("1", "x", 0, 1, (Check("m", "p95 < 100", "warn", "typo"),), (), "")
    problems = " | ".join(bad.errors())
    for fragment in ("two digits", "plan_duration_s", "metric asset", "p95 < 100"):
        assert fragment in problems


@pytest.mark.parametrize(
    ("profile", "duration", "rate"),
    [("ci", 6.0, 100.0), ("smoke", 60.0, 500.0), ("nightly", 1800.0, 500.0)],
)
def test_profiles_scale_time_and_load_of_the_soak(profile, duration, rate) -> None:
    soak = select_tests("01")[0]
    p = profile_named(profile)
    assert p.duration(soak.plan_duration_s) == duration
    assert p.rate(soak.plan_rate) == rate


def test_profiles_never_change_what_is_checked() -> None:
    # checks live on the spec: there is nothing per profile to drop a check with
    assert all(not hasattr(p, "checks") for p in PROFILES.values())


def test_loss_corruption_and_leak_checks_are_blocking() -> None:
    for spec in TESTS:
        for check in spec.checks:
            if check.metric.startswith(("delivery_", "process_rss_growth")):
                assert check.severity == "error", (spec.key, check.metric)
            if check.metric.startswith("http_req_duration"):
                assert check.severity == "warn", (spec.key, check.metric)


def test_unknown_ids_and_profiles_are_refused_with_the_valid_ones() -> None:
    with pytest.raises(SelectionError, match=r"unknown test id\(s\) 09.*01 \(message_soak\)"):
        select_tests("01,09")
    with pytest.raises(SelectionError, match="valid: ci, smoke, nightly"):
        profile_named("weekly")
    assert [t.id for t in select_tests("04, 01")] == ["01", "04"]
    assert len(select_tests(None)) == 7
