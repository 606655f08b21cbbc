"""Test 12 end to end against the embedded platform (ci profile, the plan's 1,000 sockets
over four listener processes): healthy, it passes with no leak and every socket open;
on a platform whose gateway misroutes frames and which has no access control, the
leak and foreign-access checks fail, naming what leaked; on one whose gateway drops
healthy sockets, the socket checks fail; the leak judge on fabricated receipts."""

from __future__ import annotations

import pytest

from nightly_pipeline.suite.catalog import select_tests
from nightly_pipeline.suite.delivery import Sent
from nightly_pipeline.suite.file_limits import FileLimitError, check_socket_limits
from nightly_pipeline.suite.leaks import judge_leaks
from nightly_pipeline.suite.receipts import Receipts
from tests.processes import descendants, processes_left
from tests.suite.platforms import ci_platform, metric, run_ci

MULTI = select_tests("12")[0]
KNOBS = MULTI.spec.knobs
SOCKETS = KNOBS.sockets
MISROUTE_EVERY = 7
DUPLICATE_EVERY = 5
CORRUPT_EVERY = 11
SEVER_AFTER_S = 5.0


@pytest.fixture(scope="module")
def healthy(tmp_path_factory, system_dir):
    with ci_platform(tmp_path_factory, system_dir, "multi", users=KNOBS.pool) as up:
        yield up


@pytest.fixture(scope="module")
def leaky(tmp_path_factory, system_dir):
    """A gateway that sends every 7th message to one socket of a non-member too, every
    5th twice and every 11th with a byte flipped, and an API with no access control
    (foreign reads and posts served)."""
    overrides = {
        "ws_misroute_every": MISROUTE_EVERY,
        "ws_duplicate_every": DUPLICATE_EVERY,
        "ws_corrupt_every": CORRUPT_EVERY,
        "access_control": False,
    }
    with ci_platform(
        tmp_path_factory, system_dir, "leaky", users=KNOBS.pool, overrides=overrides
    ) as up:
        yield up


@pytest.fixture(scope="module")
def severing(tmp_path_factory, system_dir):
    """A gateway that terminates every socket whose client has sent nothing for 5 s
    (``ws_heartbeat_timeout_s``; its own pings come every 30 s): Test 12's listeners only
    receive, so each of the 1,000 sockets is dropped ~5 s after it opened, mid-test."""
    overrides = {"ws_heartbeat_timeout_s": SEVER_AFTER_S}
    with ci_platform(
        tmp_path_factory, system_dir, "severing", users=KNOBS.pool, overrides=overrides
    ) as up:
        yield up


def _checks(outcome):
    return {c.check.name: c for c in outcome.checks}


def test_multi_user_conversations_pass_on_the_healthy_platform(healthy, tmp_path) -> None:
    outcome = run_ci(MULTI, healthy.target(), tmp_path)
    checks = _checks(outcome)
    assert outcome.record.status == "passed", outcome.record.detail
    for name in (
        "zero_cross_conversation_leaks",
        "no_foreign_access_allowed",
        "all_sockets_stay_open",
        "zero_ws_disconnects",
        "zero_message_loss",
    ):
        assert checks[name].passed and checks[name].observed == 0, (name, outcome.record.detail)
    assert checks["foreign_access_denied"].observed >= 2 * KNOBS.pool  # a read and a post each
    # every message reached 10 users x 10 devices: ~30 messages at ci
    assert metric(outcome, "delivery_expected.count") >= 20 * 100
    api_kib = metric(outcome, "api_kib_per_socket.value")
    listener_kib = metric(outcome, "listener_kib_per_socket.value")
    print(f"12 memory per socket: api {api_kib:.1f} KiB, listener {listener_kib:.1f} KiB")
    assert api_kib > 0 and listener_kib > 0
    # among our descendants: another test's run may have listeners of its own
    assert processes_left("nightly_pipeline.suite.ws_listen", among=descendants()) == []


