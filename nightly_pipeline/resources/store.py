"""The metric store as a Dagster resource."""

import os
from pathlib import Path

import dagster as dg

from nightly_pipeline.store import MetricStore, default_store_path


class MetricStoreResource(dg.ConfigurableResource):
    """DuckDB metric store; ``path`` empty means ``$NIGHTLY_HOME/metrics.duckdb``."""

    path: str = ""

    def open(self) -> MetricStore:
        # A resource is an entry point: the environment is read here, not below.
        return MetricStore(Path(self.path) if self.path else default_store_path(os.environ))
