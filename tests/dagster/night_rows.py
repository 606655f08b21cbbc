"""What two nights of the same tests must share, whatever ran them (one target or several,
in process or on Celery): the names of the metrics they stored."""

from __future__ import annotations

import polars as pl

EVENT_ONLY = {"late_iterations", "dropped_iterations", "http_req_errors", "iteration_errors"}
"""Metrics recorded only when their event happens (a late or dropped iteration, a transport
error): present in one run and not in the next on the same target."""


def metric_names(metrics: pl.DataFrame) -> list[tuple[str, str]]:
    """(test, metric) without the statistic (``login_success.false`` exists only when a
    login failed) and without the event-only metrics."""
    return sorted(
        {
            (test, name.split(".")[0])
            for test, name in metrics.select("test", "metric").rows()
            if name.split(".")[0] not in EVENT_ONLY
        }
    )


def verdict_names(verdicts: pl.DataFrame) -> list[tuple[str, str, str]]:
    """(test, metric, verdict) on the same names as ``metric_names``."""
    return sorted(
        {
            (test, name.split(".")[0], verdict)
            for test, name, verdict in verdicts.select("test", "metric", "verdict").rows()
            if name.split(".")[0] not in EVENT_ONLY
        }
    )
