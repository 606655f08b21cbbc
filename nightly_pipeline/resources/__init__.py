"""Dagster resources: thin ConfigurableResource adapters over the plain-Python packages."""

from nightly_pipeline.resources.alerts import AlertsResource
from nightly_pipeline.resources.store import MetricStoreResource
from nightly_pipeline.resources.target import (
    ProfileResource,
    TargetResource,
    TargetVersionResource,
)

__all__ = [
    "AlertsResource",
    "MetricStoreResource",
    "ProfileResource",
    "TargetResource",
    "TargetVersionResource",
]
