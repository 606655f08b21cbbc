"""Test 09 against the embedded platform (ci profile): Redis cut off from the
dispatcher, then from the consumer, each healed: the outbox holds what could not be
published, publishing resumes, nothing is lost; against a dispatcher that drops its
outbox rows when Redis errors (its gateway sending some frames twice), the loss,
dead-letter and duplicate checks fail; against one whose every write Redis refuses, the
resume, loss and recovery checks fail."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from nightly_pipeline.chaos.control import ProxyControl
from nightly_pipeline.chaos.platform_faults import FaultError
from nightly_pipeline.suite.catalog import select_tests
from nightly_pipeline.suite.errors import ConfigurationError
from nightly_pipeline.suite.target import Target, load_target
from tests.suite.chaos_checks import checks, failed, journal, never_recovered, no_fault_left
from tests.suite.platforms import ci_platform, metric, run_ci

PARTITION = select_tests("09")[0]


@pytest.fixture(scope="module")
def platform(tmp_path_factory, system_dir):
    with ci_platform(tmp_path_factory, system_dir, "partition") as up:
        yield up


def _proxies_healthy(platform) -> None:
    for name, url in platform.link_controls().items():
        with ProxyControl(url, proxy=name) as control:
            state = control.proxy()
            assert state["enabled"] and state["toxics"] == [], state


def test_a_partitioned_dispatcher_keeps_its_outbox_and_publishes_after_healing(
    platform, tmp_path
) -> None:
    outcome = run_ci(PARTITION, platform.target(), tmp_path)
    assert outcome.record.status == "passed", outcome.record.detail
    assert checks(outcome)["dlq_writes_during_partition"][1] > 0
    assert checks(outcome)["publishing_resumes"][1] > 0
    assert checks(outcome)["zero_message_loss"] == (True, 0)
    journal(tmp_path)
    no_fault_left(tmp_path)
    _proxies_healthy(platform)


def _python(kind: str, title: str, module: str, func: str, /, **arguments: object) -> dict:
    provider = {"type": "python", "module": module, "func": func, "arguments": arguments}
    return {"type": kind, "name": title, "provider": provider}


def _own_experiment(
    dispatcher_proxy: str, dispatcher_metrics: str, proxy_name: str = "redis-dispatcher"
) -> dict:
    """What a user of a deployed platform writes: chaostoolkit-toxiproxy's actions cut
    and heal the dispatcher's link; the suite's probe, under the names Test 09 reads,
    shows publishing resuming."""
    cut, heal = (
        _python(
            "action",
            f"{verb}-dispatcher",
            "chaostoxi.proxy.actions",
            f"{verb}_proxy",
            proxy_name=proxy_name,
        )
        for verb in ("disable", "enable")
    )
    cut["pauses"] = {"before": 1.0, "after": 1.5}
    published = [
        _python(
            "probe",
            f"published-{n}",
            "nightly_pipeline.chaos.activities",
            "metric_value",
            name="messaging_dispatch_published_total",
            url=dispatcher_metrics,
        )
        for n in (0, 1)
    ]
    published[1]["pauses"] = {"before": 1.0}
    return {
        "version": "1.0.0",
        "title": "the dispatcher cut off from Redis by our own Toxiproxy",
        "description": "a user's experiment for Test 09",
        "configuration": {"toxiproxy_url": dispatcher_proxy},
        "method": [cut, heal, *published],
        "rollbacks": [heal],
    }


def _described_with_experiment(platform, tmp_path, proxy_name: str) -> Target:
    """The embedded platform described by a target file, as a deployed one is, with the
    user's experiment for Test 09 cutting ``proxy_name``."""
    embedded = platform.target()
    dispatcher = platform.link_controls()["redis-dispatcher"]
    experiment = _own_experiment(dispatcher, embedded.metrics_urls["dispatcher"], proxy_name)
    (tmp_path / "partition.json").write_text(json.dumps(experiment))
    described = {
        "name": "deployed",
        "base_url": embedded.base_url,
        "ws_url": embedded.ws_url,
        "metrics_urls": dict(embedded.metrics_urls),
        "users": list(embedded.users),
        "password_env": "PLATFORM_PASSWORD",
        "chaos_experiments": {"09": "partition.json"},
    }
    (tmp_path / "target.json").write_text(json.dumps(described))
    return load_target(tmp_path / "target.json", {"PLATFORM_PASSWORD": embedded.password})


