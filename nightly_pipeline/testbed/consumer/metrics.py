"""The delivery consumer's metrics (DESIGN.md §4 names), registered in the registry given."""

from __future__ import annotations

from nightly_pipeline.testbed.metrics import Counter, Gauge, Histogram, Registry

LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ConsumerMetrics:
    def __init__(self, registry: Registry) -> None:
        r = registry
        self.delivered = Counter(
            "messaging_consumer_delivered_total",
            "Stream entries published to the gateway and acknowledged",
            registry=r,
        )
        self.lag = Gauge(
            "messaging_consumer_lag_seconds",
            "Largest now - created_at of the last delivered batch (0 when idle)",
            registry=r,
        )
        self.lag_hist = Histogram(
            "messaging_consumer_lag_distribution_seconds",
            "now - created_at of each delivered message",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.pel_size = Gauge(
            "messaging_consumer_pel_size", "Pending entries of the group (XPENDING)", registry=r
        )
        self.pel_size_at_start = Gauge(
            "messaging_consumer_pel_size_at_start",
            "Pending entries of the group when this process started, before taking any over"
            " (after a killed consumer: its PEL at the kill)",
            registry=r,
        )
        self.reclaimed = Counter(
            "messaging_consumer_pel_reclaimed_total",
            "Pending entries this process took over, each counted once: a previous process's"
            " under the same name (at start) or another consumer's idle past"
            " consumer_reclaim_idle_ms (XAUTOCLAIM)",
            registry=r,
        )
        self.trimmed = Counter(
            "messaging_consumer_stream_trimmed_total",
            "Acknowledged entries removed from the stream (XTRIM MINID ~ below the oldest pending)",
            registry=r,
        )
        self.outbox_deleted = Counter(
            "messaging_consumer_outbox_deleted_total",
            "Outbox rows of delivered messages deleted (the dispatcher keeps them until then)",
            registry=r,
        )
        self.outbox_pending_deletes = Gauge(
            "messaging_consumer_outbox_pending_deletes",
            "Delivered messages whose outbox row is not deleted yet (PostgreSQL slow or down)",
            registry=r,
        )
        self.duplicates = Counter(
            "messaging_consumer_duplicates_total",
            "Entries whose message was already delivered (acknowledged, not published again)",
            registry=r,
        )
        self.no_receiver = Counter(
            "messaging_consumer_no_receiver_total",
            "Publishes no gateway received; the entry stays pending and is retried",
            registry=r,
        )
        self.malformed = Counter(
            "messaging_consumer_malformed_total",
            "Entries without the contract's fields or trimmed away (acknowledged, dropped)",
            registry=r,
        )
        self.cache_hits = Counter(
            "messaging_consumer_participant_cache_hits_total",
            "Recipient look-ups answered from the consumer's cache",
            registry=r,
        )
        self.cache_misses = Counter(
            "messaging_consumer_participant_cache_misses_total",
            "Recipient look-ups that queried PostgreSQL",
            registry=r,
        )
        self.errors = Counter(
            "messaging_consumer_errors_total", "Consumer loop errors, by type", ["type"], registry=r
        )
        self.pg_errors = self.errors.labels(type="postgres")
        self.redis_errors = self.errors.labels(type="redis")
