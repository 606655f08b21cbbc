"""Helpers to build small history frames by hand."""

from collections.abc import Sequence
from datetime import date, timedelta

import polars as pl

from nightly_pipeline.analysis import regression_verdicts
from nightly_pipeline.analysis.synthetic import HISTORY_SCHEMA

START = date(2025, 3, 1)


def night(i: int) -> date:
    return START + timedelta(days=i)


def frame(
    values: Sequence[float | None],
    *,
    metric: str = "http_req_duration.p95",
    test: str = "01_message_soak",
    status: Sequence[str] | None = None,
    profile: str = "nightly",
    skip: Sequence[int] = (),
) -> pl.DataFrame:
    """One series, night i = START + i; nights in ``skip`` have no row at all."""
    rows = [
        (night(i), profile, test, metric, "{}", v, "ms", status[i] if status else "passed")
        for i, v in enumerate(values)
        if i not in skip
    ]
    return pl.DataFrame(rows, schema=HISTORY_SCHEMA, orient="row")


def first_regressions(history: pl.DataFrame, nights: range, **kwargs) -> dict[tuple, tuple]:
    """Per (test, metric): (the first night a verdict says regression, its first_bad_night)."""
    out: dict[tuple, tuple] = {}
    for i in nights:
        v = regression_verdicts(history, evaluated_night=night(i), **kwargs)
        for row in v.filter(verdict="regression").iter_rows(named=True):
            out.setdefault((row["test"], row["metric"]), (i, row["first_bad_night"]))
    return out
