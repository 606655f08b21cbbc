"""Tests 12–14 at the ci profile end to end through Dagster on the embedded platform: one
``nightly run`` (the scheduled jobs on the home's instance) passes every check,
materialises each test's metric assets with the figures its checks judge as numeric
metadata, and leaves no process behind (Test 12's listener processes included)."""

from __future__ import annotations

from datetime import date

import dagster as dg
import psutil
import pytest

from nightly_pipeline.automation.instance import open_instance
from nightly_pipeline.automation.run import NightRun, run_night
from nightly_pipeline.home import Home
from nightly_pipeline.store import MetricStore
from nightly_pipeline.suite.catalog import select_tests
from nightly_pipeline.suite.profiles import PROFILES

NIGHT = date(2026, 11, 23)
PRODUCTION = select_tests("12,13,14")


@pytest.fixture(scope="module")
def production_night(tmp_path_factory) -> tuple[Home, NightRun, set[int]]:
    home = Home.at(tmp_path_factory.mktemp("production") / "home")
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    run = run_night(PRODUCTION, PROFILES["ci"], NIGHT, target="embedded", home=home)
    return home, run, before


def test_every_production_like_test_passes_through_dagster(production_night) -> None:
    home, run, _ = production_night
    assert run.success and not run.blocking_failed, run.error
    results = MetricStore(home.store).recent_results().filter(profile="ci")
    assert sorted(results.select("test", "status").rows()) == [
        (t.spec.key, "passed") for t in PRODUCTION
    ]


def test_each_asset_carries_what_its_checks_judge_as_numeric_metadata(production_night) -> None:
    home, _, _ = production_night
    with open_instance(home) as instance:
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


def test_no_process_is_left_behind(production_night) -> None:
    _, _, before = production_night
    left = {p.pid for p in psutil.Process().children(recursive=True)} - before
    assert left == set(), [psutil.Process(pid).cmdline() for pid in left]
