"""The DuckDB metric store: runs, test results, metrics, series, thresholds, chaos journals.

    from nightly_pipeline.home import Home
    from nightly_pipeline.store import MetricStore

    store = MetricStore(Home.from_env(os.environ).store)  # os.environ only at entry points
    store.write_test_result(TestResultRecord(...))        # replaces that (night, profile, test)
    store.recent_results(limit_nights=7)                  # polars DataFrame
    store.chaos_activities(night)                         # a chaos test's journal, as rows
    store.compact(keep_nights=30)                         # older series -> per-minute, shrink

This package does not import dagster; the Dagster resource wraps MetricStore.
"""

from nightly_pipeline.store.compaction import DEFAULT_KEEP_NIGHTS, CompactionResult
from nightly_pipeline.store.errors import (
    RunNotFoundError,
    StoreBusyError,
    StoreCorruptError,
    StoreError,
    StoreSchemaTooNewError,
    StoreWriteError,
)
from nightly_pipeline.store.migrations import latest_version
from nightly_pipeline.store.records import (
    ActivityRow,
    ExperimentRow,
    MetricRow,
    RunRecord,
    RunStatus,
    SeriesRow,
    TestResultRecord,
    TestStatus,
    ThresholdRow,
    ThresholdScope,
    canonical_tags,
)
from nightly_pipeline.store.retry import RetryPolicy
from nightly_pipeline.store.store import MetricStore

__all__ = [
    "DEFAULT_KEEP_NIGHTS",
    "ActivityRow",
    "CompactionResult",
    "ExperimentRow",
    "MetricRow",
    "MetricStore",
    "RetryPolicy",
    "RunNotFoundError",
    "RunRecord",
    "RunStatus",
    "SeriesRow",
    "StoreBusyError",
    "StoreCorruptError",
    "StoreError",
    "StoreSchemaTooNewError",
    "StoreWriteError",
    "TestResultRecord",
    "TestStatus",
    "ThresholdRow",
    "ThresholdScope",
    "canonical_tags",
    "latest_version",
]
