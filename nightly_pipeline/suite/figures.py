"""Which of a test's stored metrics each of its metric assets shows (Dagster metadata,
plotted by the UI across partitions)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from nightly_pipeline.store import MetricRow

ASSET_PREFIXES: dict[str, tuple[str, ...]] = {
    "latency": ("http_req_duration.", "http_req_failed.rate", "http_reqs.rate", "engine."),
    "delivery": ("delivery_", "e2e_delivery_ms.", "ws_disconnects."),
    "resources": (
        "process_rss_growth_pct.",
        "messaging_dispatch_lag",
        "messaging_consumer_lag",
        "redis_used_memory_mb.",  # suite.datastores
        "database_size_mb.",
    ),
    "websocket": ("ws_", "e2e_delivery_ms."),
    "security": ("sanctum_", "foreign_access", "messaging_conversation_version"),
    "cache": ("participant_cache", "messaging_participant_cache"),
    "invalidation": ("invalidation_", "stale_reads", "hit_ratio_recovery"),
    "auth": ("login_", "auth_", "redis_pool"),
    "storage": ("storage_",),
    "recovery": ("time_to_", "faults_unrecovered", "experiment_", "processes_crashed", "pel_"),
    "degradation": ("fault_errors", "readyz_unnamed", "processes_crashed"),
    "dispatch": ("messaging_dispatch_", "published_after_heal"),
}
STATS_SHOWN = (".p50", ".p95", ".p99", ".rate", ".count", ".value", ".max", ".true")


def figures_for(
    asset: str, metrics: Iterable[MetricRow], checked: Iterable[str] = ()
) -> dict[str, float]:
    """The figures of ``asset``, e.g. ``http_req_duration.p95``, ``http_req_duration.p95[login]``
    or ``time_to_recover_s.value[fault=consumer-kill]`` (one per fault, so that Dagster
    plots each night over night), and those of the metrics its checks judge (``checked``:
    k6 selectors)."""
    prefixes = ASSET_PREFIXES.get(asset, ()) + tuple(
        f"{selector.split('{')[0]}." for selector in checked
    )
    out: dict[str, float] = {}
    for m in metrics:
        if not m.metric.startswith(prefixes) or not m.metric.endswith(STATS_SHOWN):
            continue
        if not set(m.tags) <= LABELLED_BY:
            continue
        out[_label(m.metric, m.tags)] = m.value
    return out


LABELLED_BY = frozenset({"name", "fault", "status"})
"""The tags a figure may carry into its label (one figure per request name, per fault)."""


def _label(metric: str, tags: Mapping[str, str]) -> str:
    if not tags:
        return metric
    if set(tags) == {"name"}:
        return f"{metric}[{tags['name']}]"
    return metric + "[" + ",".join(f"{k}={tags[k]}" for k in sorted(tags)) + "]"
