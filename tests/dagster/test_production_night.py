"""Tests 12–14 at the ci profile end to end through Dagster on the embedded platform, as
the session's ci night runs them (every test of the suite in one ``nightly run``,
tests/ci_night.py): each passes, each metric its checks judge is numeric metadata on
its asset, and no process is left (Test 12's listener processes included)."""

from __future__ import annotations

import dagster as dg

from nightly_pipeline.automation.instance import open_instance
from nightly_pipeline.store import MetricStore
from nightly_pipeline.suite.catalog import select_tests

PRODUCTION = select_tests("12,13,14")
KEYS = {t.spec.key for t in PRODUCTION}


def test_every_production_like_test_passes_through_dagster(ci_night) -> None:
    assert ci_night.code == 0, ci_night.out
    results = MetricStore(ci_night.home.store).recent_results().filter(profile="ci")
    rows = [r for r in results.select("test", "status").rows() if r[0] in KEYS]
    assert sorted(rows) == [(t.spec.key, "passed") for t in PRODUCTION]


def test_each_asset_carries_what_its_checks_judge_as_numeric_metadata(ci_night) -> None:
    with open_instance(ci_night.home) as instance:
        for test in PRODUCTION:
            for check in test.spec.checks:
                key = dg.AssetKey([test.spec.key, check.on])
                event = instance.get_latest_materialization_event(key)
                assert event is not None, key
                metadata = event.asset_materialization.metadata
                name = check.metric.split("{")[0]
                found = [v for k, v in metadata.items() if k.startswith(name)]
                assert found, (key, name, sorted(metadata))
                assert all(isinstance(v.value, (int, float)) for v in found), (key, name)


def test_no_process_is_left_behind(ci_night) -> None:
    assert ci_night.left == []
