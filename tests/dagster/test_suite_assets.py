"""Test 01 through real Dagster against the embedded platform (ci profile): its metric
assets, its checks and its DuckDB rows; the same night again replaces the rows."""

from __future__ import annotations

import dagster as dg

from nightly_pipeline.assets.suite import SUITE_ASSETS, check_name
from nightly_pipeline.resources import MetricStoreResource, ProfileResource, TargetResource
from nightly_pipeline.store import MetricStore
from nightly_pipeline.suite.catalog import select_tests

NIGHT = "2026-11-20"


def test_check_names_are_dagster_safe_and_distinct() -> None:
    for spec in select_tests(None):
        names = [check_name(c) for c in spec.checks]
        assert len(set(names)) == len(names), spec.key
        assert all(n.replace("_", "").isalnum() for n in names), names


def test_message_soak_materialises_assets_checks_and_rows(tmp_path) -> None:
    (soak,) = [a for a in SUITE_ASSETS if a.node_def.name == "01_message_soak"]
    store_path = tmp_path / "home" / "metrics.duckdb"
    resources = {
        "target": TargetResource(users=20, run_root=str(tmp_path / "home")),
        "store": MetricStoreResource(path=str(store_path)),
        "profile": ProfileResource(name="ci"),
    }
    for _ in range(2):
        result = dg.materialize([soak], partition_key=NIGHT, resources=resources)
        assert result.success
    checks = result.get_asset_check_evaluations()
    assert len(checks) == len(select_tests("01")[0].checks)
    blocking_failed = [c.check_name for c in checks if not c.passed and c.severity.value == "ERROR"]
    assert blocking_failed == []
    latency = result.asset_materializations_for_node("01_message_soak")
    assert {m.asset_key.path[-1] for m in latency} == {"latency", "delivery", "resources"}
    delivery = next(m for m in latency if m.asset_key.path[-1] == "delivery")
    assert delivery.metadata["delivery_lost.count"].value == 0
    results = MetricStore(store_path).recent_results()
    assert results.height == 1 and results["test"][0] == "01_message_soak"