def test_a_misrouting_gateway_without_row_security_fails_the_isolation_checks(
    leaky, tmp_path
) -> None:
    """Leaks, foreign access, and the delivery checks ``each_message_delivered_once``
    and ``zero_corrupted_messages`` on the same broken platform; nothing is lost."""
    outcome = run_ci(MULTI, leaky.target(), tmp_path)
    checks = _checks(outcome)
    leaks = checks["zero_cross_conversation_leaks"]
    assert not leaks.passed and leaks.observed > 0, outcome.record.detail
    assert "reached socket" in leaks.detail and "is not a participant" in leaks.detail
    assert not checks["no_foreign_access_allowed"].passed
    assert "could read conversation" in checks["no_foreign_access_allowed"].detail
    assert "could post into conversation" in checks["no_foreign_access_allowed"].detail
    denied = checks["foreign_access_denied"]
    assert not denied.passed and denied.observed == 0  # no 403 without access control
    for broken in ("each_message_delivered_once", "zero_corrupted_messages"):
        assert not checks[broken].passed and checks[broken].observed > 0, broken
    for truthful in ("zero_message_loss", "all_sockets_stay_open", "zero_ws_disconnects"):
        assert checks[truthful].passed, (truthful, outcome.record.detail)
    assert outcome.blocking_failed and outcome.record.status == "failed"
    assert "zero_cross_conversation_leaks" in outcome.record.detail


def test_a_gateway_that_drops_healthy_sockets_fails_the_socket_checks(severing, tmp_path):
    outcome = run_ci(MULTI, severing.target(), tmp_path)
    checks = _checks(outcome)
    stay_open = checks["all_sockets_stay_open"]
    assert not stay_open.passed and stay_open.observed > 0, outcome.record.detail
    assert f"of the {SOCKETS} sockets open at its lowest" in stay_open.detail
    disconnects = checks["zero_ws_disconnects"]
    assert not disconnects.passed and "the server closed" in disconnects.detail
    lost = checks["zero_message_loss"]  # what was posted to a dropped socket never came
    assert not lost.passed and lost.observed > 0, outcome.record.detail
    assert outcome.blocking_failed and outcome.record.status == "failed"
    assert checks["zero_cross_conversation_leaks"].passed  # dropped is not leaked


def _receipts(frames, layout) -> Receipts:
    received = Receipts(layout=layout)
    for message_id, label, conversation in frames:
        received.add(message_id, label, "a" * 64, True, 1.0, conversation)
    return received


def test_a_frame_at_a_non_members_socket_is_a_leak_and_one_at_a_members_is_not() -> None:
    layout = {"c1": ("alice#0", "bob#0"), "c2": ("bob#0", "carol#0")}
    user_of = {"alice#0": "alice", "bob#0": "bob", "carol#0": "carol"}
    members = {"c1": frozenset({"alice", "bob"}), "c2": frozenset({"bob", "carol"})}
    sent = {"m1": Sent("c1", "a" * 64, 0.0), "m2": Sent("c2", "a" * 64, 0.0)}
    frames = [
        ("m1", "alice#0", "c1"),
        ("m1", "bob#0", "c1"),
        ("m1", "carol#0", "c1"),  # carol is not in c1
        ("m2", "bob#0", "c2"),
        ("m2", "carol#0", "c2"),
    ]
    leaks = judge_leaks(_receipts(frames, layout), sent, members, user_of, layout)
    assert [(x.message_id, x.label, x.conversation) for x in leaks] == [("m1", "carol#0", "c1")]
    assert "carol is not a participant" in leaks[0].describe()


def test_a_frame_that_names_another_conversation_is_judged_by_the_one_it_was_posted_to() -> None:
    """m1 was posted to c1 (alice, bob) but its frames claim c2: filed under c2's
    sockets (bob, carol), carol's frame is a leak, bob's is not."""
    layout = {"c1": ("alice#0", "bob#0"), "c2": ("bob#0", "carol#0")}
    user_of = {"alice#0": "alice", "bob#0": "bob", "carol#0": "carol"}
    members = {"c1": frozenset({"alice", "bob"}), "c2": frozenset({"bob", "carol"})}
    sent = {"m1": Sent("c1", "a" * 64, 0.0)}
    frames = [("m1", "bob#0", "c2"), ("m1", "carol#0", "c2")]
    leaks = judge_leaks(_receipts(frames, layout), sent, members, user_of, layout)
    assert [(x.label, x.conversation) for x in leaks] == [("carol#0", "c1")]


def test_more_sockets_than_the_file_limit_is_refused_naming_the_limit_and_the_fix() -> None:
    with pytest.raises(FileLimitError, match=r"hard limit here is \d+.*ulimit -n"):
        check_socket_limits(10**9, 10, {})
