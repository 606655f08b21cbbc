"""The dispatcher's metrics (DESIGN.md §4 names), registered in the registry it is given."""

from __future__ import annotations

from nightly_pipeline.testbed.metrics import Counter, Gauge, Histogram, Registry

LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class DispatcherMetrics:
    def __init__(self, registry: Registry) -> None:
        r = registry
        self.published = Counter(
            "messaging_dispatch_published_total",
            "Outbox rows written to the stream (XADDs that succeeded, replays included)",
            registry=r,
        )
        self.lag = Gauge(
            "messaging_dispatch_lag_seconds",
            "Largest now - created_at of the last published batch (0 when nothing is due)",
            registry=r,
        )
        self.lag_hist = Histogram(
            "messaging_dispatch_lag_distribution_seconds",
            "now - created_at of each published message",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.dlq = Counter(
            "messaging_dispatch_dlq_total",
            "Failed stream writes kept in the outbox for a retry, by sink",
            ["sink"],
            registry=r,
        )
        self.dead = Counter(
            "messaging_outbox_dead_total", "Outbox rows given up after max attempts", registry=r
        )
        self.dropped = Counter(
            "messaging_dispatch_dropped_total",
            "Outbox rows deleted although their XADD failed (fault knob dlq_on_redis_error)",
            registry=r,
        )
        self.replayed = Counter(
            "messaging_dispatch_replayed_total",
            "Sent outbox rows made due again because Redis had lost its data",
            registry=r,
        )
        self.redis_data_lost = Counter(
            "messaging_dispatch_redis_data_lost_total",
            "Times the stream's epoch key vanished (Redis restarted empty or was flushed)",
            registry=r,
        )
        self.errors = Counter(
            "messaging_dispatch_errors_total",
            "Dispatcher loop errors, by type",
            ["type"],
            registry=r,
        )
        self.dlq_redis = self.dlq.labels(sink="redis")  # shown as 0 before the first failure
        self.pg_errors = self.errors.labels(type="postgres")
        self.redis_errors = self.errors.labels(type="redis")
