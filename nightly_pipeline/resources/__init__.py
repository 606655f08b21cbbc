"""Dagster resources: thin ConfigurableResource adapters over the plain-Python packages."""

from nightly_pipeline.resources.store import MetricStoreResource

__all__ = ["MetricStoreResource"]
