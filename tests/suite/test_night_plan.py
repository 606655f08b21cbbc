"""The plan of a night over N targets (``suite.night_plan``): computed durations, never
wall-clock."""

import pytest

from nightly_pipeline.suite.catalog import BY_ID, TESTS
from nightly_pipeline.suite.night_plan import (
    Overheads,
    PlanError,
    Rules,
    expected_test_s,
    plan_night,
    target_names,
)
from nightly_pipeline.suite.profiles import PROFILES

NIGHTLY = PROFILES["nightly"]
CHAOS = {t.spec.key for t in TESTS if t.spec.injects_faults}


def test_nightly_on_four_targets_ends_within_the_plans_120_minutes():
    plan = plan_night(TESTS, NIGHTLY, target_names(4))
    assert plan.end_s <= 120 * 60, plan.lines()


def test_nightly_on_one_target_is_the_sum_of_the_tests_past_the_window():
    """The reason for the fan-out: one after another, the night takes ~4 h."""
    overheads = Overheads()
    plan = plan_night(TESTS, NIGHTLY, target_names(1), overheads=overheads)
    total = sum(expected_test_s(t, NIGHTLY, overheads) for t in TESTS)
    assert plan.end_s == pytest.approx(overheads.platform_start_s + total)
    assert plan.end_s > 3 * 3600


def test_every_test_is_planned_once_and_each_target_runs_one_test_at_a_time():
    plan = plan_night(TESTS, NIGHTLY, target_names(4))
    keys = [k for t in plan.targets for k in t.keys]
    assert sorted(keys) == sorted(t.spec.key for t in TESTS)
    for target in plan.targets:
        for before, after in zip(target.tests, target.tests[1:], strict=False):
            assert after.start_s >= before.end_s


def test_the_chaos_tests_share_one_target_in_catalog_order():
    plan = plan_night(TESTS, NIGHTLY, target_names(4))
    targets = {plan.target_of(k) for k in CHAOS}
    assert len(targets) == 1
    (name,) = targets
    on_it = [k for k in next(t for t in plan.targets if t.name == name).keys if k in CHAOS]
    assert on_it == sorted(CHAOS)


def test_lpt_places_the_longest_first_on_the_target_free_first():
    """Three tests of 1800, 1200 and 900 s on two targets, no overheads: 1800 | 1200+900,
    each target's tests in key order (Dagster's, when steps carry no priority)."""
    tests = [BY_ID["01"], BY_ID["04"], BY_ID["02"]]  # 1800, 1200, 900 s at nightly
    plan = plan_night(tests, NIGHTLY, ("a", "b"), overheads=Overheads(0, 0), rules=Rules())
    assert [t.keys for t in plan.targets] == [
        ("01_message_soak",),
        ("02_conversation_crud", "04_mixed_ws_http"),
    ]
    assert [(t.start_s, t.end_s) for t in plan.targets[1].tests] == [(0, 900), (900, 2100)]
    assert plan.end_s == 2100


def test_a_test_that_must_run_alone_gets_a_target_to_itself():
    rules = Rules(alone=frozenset({"13_migration_under_load"}))
    plan = plan_night(TESTS, NIGHTLY, target_names(4), rules=rules)
    alone = next(t for t in plan.targets if "13_migration_under_load" in t.keys)
    assert alone.keys == ("13_migration_under_load",)


def test_too_few_targets_for_the_alone_rule_is_refused_with_the_fix():
    rules = Rules(alone=frozenset({"01_message_soak"}))
    with pytest.raises(PlanError, match="at least 2 targets"):
        plan_night(TESTS, NIGHTLY, ("only",), rules=rules)


def test_a_target_never_used_has_nothing_and_no_start_cost():
    plan = plan_night([BY_ID["01"]], NIGHTLY, target_names(3))
    assert [len(t.tests) for t in plan.targets] == [1, 0, 0]
    assert plan.targets[1].end_s == 0


@pytest.mark.parametrize("count", [0, -1])
def test_a_night_without_targets_is_refused(count):
    with pytest.raises(PlanError, match="at least 1"):
        target_names(count)


def test_the_plan_reads_as_lines_and_json_with_the_expected_end():
    plan = plan_night(TESTS, PROFILES["ci"], target_names(2))
    lines = plan.lines()
    assert lines[0].startswith("embedded-1: ") and "ends 0:" in lines[0]
    assert "expected to end" in lines[-1]
    assert f'"expected_end_s": {round(plan.end_s, 1)}' in plan.to_json()
