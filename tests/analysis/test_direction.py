"""direction_of: one table row per metric family, including the stat-decides cases."""

import pytest

from nightly_pipeline.analysis import direction_of

CASES = [
    # metric, expected
    ("http_req_duration.p95", "lower"),
    ("http_req_duration.p(99)", "lower"),
    ("http_req_waiting.avg", "lower"),
    ("http_reqs.rate", "higher"),
    ("http_reqs.count", "higher"),
    ("http_req_failed.rate", "lower"),
    ("iterations.rate", "higher"),
    ("dropped_iterations.count", "lower"),
    ("checks.rate", "higher"),
    ("engine.scheduling_lag.p99", "lower"),
    ("messaging_dispatch_lag_seconds.p95", "lower"),
    ("messaging_consumer_lag_seconds.max", "lower"),
    ("messaging_outbox_dead_total.count", "lower"),
    ("messaging_dispatch_dlq_total.count", "lower"),
    ("messaging_consumer_delivered_total.count", "higher"),
    ("messaging_dispatch_published_total.count", "higher"),
    ("messaging_participant_cache_hits_total.count", "higher"),
    ("messaging_participant_cache_misses_total.count", "lower"),
    ("cache.hit_ratio", "higher"),
    ("cache.miss_ratio", "lower"),
    ("storage_cache_hits_total.rate", "higher"),
    ("storage_retries_total.count", "lower"),
    ("storage_errors_total.count", "lower"),
    ("storage_circuit_breaker_transitions_total.count", "lower"),
    ("storage_pool_in_use.max", "lower"),
    ("sanctum_security_denied_total.count", "lower"),
    ("messaging_payload_rejects_total.count", "lower"),
    ("ws_overload_total.count", "lower"),
    ("ws_heartbeat_terminate_total.count", "lower"),
    ("ws_frame_sent_total.count", "higher"),
    ("ws_delivered_ratio", "higher"),
    ("auth_token_generation_seconds.p95", "lower"),
    ("auth_login_success.rate", "higher"),
    ("resources.rss_mb.max", "lower"),
    ("resources.rss_mb.growth_pct", "lower"),
    ("resources.memory_growth_pct", "lower"),
    ("resources.cpu_pct.avg", "lower"),
    ("recovery_seconds", "lower"),
    ("migration.duration_s", "lower"),
    ("throughput.msgs_per_s", "higher"),
    ("something_unknown", "lower"),
]


@pytest.mark.parametrize(("metric", "expected"), CASES)
def test_direction_of(metric: str, expected: str) -> None:
    assert direction_of(metric) == expected
