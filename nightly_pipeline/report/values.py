"""Numbers as an operator reads them: a check's observed value and its threshold in the
check's unit (``9.2 ms`` against ``p(95) < 100 ms``), and a line of a test's key figures."""

from __future__ import annotations

import math
from collections.abc import Mapping

from nightly_pipeline.loadgen.thresholds import parse_expression


def format_value(value: float | None, unit: str = "") -> str:
    """``9.2 ms``, ``0 count`` as ``0``, a ratio as ``0.9994``; ``no data`` for NaN/None."""
    if value is None or math.isnan(value):
        return "no data"
    if unit == "count":
        return f"{value:,.0f}"
    if unit == "ratio":
        return f"{value:.4g}"
    text = f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3g}"
    return f"{text} {unit}".strip()


def format_threshold(expr: str, unit: str = "") -> str:
    """``p(95)<100`` in ms → ``p(95) < 100 ms``; ``count==0`` → ``count == 0``."""
    parsed = parse_expression(expr)
    bound = f"{parsed.bound:g}" + ("" if unit in ("", "count", "ratio") else f" {unit}")
    return f"{parsed.aggregation} {parsed.op} {bound}"


KEY_FIGURES: tuple[tuple[str, str], ...] = (
    # (stored metric, how it reads)
    ("http_reqs.rate", "{:,.1f} req/s"),
    ("http_req_duration.p95", "p95 {:.1f} ms"),
    ("http_req_failed.rate", "errors {:.2%}"),
    ("delivery_expected.count", "{:,.0f} deliveries"),
    ("delivery_lost.count", "{:,.0f} lost"),
    ("e2e_delivery_ms.p95", "e2e p95 {:.1f} ms"),
    ("process_rss_growth_pct.value", "RSS {:+.1f} %"),
)


def key_figures(figures: Mapping[str, float]) -> str:
    """The test's headline numbers that it recorded, in a fixed order, comma-separated;
    ``generator bound`` when the load generator could not keep its schedule."""
    parts = [
        shown.format(figures[name])
        for name, shown in KEY_FIGURES
        if name in figures and not math.isnan(figures[name])
    ]
    if figures.get("engine.generator_bound"):
        parts.append("generator bound")
    return ", ".join(parts)
