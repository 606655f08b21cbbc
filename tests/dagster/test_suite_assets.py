"""Test 01 through real Dagster against the embedded platform (ci profile): its metric
assets, its checks (named, on the asset each judges) and its DuckDB rows; the same night
again replaces the rows; a platform that cannot start is retried per policy, then fails
clearly, with no orphans."""

from __future__ import annotations

import socket

import dagster as dg

from nightly_pipeline.assets.suite import SUITE_ASSETS, build_test_asset
from nightly_pipeline.automation.dagster_adapter import step_failures
from nightly_pipeline.definitions import defs
from nightly_pipeline.resources import MetricStoreResource, ProfileResource, TargetResource
from nightly_pipeline.store import MetricStore
from nightly_pipeline.suite.catalog import TESTS, select_tests
from tests.processes import descendants, processes_left

NIGHT = "2026-11-20"


def test_every_check_in_the_definitions_is_named_by_its_spec_on_the_asset_it_judges() -> None:
    """What the UI lists: each check of each spec under its own name (no name generated
    from the threshold text), on ``<test>/<asset it judges>``, blocking when it is."""
    graph = defs.resolve_asset_graph()
    found = {
        (key.asset_key.to_user_string(), key.name): graph.get_check_spec(key)
        for key in graph.asset_check_keys
        if key.asset_key.path[0] != "engine_selfcheck"
        and key.asset_key.path[0] != "baseline_snapshot"
    }
    expected = {(f"{t.spec.key}/{c.on}", c.name): c for t in TESTS for c in t.spec.checks}
    assert set(found) == set(expected)
    for where, check in expected.items():
        spec = found[where]
        assert spec.blocking == (check.severity == "error"), where
        assert check.plan in spec.description and check.threshold in spec.description, where
        assert "__" not in check.name and "_lt_" not in check.name, where


def test_message_soak_materialises_assets_checks_and_rows(tmp_path) -> None:
    (soak,) = [a for a in SUITE_ASSETS if a.node_def.name == "01_message_soak"]
    store_path = tmp_path / "home" / "metrics.duckdb"
    resources = {
        "target": TargetResource(users=20, home=str(tmp_path / "home")),
        "store": MetricStoreResource(path=str(store_path)),
        "profile": ProfileResource(name="ci"),
    }
    for _ in range(2):
        result = dg.materialize([soak], partition_key=NIGHT, resources=resources)
        assert result.success
    checks = {(c.asset_key.path[-1], c.check_name): c for c in result.get_asset_check_evaluations()}
    spec = select_tests("01")[0].spec
    assert set(checks) == {(c.on, c.name) for c in spec.checks}
    assert [
        name for (_, name), c in checks.items() if not c.passed and c.severity.value == "ERROR"
    ] == []
    loss = checks[("delivery", "zero_message_loss")]
    assert loss.metadata["observed"].value == 0
    assert loss.metadata["threshold"].value == "count==0"
    assert loss.metadata["metric"].value == "delivery_lost"
    assert loss.metadata["unit"].value == "count"
    latency = result.asset_materializations_for_node("01_message_soak")
    assert {m.asset_key.path[-1] for m in latency} == {"latency", "delivery", "resources"}
    delivery = next(m for m in latency if m.asset_key.path[-1] == "delivery")
    assert delivery.metadata["delivery_lost.count"].value == 0
    results = MetricStore(store_path).recent_results()
    assert results.height == 1 and results["test"][0] == "01_message_soak"


def test_a_stack_that_cannot_start_is_retried_per_policy_then_fails_clearly(tmp_path) -> None:
    """The API's port is taken, so every attempt starts PostgreSQL, Redis and the proxies,
    then the API dies: the step is retried per its RetryPolicy (Dagster does not retry a
    failed resource initialisation, so the platform starts inside the step), fails with a
    message naming the attempt, the logs and the cause, and leaves no process behind."""
    soak = build_test_asset(select_tests("01")[0], dg.RetryPolicy(max_retries=2, delay=0.2))
    before = descendants()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        resources = {
            "target": TargetResource(users=20, home=str(tmp_path / "home"), api_port=port),
            "store": MetricStoreResource(path=str(tmp_path / "home" / "metrics.duckdb")),
            "profile": ProfileResource(name="ci"),
        }
        result = dg.materialize(
            [soak], partition_key=NIGHT, resources=resources, raise_on_error=False
        )
    assert not result.success
    retries = [
        e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY
    ]
    assert len(retries) == 2
    (message,) = step_failures(result)  # what `nightly run` prints
    assert message.startswith("01_message_soak: Exceeded max_retries of 2"), message
    assert "the embedded platform did not start (attempt 3" in message, message
    assert "address already in use" in message.lower(), message
    assert str(tmp_path / "home" / "stack") in message
    # a stack's processes: our descendants not there before (PostgreSQL, Redis, the
    # proxies, the services; not multiprocessing's resource tracker an earlier test
    # started) and anything whose command line names the test's directory
    assert processes_left(tmp_path, pids=descendants() - before) == []


def test_one_asset_of_a_test_can_be_materialised_alone(tmp_path) -> None:
    """Selecting ``06_sustained_login/auth`` (the UI, or ``dagster asset materialize
    --select``) runs the whole test and materialises that asset and its checks only."""
    (logins,) = [a for a in SUITE_ASSETS if a.node_def.name == "06_sustained_login"]
    auth = dg.AssetKey(["06_sustained_login", "auth"])
    result = dg.materialize(
        [logins],
        selection=[auth],
        partition_key=NIGHT,
        resources={
            "target": TargetResource(users=20, home=str(tmp_path / "home")),
            "store": MetricStoreResource(path=str(tmp_path / "home" / "metrics.duckdb")),
            "profile": ProfileResource(name="ci"),
        },
    )
    assert result.success
    assert [m.asset_key for m in result.get_asset_materialization_events()] == [auth]
    checks = {c.check_name for c in result.get_asset_check_evaluations()}
    assert checks == {"login_success_over_99_9pct", "token_p95_under_50ms"}
    assert MetricStore(tmp_path / "home" / "metrics.duckdb").recent_results().height == 1


def test_infrastructure_retries_wait_as_long_as_the_profile_allows() -> None:
    """10 s then 30 s at smoke and nightly (Dagster's exponential backoff: a port to free,
    a service to settle); 1 s then 3 s at ci, whose tests last seconds; a policy already
    shorter is kept."""
    from nightly_pipeline.assets.steps import INFRA_RETRY, retry_policy_at
    from nightly_pipeline.suite.profiles import PROFILES

    def delays(policy: dg.RetryPolicy) -> list[float]:
        return [policy.calculate_delay(n) for n in (1, 2)]

    assert delays(retry_policy_at(PROFILES["nightly"])) == [10, 30]
    assert delays(retry_policy_at(PROFILES["smoke"])) == [10, 30]
    assert delays(retry_policy_at(PROFILES["ci"])) == [1, 3]
    assert retry_policy_at(PROFILES["ci"]).max_retries == INFRA_RETRY.max_retries
    quick = dg.RetryPolicy(max_retries=2, delay=0.2)
    assert delays(retry_policy_at(PROFILES["nightly"], quick)) == [0.2, 0.2]
