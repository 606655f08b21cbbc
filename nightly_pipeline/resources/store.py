"""The metric store (and the home around it) as a Dagster resource."""

import os

import dagster as dg

from nightly_pipeline.home import Home
from nightly_pipeline.store import MetricStore


class MetricStoreResource(dg.ConfigurableResource):
    """DuckDB metric store; ``path`` empty means ``$NIGHTLY_HOME/metrics.duckdb``. Reports
    and run directories live in the same home (``nightly_pipeline.home``)."""

    path: str = ""

    def home(self) -> Home:
        # A resource is an entry point: the environment is read here, not below.
        return Home.of_store(self.path) if self.path else Home.from_env(os.environ)

    def open(self) -> MetricStore:
        return MetricStore(self.home().store)
