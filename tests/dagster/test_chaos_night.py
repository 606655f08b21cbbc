"""Tests 08–11 at the ci profile end to end through Dagster on the embedded platform: one
``nightly run`` (the scheduled jobs on the home's instance) passes every check, stores
each experiment's journal as rows and a file, materialises the recovery assets with
numeric metadata, and leaves no fault and no process behind."""

from __future__ import annotations

import json
from datetime import date

import dagster as dg
import psutil
import pytest

from nightly_pipeline.automation.instance import open_instance
from nightly_pipeline.automation.run import NightRun, run_night
from nightly_pipeline.chaos.ledger import FaultLedger
from nightly_pipeline.home import Home
from nightly_pipeline.store import MetricStore
from nightly_pipeline.suite.catalog import select_tests
from nightly_pipeline.suite.profiles import PROFILES

NIGHT = date(2026, 11, 22)
CHAOS = select_tests("08,09,10,11")


@pytest.fixture(scope="module")
def chaos_night(tmp_path_factory) -> tuple[Home, NightRun, set[int]]:
    home = Home.at(tmp_path_factory.mktemp("chaos") / "home")
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    run = run_night(CHAOS, PROFILES["ci"], NIGHT, target="embedded", home=home)
    return home, run, before


def test_every_chaos_test_passes_through_dagster(chaos_night) -> None:
    home, run, _ = chaos_night
    assert run.success and not run.blocking_failed, run.error
    results = MetricStore(home.store).recent_results().filter(profile="ci")
    assert sorted(results.select("test", "status").rows()) == [
        (t.spec.key, "passed") for t in CHAOS
    ]


def test_each_experiment_is_stored_as_rows_and_a_journal_file(chaos_night) -> None:
    home, _, _ = chaos_night
    store = MetricStore(home.store)
    experiments = store.chaos_experiments(NIGHT)
    assert sorted(experiments.select("test", "status", "deviated").rows()) == [
        (t.spec.key, "completed", False) for t in CHAOS
    ]
    activities = store.chaos_activities(NIGHT)
    for test in CHAOS:
        (journal_file,) = home.runs.glob(f"*/{test.spec.key}/journal.json")
        journal = json.loads(journal_file.read_text())
        method = activities.filter(test=test.spec.key, phase="method").sort("seq")
        assert method["name"].to_list() == [r["activity"]["name"] for r in journal["run"]]
        assert method["name"].to_list()[0].startswith("inject-")


def test_recovery_assets_carry_numeric_metadata_for_dagster_to_plot(chaos_night) -> None:
    home, _, _ = chaos_night
    with open_instance(home) as instance:
        for test in CHAOS:
            key = dg.AssetKey([test.spec.key, "recovery"])
            event = instance.get_latest_materialization_event(key)
            assert event is not None, key
            metadata = event.asset_materialization.metadata
            recover = [v for k, v in metadata.items() if k.startswith("time_to_recover_s")]
            assert recover and all(isinstance(v.value, float) for v in recover), metadata.keys()


def test_no_fault_and_no_process_is_left_behind(chaos_night) -> None:
    home, _, before = chaos_night
    assert FaultLedger(home.chaos_ledger).active() == {}
    left = {p.pid for p in psutil.Process().children(recursive=True)} - before
    assert left == set(), [psutil.Process(pid).cmdline() for pid in left]
