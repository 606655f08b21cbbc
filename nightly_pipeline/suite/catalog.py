"""Tests 01–07 as specs: the plan's durations, rates and acceptance criteria as checks.

Metric names are those the scenarios record (k6 names for HTTP and WebSocket, the
platform's names from /metrics, and the suite's own: ``delivery_*`` by message id,
``process_rss_growth_pct`` after warm-up). Scenarios arrive with the Suite issue.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from nightly_pipeline.suite.spec import PROFILES, Check, Profile, TestSpec

KIB = 1024


def _loss_checks() -> tuple[Check, ...]:
    return (
        Check("delivery_lost", "count==0", "error", "zero message loss"),
        Check("delivery_duplicated", "count==0", "error", "each message delivered once"),
        Check("delivery_corrupted", "count==0", "error", "zero corruption (sha256)"),
    )


TESTS: tuple[TestSpec, ...] = (
    TestSpec(
        "01",
        "message_soak",
        1800,
        500,
        (
            Check("http_req_duration{name:post_message}", "p(95)<100", "warn", "P95 < 100 ms"),
            Check("http_req_failed", "rate<0.001", "error", "error rate < 0.1 %"),
            Check("messaging_dispatch_lag_seconds", "max<5", "warn", "dispatch lag < 5 s"),
            Check("messaging_consumer_lag_seconds", "max<5", "warn", "consumer lag < 5 s"),
            Check("messaging_outbox_dead_total", "count==0", "error", "zero dead letters"),
            *_loss_checks(),
            Check("process_rss_growth_pct", "max<10", "error", "memory stable (no leak)"),
        ),
        ("latency", "delivery", "resources"),
        "1 KiB encrypted messages at a sustained rate; every one delivered once, intact",
        {"payload_bytes": KIB},
    ),
    TestSpec(
        "02",
        "conversation_crud",
        900,
        200,
        (
            Check("foreign_access_allowed", "count==0", "error", "RLS: no foreign row served"),
            Check("sanctum_security_denied_total", "count>0", "error", "403 on foreign access"),
            Check(
                "messaging_conversation_version_conflicts_total",
                "count>0",
                "error",
                "optimistic concurrency: 409 on stale versions",
            ),
            Check("participant_cache_hit_ratio", "value>0.8", "warn", "cache hit rate > 80 %"),
            Check("http_req_duration{cache:hit}", "p(95)<50", "warn", "P95 < 50 ms cached"),
            Check("http_req_duration{cache:miss}", "p(95)<200", "warn", "P95 < 200 ms miss"),
        ),
        ("latency", "security", "cache"),
        "40 % create, 30 % list, 20 % update, 10 % delete conversations",
    ),
    TestSpec(
        "03",
        "participant_invalidation",
        600,
        100,
        (
            Check(
                "invalidation_delay_ms", "p(99)<100", "warn", "invalidation via Pub/Sub < 100 ms"
            ),
            Check("stale_reads", "count==0", "error", "no stale reads after invalidation"),
            Check("hit_ratio_recovery_s", "max<60", "warn", "hit rate > 90 % within 1 min"),
        ),
        ("invalidation", "cache"),
        "add and remove participants rapidly; reads must never see a stale membership",
    ),
    TestSpec(
        "04",
        "mixed_ws_http",
        1200,
        500,
        (
            Check("e2e_delivery_ms", "p(95)<500", "warn", "95 % delivered over WS < 500 ms"),
            Check("ws_disconnects", "count==0", "error", "zero WebSocket disconnects"),
            Check("delivery_lost", "count==0", "error", "delivered == sent"),
            Check("delivery_duplicated", "count==0", "error", "delivered == sent"),
        ),
        ("latency", "delivery", "websocket"),
        "50 persistent WebSockets while messages are posted over HTTP",
        {"websockets": 50},
    ),
    TestSpec(
        "05",
        "large_payload",
        900,
        100,
        (
            Check("delivery_corrupted", "count==0", "error", "zero corruption (hash check)"),
            Check("messaging_payload_rejects_total", "count==0", "error", "payload rejects == 0"),
            Check("process_rss_growth_pct", "max<10", "error", "memory growth < 10 %"),
            Check("ws_overload_total", "count==0", "error", "no backpressure drops"),
        ),
        ("latency", "delivery", "resources"),
        "64 KiB payloads: integrity, memory and backpressure",
        {"payload_bytes": 64 * KIB},
    ),
    TestSpec(
        "06",
        "sustained_login",
        1800,
        200,
        (
            Check("login_success", "rate>0.999", "error", "success > 99.9 %"),
            Check("auth_token_generation_ms", "p(95)<50", "warn", "token generation P95 < 50 ms"),
            Check("process_rss_growth_pct", "max<5", "error", "memory growth < 5 %"),
            Check("redis_pool_utilization", "max<0.8", "warn", "Redis pool < 80 %"),
        ),
        ("latency", "auth", "resources"),
        "logins per second, sustained",
    ),
    TestSpec(
        "07",
        "storage_multi_adapter",
        1200,
        300,
        (
            Check("storage_cache_hit_ratio", "value>0.85", "warn", "cache hit > 85 %"),
            Check("storage_breaker_opens", "count==0", "error", "no circuit breaker opens"),
            Check("storage_retry_ratio", "value<0.01", "warn", "retries < 1 % of requests"),
            Check("http_req_duration", "p(95)<100", "warn", "stable adapter latencies"),
        ),
        ("latency", "storage"),
        "40 % PostgreSQL writes, 30 % stream publishes, 30 % cache reads",
    ),
)

BY_ID: Mapping[str, TestSpec] = {t.id: t for t in TESTS}


class SelectionError(ValueError):
    """An unknown test id or profile; the message lists the valid ones."""


def select_tests(ids: str | Sequence[str] | None) -> list[TestSpec]:
    """``"01,04"`` (or a list, or None for all) → specs in id order."""
    if ids is None:
        return list(TESTS)
    wanted = [i.strip() for i in ids.split(",")] if isinstance(ids, str) else list(ids)
    unknown = [i for i in wanted if i not in BY_ID]
    if unknown:
        valid = ", ".join(f"{t.id} ({t.name})" for t in TESTS)
        raise SelectionError(f"unknown test id(s) {', '.join(unknown)}; valid: {valid}")
    return [BY_ID[i] for i in sorted(set(wanted))]


def profile_named(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise SelectionError(f"unknown profile {name!r}; valid: {', '.join(PROFILES)}") from None
