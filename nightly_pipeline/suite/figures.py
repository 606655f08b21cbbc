"""Which of a test's stored metrics each of its metric assets shows (Dagster metadata,
plotted by the UI across partitions)."""

from __future__ import annotations

from collections.abc import Iterable

from nightly_pipeline.store import MetricRow

ASSET_PREFIXES: dict[str, tuple[str, ...]] = {
    "latency": ("http_req_duration.", "http_req_failed.rate", "http_reqs.rate", "engine."),
    "delivery": ("delivery_", "e2e_delivery_ms.", "ws_disconnects."),
    "resources": ("process_rss_growth_pct.", "messaging_dispatch_lag", "messaging_consumer_lag"),
    "websocket": ("ws_", "e2e_delivery_ms."),
    "security": ("sanctum_", "foreign_access", "messaging_conversation_version"),
    "cache": ("participant_cache", "messaging_participant_cache"),
    "invalidation": ("invalidation_", "stale_reads", "hit_ratio_recovery"),
    "auth": ("login_", "auth_", "redis_pool"),
    "storage": ("storage_",),
}
STATS_SHOWN = (".p50", ".p95", ".p99", ".rate", ".count", ".value", ".max", ".true")


def figures_for(
    asset: str, metrics: Iterable[MetricRow], checked: Iterable[str] = ()
) -> dict[str, float]:
    """The untagged (and ``name``-tagged) figures of ``asset``, e.g. ``http_req_duration.p95``,
    and those of the metrics its checks judge (``checked``: k6 selectors)."""
    prefixes = ASSET_PREFIXES.get(asset, ()) + tuple(
        f"{selector.split('{')[0]}." for selector in checked
    )
    out: dict[str, float] = {}
    for m in metrics:
        if not m.metric.startswith(prefixes) or not m.metric.endswith(STATS_SHOWN):
            continue
        if m.tags and set(m.tags) != {"name"}:
            continue
        label = m.metric if not m.tags else f"{m.metric}[{m.tags['name']}]"
        out[label] = m.value
    return out
