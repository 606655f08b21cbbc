"""Dispatcher and consumer through failures, against real PostgreSQL and Redis (a stack per
test), and the fault knobs that break exactly that (Tests 08, 09 and 11 must catch them):

- a consumer restarted under its own name takes its PEL over at once;
  ``reclaim_pending=False`` leaves a killed consumer's entries pending forever;
- ``dlq_on_redis_error=False`` deletes the rows whose XADD failed: a cut loses them;
- Redis killed and restarted empty: the dispatcher notices (epoch key) and replays the
  rows it kept until delivery; a stream entry lost unnoticed is sent again after
  ``outbox_redeliver_after_s``;
- PostgreSQL killed and restarted: both workers carry on, same processes.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from nightly_pipeline.chaos import ProxyControl
from tests.testbed.outage import (
    alive,
    kill_postgres,
    kill_redis,
    log_problems,
    start_postgres,
    start_redis,
)
from tests.testbed.pipeline_fixtures import (
    Gateway,
    Pipeline,
    Sent,
    all_gone,
    pipeline_stack,
    seed_conversations,
    send_messages,
    sql,
    wait_until,
)

pytestmark = pytest.mark.slow
DLQ = 'messaging_dispatch_dlq_total{sink="redis"}'
RECLAIMED = "messaging_consumer_pel_reclaimed_total"
AT_START = "messaging_consumer_pel_size_at_start"


def _outbox_rows(p: Pipeline) -> int:
    return sql(p.dsn, "SELECT count(*) AS n FROM outbox")[0]["n"]


def _pending(p: Pipeline) -> int:
    with p.redis() as r:
        return r.xpending(p.config.stream, p.config.consumer_group)["pending"]


def _delivered(gateway: Gateway, sent: list[Sent]) -> int:
    counts = gateway.counts()
    return sum(1 for s in sent if counts[s.message_id])


def _kill_consumer(p: Pipeline) -> None:
    pid = p.endpoints.pids["consumer"]
    os.kill(pid, signal.SIGKILL)
    assert all_gone([pid])


def _no_log_problems(p: Pipeline, *names: str) -> None:
    for name in names:
        assert log_problems(p.endpoints.run_dir / "logs" / f"{name}.log") == [], name


def test_consumer_restarted_under_its_name_takes_its_pel_over_at_once(
    tmp_path: Path, system_dir: Path
) -> None:
    # Idle threshold 60 s: XAUTOCLAIM cannot be what delivers these within the test.
    with pipeline_stack(tmp_path, system_dir, consumer_reclaim_idle_ms=60_000) as p:
        (conv,) = seed_conversations(p.dsn, 1, participants=3)
        sent = send_messages(p.dsn, conv, 200)  # no gateway yet: they stay pending
        wait_until(lambda: _pending(p) == 200, 20, "200 pending entries")
        _kill_consumer(p)

        with Gateway(p.endpoints.redis_url) as gateway, p.process(p.spec("consumer")):
            wait_until(lambda: gateway.has_all(sent), 20, "every message after the restart")
            wait_until(lambda: p.metric("consumer", RECLAIMED) == 200, 5, "reclaims counted")
            m = p.metrics("consumer")
        assert m[AT_START] == 200
        assert m["messaging_consumer_delivered_total"] == 200
        wait_until(lambda: _outbox_rows(p) == 0, 10, "delivered rows deleted")


def test_knob_reclaim_off_leaves_a_killed_consumers_entries_pending(
    tmp_path: Path, system_dir: Path
) -> None:
    """``reclaim_pending=False``: the killed consumer's entries are never taken over, and
    (redelivery pushed out of reach) never delivered: Test 08's checks must fail.

    "Never" has no positive signal: with the knob the consumer skips its take-over
    entirely and counts nothing, so the test waits a bounded 3 s (twice what a healthy
    consumer needs) and then looks."""
    knob = {"reclaim_pending": False, "consumer_reclaim_idle_ms": 1000}
    with pipeline_stack(tmp_path, system_dir, outbox_redeliver_after_s=3600, **knob) as p:
        (conv,) = seed_conversations(p.dsn, 1, participants=3)
        stuck = send_messages(p.dsn, conv, 200)
        wait_until(lambda: _pending(p) == 200, 20, "200 pending entries")
        _kill_consumer(p)

        with Gateway(p.endpoints.redis_url) as gateway, p.process(p.spec("consumer", "c2")):
            fresh = send_messages(p.dsn, conv, 50)
            wait_until(lambda: gateway.has_all(fresh), 20, "the new consumer delivers")
            # A healthy consumer takes them over within 1 s idle + 0.5 s; wait twice that
            # (bounded: no signal says "never", see the docstring).
            time.sleep(3.0)
            m = p.metrics("c2")
            assert _delivered(gateway, stuck) == 0
        assert m[AT_START] == 200 and m[RECLAIMED] == 0
        assert m["messaging_consumer_pel_size"] == 200
        assert _outbox_rows(p) == 200  # kept for a redelivery an hour away


def test_knob_no_dlq_loses_what_a_redis_cut_refused(tmp_path: Path, system_dir: Path) -> None:
    """``dlq_on_redis_error=False``: rows whose XADD failed are deleted, nothing is counted
    in the DLQ, and those messages never arrive (Test 09's checks must fail)."""
    with (
        pipeline_stack(tmp_path, system_dir, dlq_on_redis_error=False) as p,
        Gateway(p.endpoints.redis_url) as gateway,
        ProxyControl(p.endpoints.redis_proxy_control) as proxy,
    ):
        (conv,) = seed_conversations(p.dsn, 1, participants=2)
        before = send_messages(p.dsn, conv, 50)
        wait_until(lambda: gateway.has_all(before), 20, "delivery before the cut")
        # delivered rows are deleted off the delivery path: settle them before the cut
        wait_until(lambda: _outbox_rows(p) == 0, 10, "delivered rows deleted")

        proxy.cut()
        try:
            during = send_messages(p.dsn, conv, 100)
            wait_until(
                lambda: p.metric("dispatcher", "messaging_dispatch_dropped_total") >= 100,
                15,
                "rows dropped",
            )
            assert _outbox_rows(p) == 0
        finally:
            proxy.restore()
        after = send_messages(p.dsn, conv, 20)
        wait_until(lambda: gateway.has_all(after), 20, "delivery after the cut")
        assert _delivered(gateway, during) == 0
        assert p.metric("dispatcher", DLQ) == 0


def test_consumer_link_to_redis_cut_then_healed(tmp_path: Path, system_dir: Path) -> None:
    """Test 09's second half: the consumer partitioned from Redis (the dispatcher is not):
    it delivers nothing meanwhile, loses nothing, and carries on by itself afterwards."""
    with pipeline_stack(tmp_path, system_dir, workers=()) as p:
        (conv,) = seed_conversations(p.dsn, 1, participants=2)
        proxied = p.spec("consumer", redis_url=p.endpoints.redis_proxy_url)
        direct = p.spec("dispatcher", redis_url=p.endpoints.redis_url)
        with (
            Gateway(p.endpoints.redis_url) as gateway,
            ProxyControl(p.endpoints.redis_proxy_control) as proxy,
            p.process(direct),
            p.process(proxied) as consumer,
        ):
            before = send_messages(p.dsn, conv, 50)
            wait_until(lambda: gateway.has_all(before), 20, "delivery before the cut")
            wait_until(lambda: _outbox_rows(p) == 0, 10, "delivered rows deleted")
            proxy.cut()
            try:
                during = send_messages(p.dsn, conv, 100)
                errors = 'messaging_consumer_errors_total{type="redis"}'
                wait_until(lambda: p.metric("consumer", errors) > 0, 15, "the consumer noticed")
                assert _delivered(gateway, during) == 0
                assert _outbox_rows(p) == 100  # kept: not delivered yet
            finally:
                proxy.restore()
            wait_until(lambda: gateway.has_all(during), 30, "delivery after the heal")
            wait_until(lambda: _outbox_rows(p) == 0, 10, "delivered rows deleted")
            assert consumer.running()
            assert set(gateway.counts().values()) == {1}
        _no_log_problems(p, "consumer")


def test_redis_killed_empty_is_replayed_from_the_outbox(tmp_path: Path, system_dir: Path) -> None:
    """Redis restarted without its data (stream, group, PEL, delivered keys): every message
    that was in the stream undelivered, and every one sent meanwhile, still arrives."""
    with pipeline_stack(tmp_path, system_dir) as p:
        assert p.launcher is not None
        (conv,) = seed_conversations(p.dsn, 1, participants=3)
        with Gateway(p.endpoints.redis_url) as gateway:
            first = send_messages(p.dsn, conv, 50)
            wait_until(lambda: gateway.has_all(first), 20, "the first messages")
        wait_until(lambda: _outbox_rows(p) == 0, 10, "their rows deleted")

        in_stream = send_messages(p.dsn, conv, 100)  # no gateway: pending, rows kept
        wait_until(lambda: _pending(p) == 100, 20, "100 pending entries")
        kept = sql(p.dsn, "SELECT count(*) FILTER (WHERE next_attempt_at > now()) AS n FROM outbox")
        assert kept[0]["n"] == 100

        kill_redis(p.launcher, lose_data=True)
        meanwhile = send_messages(p.dsn, conv, 50)
        wait_until(lambda: p.metric("dispatcher", DLQ) > 0, 15, "DLQ writes while down")
        start_redis(p.launcher)

        with Gateway(p.endpoints.redis_url) as gateway:
            everything = in_stream + meanwhile
            wait_until(lambda: gateway.has_all(everything), 30, "everything after the restart")
            gateway.check_intact(everything, [conv])
        d = p.metrics("dispatcher")
        assert d["messaging_dispatch_replayed_total"] >= 100
        assert d["messaging_dispatch_redis_data_lost_total"] >= 1
        wait_until(lambda: _outbox_rows(p) == 0, 10, "delivered rows deleted")
        assert all(alive(p.endpoints.pids[n]) for n in ("dispatcher", "consumer"))
        _no_log_problems(p, "dispatcher", "consumer")


def test_a_stream_entry_lost_unnoticed_is_sent_again(tmp_path: Path, system_dir: Path) -> None:
    with pipeline_stack(tmp_path, system_dir, outbox_redeliver_after_s=1.0) as p:
        (conv,) = seed_conversations(p.dsn, 1, participants=2)
        sent = send_messages(p.dsn, conv, 20)
        wait_until(lambda: _pending(p) == 20, 20, "20 pending entries")
        with p.redis() as r:
            r.delete(p.config.stream)  # the entries vanish; the epoch key stays
        with Gateway(p.endpoints.redis_url) as gateway:
            wait_until(lambda: gateway.has_all(sent), 30, "sent again after 1 s")
        d = p.metrics("dispatcher")
        assert d["messaging_dispatch_replayed_total"] == 0  # the timer, not the epoch
        assert d["messaging_dispatch_published_total"] >= 40


def test_postgres_killed_and_restarted_both_workers_carry_on(
    tmp_path: Path, system_dir: Path
) -> None:
    with pipeline_stack(tmp_path, system_dir) as p, Gateway(p.endpoints.redis_url) as gateway:
        assert p.launcher is not None
        one, two = seed_conversations(p.dsn, 2, participants=2)
        first = send_messages(p.dsn, one, 100)
        wait_until(lambda: gateway.has_all(first), 20, "the first messages")
        wait_until(lambda: _outbox_rows(p) == 0, 10, "their rows deleted")

        kill_postgres(p.launcher)
        errors = 'messaging_dispatch_errors_total{type="postgres"}'
        wait_until(lambda: p.metric("dispatcher", errors) > 0, 15, "the dispatcher noticed")
        start_postgres(p.launcher)

        second = send_messages(p.dsn, two, 100)  # a conversation the consumer never saw
        wait_until(lambda: gateway.has_all(second), 30, "delivery after the restart")
        wait_until(lambda: _outbox_rows(p) == 0, 10, "their rows deleted")
        assert all(alive(p.endpoints.pids[n]) for n in ("dispatcher", "consumer"))
        assert set(gateway.counts().values()) == {1}
        _no_log_problems(p, "dispatcher", "consumer")
