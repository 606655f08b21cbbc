"""External target files: a valid one loads, a bad one names every problem."""

from __future__ import annotations

import json

import pytest

from nightly_pipeline.suite.target import (
    TargetConfigError,
    load_target,
    load_targets,
    target_names_in,
)

GOOD = {
    "name": "staging",
    "base_url": "https://messaging.staging.example.com/",
    "ws_url": "wss://messaging.staging.example.com/v1/ws",
    "metrics_urls": {"api": "https://messaging.staging.example.com/metrics"},
    "users": ["load0001"],
    "password_env": "NIGHTLY_TARGET_PASSWORD",
    "allow_hosts": ["messaging.staging.example.com"],
}


def test_a_valid_target_file_loads_with_the_password_from_the_environment(tmp_path) -> None:
    path = tmp_path / "target.json"
    path.write_text(json.dumps(GOOD))
    target = load_target(path, {"NIGHTLY_TARGET_PASSWORD": "s3cret"})
    assert target.base_url == "https://messaging.staging.example.com"
    assert target.password == "s3cret"
    assert target.allow_hosts == ("messaging.staging.example.com",)
    assert target.pids == {}  # a deployed platform: memory from its /metrics


def test_every_problem_is_reported_at_once(tmp_path) -> None:
    path = tmp_path / "target.json"
    path.write_text(json.dumps({**GOOD, "ws_url": "http://x/v1/ws", "users": []}))
    with pytest.raises(TargetConfigError) as err:
        load_target(path, {})
    message = str(err.value)
    assert str(path) in message
    assert "ws_url must start with ws or wss" in message
    assert "at least one seeded user" in message
    assert "NIGHTLY_TARGET_PASSWORD" in message


def test_a_file_that_is_not_json_is_named(tmp_path) -> None:
    path = tmp_path / "target.json"
    path.write_text("name: staging")
    with pytest.raises(TargetConfigError, match="cannot read it as JSON"):
        load_target(path, {})


EXPERIMENT = {
    "version": "1.0.0",
    "title": "our own partition",
    "description": "the user's faults, with the suite's load and checks",
    "method": [
        {
            "type": "action",
            "name": "noop",
            "provider": {
                "type": "python",
                "module": "nightly_pipeline.chaos.activities",
                "func": "revert_all",
            },
        }
    ],
}


def test_chaos_experiments_are_resolved_beside_the_target_file(tmp_path) -> None:
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "partition.yaml").write_text(json.dumps(EXPERIMENT))
    path = tmp_path / "target.json"
    path.write_text(json.dumps({**GOOD, "chaos_experiments": {"09": "experiments/partition.yaml"}}))
    target = load_target(path, {"NIGHTLY_TARGET_PASSWORD": "s3cret"})
    assert target.experiments == {"09": tmp_path / "experiments" / "partition.yaml"}
    assert target.chaos is None


def test_an_experiment_that_does_not_validate_is_refused_with_chaos_toolkits_words(
    tmp_path,
) -> None:
    broken = {**EXPERIMENT, "method": [{"type": "action", "name": "x", "provider": {}}]}
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    path = tmp_path / "target.json"
    path.write_text(
        json.dumps(
            {**GOOD, "chaos_experiments": {"09": "broken.json", "10": "absent.json", "x": "y"}}
        )
    )
    with pytest.raises(TargetConfigError) as err:
        load_target(path, {"NIGHTLY_TARGET_PASSWORD": "s3cret"})
    message = str(err.value)
    assert "chaos_experiments['09']" in message and "does not validate" in message
    assert "an activity requires a provider" in message  # chaoslib's own words
    assert "absent.json: no such file" in message
    assert "'x' is not a test id" in message


def _several(tmp_path):
    """A file listing two environments, the shared keys at the top."""
    shared = {k: v for k, v in GOOD.items() if k not in ("name", "base_url", "ws_url")}
    shared["allow_hosts"] = ["a.example.com", "b.example.com"]
    listed = [
        {"name": n, "base_url": f"https://{n}.example.com", "ws_url": f"wss://{n}.example.com/ws"}
        for n in ("a", "b")
    ]
    path = tmp_path / "targets.json"
    path.write_text(json.dumps({**shared, "metrics_urls": {}, "targets": listed}))
    return path


def test_a_file_of_several_targets_loads_each_with_the_shared_keys(tmp_path) -> None:
    path = _several(tmp_path)
    env = {"NIGHTLY_TARGET_PASSWORD": "s3cret"}
    targets = load_targets(path, env)
    assert list(targets) == ["a", "b"]
    assert targets["b"].base_url == "https://b.example.com"
    assert targets["b"].password == "s3cret" and targets["b"].users == ("load0001",)
    assert load_target(path, env, "a") == targets["a"]
    assert target_names_in(path) == ("a", "b")


def test_a_file_of_several_targets_needs_the_entry_named(tmp_path) -> None:
    path = _several(tmp_path)
    env = {"NIGHTLY_TARGET_PASSWORD": "s3cret"}
    with pytest.raises(TargetConfigError, match=r"lists 2 targets \(a, b\)"):
        load_target(path, env)
    with pytest.raises(TargetConfigError, match="no target named 'c'; it lists a, b"):
        load_target(path, env, "c")


def test_a_one_target_file_still_loads_as_before_and_by_its_name(tmp_path) -> None:
    path = tmp_path / "target.json"
    path.write_text(json.dumps(GOOD))
    env = {"NIGHTLY_TARGET_PASSWORD": "s3cret"}
    assert load_target(path, env, "staging") == load_target(path, env)
    assert list(load_targets(path, env)) == ["staging"]