def test_a_target_files_own_experiment_injects_the_faults_and_the_suites_checks_judge(
    platform, tmp_path, monkeypatch
) -> None:
    """External target mode: the platform described by a target file (no process or
    proxy handles), Test 09's faults injected by the user's experiment through
    chaostoolkit-toxiproxy; the suite's load, accounting and checks unchanged."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")  # requests-based activities
    target = _described_with_experiment(platform, tmp_path, "redis-dispatcher")
    assert target.chaos is None and target.pids == {}

    outcome = run_ci(PARTITION, target, tmp_path / "run")

    assert outcome.record.status == "passed", outcome.record.detail
    assert checks(outcome)["dlq_writes_during_partition"][1] > 0
    assert checks(outcome)["publishing_resumes"][1] > 0
    assert checks(outcome)["zero_message_loss"] == (True, 0)
    names = [r["activity"]["name"] for r in journal(tmp_path / "run")["run"]]
    assert names == ["disable-dispatcher", "enable-dispatcher", "published-0", "published-1"]
    assert {
        m.tags.get("fault")
        for m in outcome.record.metrics
        if m.metric.startswith("time_to_recover_s") and m.tags
    } == {"experiment"}  # one window: the experiment's actions, first to last
    _proxies_healthy(platform)


def test_a_deployed_target_without_an_experiment_is_told_how_to_name_one(
    platform, tmp_path
) -> None:
    bare = dataclasses.replace(platform.target(), chaos=None)
    fix = re.escape('"chaos_experiments": {"09": "experiment.json"}')
    with pytest.raises(ConfigurationError, match=fix):
        run_ci(PARTITION, bare, tmp_path)


def test_an_experiment_whose_fault_fails_fails_the_test_with_its_cause(
    platform, tmp_path, monkeypatch
) -> None:
    """The user's action cannot apply (no such proxy): the test fails with the action's
    name and chaostoolkit-toxiproxy's own error, the journal kept beside the run."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    target = _described_with_experiment(platform, tmp_path, "no-such-proxy")
    with pytest.raises(
        FaultError, match=r"did not all apply .*disable-dispatcher: .*AssertionError"
    ):
        run_ci(PARTITION, target, tmp_path / "run")
    assert (tmp_path / "run" / "journal.json").is_file()
    _proxies_healthy(platform)


@pytest.fixture(scope="module")
def dropping(tmp_path_factory, system_dir):
    overrides = {"dlq_on_redis_error": False, "ws_duplicate_every": 5}
    with ci_platform(tmp_path_factory, system_dir, "dropping", overrides=overrides) as up:
        yield up


def test_a_dispatcher_that_drops_rows_fails_the_loss_and_dead_letter_checks(
    dropping, tmp_path
) -> None:
    """``dlq_on_redis_error: false``: the rows whose XADD failed during the dispatcher's
    partition are deleted, so ``dlq_writes_during_partition`` and ``zero_message_loss``
    fail. ``ws_duplicate_every: 5`` on the same gateway (every 5th message it delivers
    goes twice to each socket): ``each_message_delivered_once`` fails."""
    outcome = run_ci(PARTITION, dropping.target(), tmp_path)
    assert {"zero_message_loss", "dlq_writes_during_partition"} <= failed(outcome)
    assert checks(outcome)["zero_message_loss"][1] > 0
    passed, duplicated = checks(outcome)["each_message_delivered_once"]
    delivered = metric(outcome, "e2e_delivery_ms.count")  # (message, socket) pairs
    assert not passed and duplicated > 0 and abs(duplicated - delivered / 5) < 3
    assert outcome.blocking_failed and outcome.record.status == "failed"
    no_fault_left(tmp_path)
    _proxies_healthy(dropping)


def test_a_dispatcher_whose_writes_are_all_refused_fails_the_resume_check(
    tmp_path_factory, system_dir, tmp_path
) -> None:
    """``stream_writable: false``: Redis refuses every XADD of the dispatcher (WRONGTYPE),
    so ``messaging_dispatch_published_total`` does not grow after the heal
    (``publishing_resumes`` observes 0), nothing is delivered (``zero_message_loss``:
    every acknowledged message lost) and the pipeline is never steady again after either
    partition (``recovers_within_60s``: no recovery recorded)."""
    overrides = {"stream_writable": False}
    with ci_platform(tmp_path_factory, system_dir, "unwritable", overrides=overrides) as up:
        outcome = run_ci(PARTITION, up.target(), tmp_path)
        _proxies_healthy(up)
    assert checks(outcome)["dlq_writes_during_partition"][0]  # unreachable: rows kept
    assert checks(outcome)["publishing_resumes"] == (False, 0)
    expected = metric(outcome, "delivery_expected.count")
    assert checks(outcome)["zero_message_loss"] == (False, expected) and expected > 0
    never_recovered(outcome, "recovers_within_60s")
    assert outcome.blocking_failed and outcome.record.status == "failed"
    no_fault_left(tmp_path)
