"""Dispatcher and consumer against real PostgreSQL and Redis (a stack per test): delivery
exactly once, a consumer killed with SIGKILL mid-stream, Redis cut from the dispatcher,
dead letters, and a SIGTERM drain that leaves no process."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from nightly_pipeline.chaos import ProxyControl
from tests.testbed.pipeline_fixtures import (
    Conversation,
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


def _outbox(dsn: str) -> tuple[int, int]:
    row = sql(dsn, "SELECT count(*) AS n, count(*) FILTER (WHERE dead) AS dead FROM outbox")[0]
    return row["n"], row["dead"]


def _sentinel(p: Pipeline, gateway: Gateway, conv: Conversation) -> list[Sent]:
    """The positive signal that nothing sent before it is still on its way: one more
    message, sent after the others, reaches the gateway. Redis runs commands one at a
    time and a subscriber gets publishes in that order, so a duplicate published before
    the sentinel has arrived by then; callers first wait until nothing is left to publish
    again (outbox rows deleted, an empty PEL)."""
    sentinel = send_messages(p.dsn, conv, 1)
    wait_until(lambda: gateway.has_all(sentinel), 20, "the sentinel at the gateway")
    return sentinel


def test_every_message_is_delivered_once_and_intact(tmp_path: Path, system_dir: Path) -> None:
    with pipeline_stack(tmp_path, system_dir) as p, Gateway(p.endpoints.redis_url) as gateway:
        convs = seed_conversations(p.dsn, 3, participants=4)
        sent = [s for c in convs for s in send_messages(p.dsn, c, 100)]

        wait_until(lambda: gateway.has_all(sent), 20, "every message at the gateway")
        # Each row is kept until its message reached a gateway, then deleted by the consumer.
        wait_until(lambda: _outbox(p.dsn) == (0, 0), 10, "delivered rows deleted")
        wait_until(lambda: p.metric("consumer", "messaging_consumer_pel_size") == 0, 5, "empty PEL")
        sent += _sentinel(p, gateway, convs[0])
        counts = gateway.counts()
        assert len(counts) == len(sent) and set(counts.values()) == {1}
        gateway.check_intact(sent, convs)
        wait_until(lambda: _outbox(p.dsn) == (0, 0), 10, "the sentinel's row deleted")
        # Acknowledged entries are trimmed from the stream (whole nodes of 100: XTRIM ~).
        trimmed = "messaging_consumer_stream_trimmed_total"
        wait_until(lambda: p.metric("consumer", trimmed) >= 200, 10, "acknowledged trimmed")
        with p.redis() as r:
            assert r.xlen(p.config.stream) == len(sent) - p.metric("consumer", trimmed)

        d, c = p.metrics("dispatcher"), p.metrics("consumer")
        assert d["messaging_dispatch_published_total"] == len(sent)
        assert d[DLQ] == 0 and d["messaging_outbox_dead_total"] == 0
        assert d["messaging_dispatch_lag_distribution_seconds_count"] == len(sent)
        assert c["messaging_consumer_delivered_total"] == len(sent)
        assert c["messaging_consumer_lag_distribution_seconds_count"] == len(sent)
        assert c["messaging_consumer_duplicates_total"] == 0
        assert c["messaging_consumer_outbox_deleted_total"] == len(sent)
        assert c["messaging_consumer_pel_reclaimed_total"] == 0
        assert d["messaging_dispatch_replayed_total"] == 0
        assert c["messaging_consumer_participant_cache_hits_total"] > 0


def test_consumer_killed_mid_stream_loses_nothing(tmp_path: Path, system_dir: Path) -> None:
    with pipeline_stack(tmp_path, system_dir, consumer_reclaim_idle_ms=1000) as p:
        (conv,) = seed_conversations(p.dsn, 1, participants=3)
        r = p.redis()
        group = (p.config.stream, p.config.consumer_group)
        with Gateway(p.endpoints.redis_url) as first_gateway:
            first = send_messages(p.dsn, conv, 300)
            wait_until(lambda: first_gateway.has_all(first), 20, "the first messages delivered")

        # No gateway now: the consumer reads the next entries but cannot deliver them,
        # so they sit in its PEL when it is killed.
        second = send_messages(p.dsn, conv, 300)
        wait_until(lambda: r.xpending(*group)["pending"] == 300, 20, "300 pending entries")
        os.kill(p.endpoints.pids["consumer"], signal.SIGKILL)
        assert all_gone([p.endpoints.pids["consumer"]])
        pel_at_kill = r.xpending(*group)["pending"]
        third = send_messages(p.dsn, conv, 200)  # arrives while no consumer runs

        with Gateway(p.endpoints.redis_url) as gateway, p.process(p.spec("consumer", "c2")):
            t0 = time.monotonic()
            # A deadline, not a recovery target: how fast it recovers is printed.
            wait_until(lambda: gateway.has_all(second + third), 30, "every message after restart")
            print(f"\nconsumer restart: every message in {time.monotonic() - t0:.2f} s")
            wait_until(
                lambda: p.metric("c2", "messaging_consumer_pel_size") == 0, 5, "an empty PEL"
            )
            wait_until(
                lambda: p.metric("c2", "messaging_consumer_pel_reclaimed_total") == 300,
                5,
                "300 reclaims counted",
            )
            metrics = p.metrics("c2")
            counts = gateway.counts()
        r.close()

    assert pel_at_kill == 300
    assert metrics["messaging_consumer_pel_reclaimed_total"] == pel_at_kill
    assert metrics["messaging_consumer_pel_size_at_start"] == pel_at_kill
    assert metrics["messaging_consumer_delivered_total"] == len(second) + len(third)
    assert set(counts) == {s.message_id for s in second + third}
    assert set(counts.values()) == {1}
    gateway.check_intact(second + third, [conv])


def test_redis_cut_keeps_rows_in_the_dlq_then_drains(tmp_path: Path, system_dir: Path) -> None:
    # max_attempts 3: an outage outlasting 3 attempts must still not dead-letter anything.
    with (
        pipeline_stack(tmp_path, system_dir, dispatch_max_attempts=3) as p,
        Gateway(p.endpoints.redis_url) as gateway,
        ProxyControl(p.endpoints.redis_proxy_control) as proxy,
    ):
        (conv,) = seed_conversations(p.dsn, 1, participants=2)
        before = send_messages(p.dsn, conv, 100)
        wait_until(lambda: gateway.has_all(before), 20, "delivery before the cut")

        proxy.cut()
        try:
            during = send_messages(p.dsn, conv, 300)
            wait_until(lambda: p.metric("dispatcher", DLQ) > 0, 10, "DLQ writes")
            wait_until(
                lambda: sql(p.dsn, "SELECT min(attempts) AS a FROM outbox")[0]["a"] > 3,
                15,
                "more attempts than max_attempts",
            )
            assert _outbox(p.dsn) == (300, 0)
            assert not any(gateway.counts()[s.message_id] for s in during)
        finally:
            proxy.restore()
        t0 = time.monotonic()
        # A deadline, not a recovery target: how fast the DLQ drains is printed.
        wait_until(lambda: gateway.has_all(during), 20, "the DLQ drained to the gateway")
        print(f"\nafter the cut: the DLQ drained in {time.monotonic() - t0:.2f} s")
        wait_until(lambda: _outbox(p.dsn) == (0, 0), 10, "delivered rows deleted")
        d = p.metrics("dispatcher")
        assert d[DLQ] >= 300 * 3 and d["messaging_outbox_dead_total"] == 0
        assert d["messaging_dispatch_dropped_total"] == 0
        assert d["messaging_dispatch_replayed_total"] == 0  # a cut loses no Redis data
        assert d["messaging_dispatch_published_total"] >= 400
        wait_until(lambda: p.metric("consumer", "messaging_consumer_pel_size") == 0, 5, "empty PEL")
        sentinel = _sentinel(p, gateway, conv)
        assert set(gateway.counts().values()) == {1}
        gateway.check_intact(before + during + sentinel, [conv])


def test_refused_entries_are_dead_after_max_attempts(tmp_path: Path, system_dir: Path) -> None:
    with pipeline_stack(
        tmp_path, system_dir, workers=("dispatcher",), dispatch_max_attempts=2
    ) as p:
        with p.redis() as r:
            r.set(p.config.stream, "not a stream")  # every XADD now answers WRONGTYPE
        (conv,) = seed_conversations(p.dsn, 1, participants=2)
        send_messages(p.dsn, conv, 20)

        wait_until(
            lambda: p.metric("dispatcher", "messaging_outbox_dead_total") == 20, 15, "20 dead"
        )
        rows = sql(p.dsn, "SELECT attempts, dead, last_error FROM outbox")
        assert len(rows) == 20
        assert all(r["dead"] and r["attempts"] == 2 for r in rows)
        assert all("WRONGTYPE" in r["last_error"] for r in rows)
        d = p.metrics("dispatcher")
        assert d[DLQ] == 40 and d["messaging_dispatch_published_total"] == 0
        # Dead rows are not retried. The positive signal that the dispatcher went on
        # polling meanwhile: a 21st message, sent after, is tried twice and dies too.
        send_messages(p.dsn, conv, 1)
        wait_until(
            lambda: p.metric("dispatcher", "messaging_outbox_dead_total") == 21, 15, "21 dead"
        )
        assert p.metric("dispatcher", DLQ) == 42  # the 21st's two attempts, no more
        assert sql(p.dsn, "SELECT max(attempts) AS a FROM outbox")[0]["a"] == 2


def test_sigterm_drains_and_exits_within_5_s(tmp_path: Path, system_dir: Path) -> None:
    with pipeline_stack(tmp_path, system_dir, workers=()) as p:
        (conv,) = seed_conversations(p.dsn, 1, participants=2)
        with (
            Gateway(p.endpoints.redis_url) as gateway,
            p.process(p.spec("dispatcher")) as dispatcher,
            p.process(p.spec("consumer")) as consumer,
        ):
            sent = send_messages(p.dsn, conv, 3000, size=256)
            wait_until(lambda: len(gateway.counts()) > 100, 20, "delivery under way")
            procs = [dispatcher, consumer]
            pids = [proc.pid for proc in procs]
            t0 = time.monotonic()
            for proc in procs:
                assert proc.proc is not None
                proc.proc.send_signal(signal.SIGTERM)
            # The services' own budget is 5 s (a 3 s drain, then closing); the test's
            # deadline is wider so a busy machine cannot fail it. The exit code and the
            # log are the services' report; the time is printed.
            codes = [proc.proc.wait(30) for proc in procs if proc.proc is not None]
            print(f"\nSIGTERM: both exited in {time.monotonic() - t0:.2f} s")
            assert codes == [0, 0]
            assert all_gone(pids, timeout_s=30)
            assert len(gateway.counts()) < len(sent), "stopped after the end, not mid-stream"
            for proc in procs:
                log = proc.log_text()
                assert "stop signal: draining" in log
                print(f"{proc.name}: drain {'cut' if 'cancelling' in log else 'finished'}")

            # Nothing was lost by stopping mid-stream: a new pair finishes the job.
            with p.process(p.spec("dispatcher", "d2")), p.process(p.spec("consumer", "c2")):
                wait_until(lambda: gateway.has_all(sent), 30, "every message after restart")
        assert set(gateway.counts().values()) == {1}
