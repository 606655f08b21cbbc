"""Tests 08–11 at the ci profile end to end through Dagster on the embedded platform, as
the session's ci night runs them (every test of the suite in one ``nightly run``,
tests/ci_night.py): each passes, each experiment's journal is stored as rows and a file,
the recovery assets carry numeric metadata, and no fault and no process is left."""

from __future__ import annotations

import json

import dagster as dg

from nightly_pipeline.automation.instance import open_instance
from nightly_pipeline.chaos.ledger import FaultLedger
from nightly_pipeline.store import MetricStore
from nightly_pipeline.suite.catalog import select_tests
from tests.ci_night import NIGHT

CHAOS = select_tests("08,09,10,11")
KEYS = {t.spec.key for t in CHAOS}


def test_every_chaos_test_passes_through_dagster(ci_night) -> None:
    assert ci_night.code == 0, ci_night.out
    results = MetricStore(ci_night.home.store).recent_results().filter(profile="ci")
    rows = [r for r in results.select("test", "status").rows() if r[0] in KEYS]
    assert sorted(rows) == [(t.spec.key, "passed") for t in CHAOS]


def test_each_experiment_is_stored_as_rows_and_a_journal_file(ci_night) -> None:
    home = ci_night.home
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


def test_recovery_assets_carry_numeric_metadata_for_dagster_to_plot(ci_night) -> None:
    home = ci_night.home
    with open_instance(home) as instance:
        for test in CHAOS:
            key = dg.AssetKey([test.spec.key, "recovery"])
            event = instance.get_latest_materialization_event(key)
            assert event is not None, key
            metadata = event.asset_materialization.metadata
            recover = [v for k, v in metadata.items() if k.startswith("time_to_recover_s")]
            assert recover and all(isinstance(v.value, float) for v in recover), metadata.keys()


def test_no_fault_and_no_process_is_left_behind(ci_night) -> None:
    assert FaultLedger(ci_night.home.chaos_ledger).active() == {}
    assert ci_night.left == []
