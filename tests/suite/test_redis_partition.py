"""Test 09 against the embedded platform (ci profile): Redis cut off from the
dispatcher, then from the consumer, each healed: the outbox holds what could not be
published, publishing resumes, nothing is lost; against a dispatcher that drops its
outbox rows when Redis errors, the loss and dead-letter checks fail."""

from __future__ import annotations

import pytest

from nightly_pipeline.chaos.control import ProxyControl
from nightly_pipeline.suite.catalog import select_tests
from tests.suite.chaos_checks import checks, failed, journal, no_fault_left
from tests.suite.platforms import ci_platform, run_ci

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


@pytest.fixture(scope="module")
def dropping(tmp_path_factory, system_dir):
    overrides = {"dlq_on_redis_error": False}
    with ci_platform(tmp_path_factory, system_dir, "dropping", overrides=overrides) as up:
        yield up


def test_a_dispatcher_that_drops_rows_fails_the_loss_and_dead_letter_checks(
    dropping, tmp_path
) -> None:
    outcome = run_ci(PARTITION, dropping.target(), tmp_path)
    assert {"zero_message_loss", "dlq_writes_during_partition"} <= failed(outcome)
    assert checks(outcome)["zero_message_loss"][1] > 0
    assert outcome.blocking_failed and outcome.record.status == "failed"
    no_fault_left(tmp_path)
    _proxies_healthy(dropping)
