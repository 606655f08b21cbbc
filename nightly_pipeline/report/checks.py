"""A test's checks under its heading: each run-wide threshold verdict the store holds,
with the value it observed in the unit the test stored that figure in.

The store keeps a threshold's metric and expression (``delivery_lost`` ``count==0``) but
not its unit; the unit is the stored figure's (``delivery_lost.count`` is a ``count``,
``http_req_duration.p95`` in ``ms``), found in that night's history rows.

A check not measurable on this target (stored with its reason in ``not_measurable``; by
releases before store version 7, with severity ``not_measurable``) shows as such,
neither pass nor FAIL; the reason is in the test's detail above the table.
"""

from __future__ import annotations

import polars as pl

from nightly_pipeline.loadgen.thresholds import (
    NOT_MEASURABLE,
    NOT_MEASURABLE_SEVERITY,
    parse_expression,
)
from nightly_pipeline.report.frames import metric_label
from nightly_pipeline.report.html import css_class, esc, table
from nightly_pipeline.report.values import format_threshold, format_value

_S = pl.String()
THRESHOLDS_SCHEMA = dict(
    profile=_S, test=_S, metric=_S, tags=_S, expression=_S, scope=_S,
    passed=pl.Boolean(), observed=pl.Float64(), severity=_S,
)  # fmt: skip
HEADERS = ("check", "threshold", "observed", "severity", "verdict")
_STAT = {"med": "p50"}
"""Aggregations whose stored stat has another name (``p(95)`` is stored as ``p95``)."""


def stored_metric(metric: str, expression: str) -> str:
    """The history's name of the figure a threshold reads: ``http_req_duration`` with
    ``p(95)<100`` → ``http_req_duration.p95``."""
    agg = parse_expression(expression).aggregation
    stat = _STAT.get(agg, agg.replace("(", "").replace(")", ""))
    return f"{metric}.{stat}"


def _units(history: pl.DataFrame, profile: str, test: str) -> dict[str, str]:
    """Each stored figure's unit, by name: a unit is the stat's, whatever the tags (the
    selector ``{name:post_message}`` reads a row tagged with more than ``name``)."""
    rows = history.filter((pl.col("profile") == profile) & (pl.col("test") == test))
    units: dict[str, str] = {}
    for metric, unit in rows.select("metric", "unit").iter_rows():
        if unit:
            units.setdefault(metric, unit)
    return units


def check_rows(
    thresholds: pl.DataFrame, history: pl.DataFrame, profile: str, test: str
) -> list[dict[str, object]]:
    """The run-wide verdicts of (profile, test), each with its formatted cells: check,
    threshold, observed, severity, verdict (the order of ``HEADERS``), and passed."""
    mine = thresholds.filter(
        (pl.col("profile") == profile) & (pl.col("test") == test) & (pl.col("scope") == "run")
    ).sort("metric", "tags", "expression")
    units = _units(history, profile, test)
    out = []
    for r in mine.iter_rows(named=True):
        tags = r["tags"] or "{}"
        unit = units.get(stored_metric(r["metric"], r["expression"]), "")
        skipped = r.get("not_measurable") is not None or r["severity"] == NOT_MEASURABLE_SEVERITY
        out.append(
            {
                "check": metric_label(r["metric"], tags),
                "threshold": format_threshold(r["expression"], unit),
                "observed": "-" if skipped else format_value(r["observed"], unit),
                "severity": "-" if skipped else "blocking" if r["severity"] == "error" else "warn",
                "verdict": NOT_MEASURABLE if skipped else "pass" if r["passed"] else "FAIL",
                "passed": bool(r["passed"]) and not skipped,
                "status": "skipped" if skipped else "passed" if r["passed"] else "failed",
            }
        )
    return out


def checks_table(rows: list[dict[str, object]]) -> str:
    """The rows of ``check_rows`` as a table; a failed one is marked."""
    if not rows:
        return "<p>No checks recorded.</p>"
    cells = [[esc(r[h]) for h in HEADERS] for r in rows]
    classes = [css_class(str(r["status"])) for r in rows]
    return table(HEADERS, cells, row_classes=classes, numeric=(2,))
