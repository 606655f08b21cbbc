"""A short markdown summary of a night, for Dagster asset metadata."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from html import escape

import polars as pl

from nightly_pipeline.report import frames
from nightly_pipeline.report.text import format_cell

MAX_VERDICT_ROWS = 10


def md_cell(value: object) -> str:
    """One table cell: HTML-escaped, pipes escaped, on one line."""
    text = escape(format_cell(value), quote=False)
    return " ".join(text.replace("|", "\\|").split())


def md_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(md_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _magnitude(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value * 100:+.1f} %"


def markdown_summary(night: date, results: pl.DataFrame, verdicts: pl.DataFrame) -> str:
    """Counts, one row per test, and the regressions/improvements (at most 10 rows)."""
    results = frames.night_results(frames.conform(results, frames.RESULTS_SCHEMA, "results"), night)
    verdicts = frames.night_verdicts(
        frames.conform(verdicts, frames.VERDICTS_SCHEMA, "verdicts"), night
    )
    counts = frames.status_counts(results)
    notable = verdicts.filter(pl.col("verdict").is_in(frames.NOTABLE_VERDICTS))
    regressions = notable.filter(pl.col("verdict") == "regression").height
    profiles = ", ".join(md_cell(p) for p in results["profile"].unique().sort()) or "-"
    parts = [
        f"**{night.isoformat()}** ({profiles}): {counts['passed']} passed, "
        f"{counts['failed']} failed, {counts['error']} errors; {regressions} regressions"
    ]
    if not results.is_empty():
        rows = [
            (r["test"], r["status"], r.get("duration_s"), r.get("failed_thresholds"))
            for r in results.iter_rows(named=True)
        ]
        parts.append(md_table(("test", "status", "duration s", "failed thresholds"), rows))
    if not notable.is_empty():
        rows = [
            (
                v["test"],
                frames.metric_label(v["metric"], v["tags"]),
                v["verdict"],
                _magnitude(v["magnitude"]),
                v["first_bad_night"],
            )
            for v in notable.head(MAX_VERDICT_ROWS).iter_rows(named=True)
        ]
        headers = ("test", "metric", "verdict", "magnitude", "first bad night")
        parts.append(md_table(headers, rows))
        if notable.height > MAX_VERDICT_ROWS:
            parts.append(f"… and {notable.height - MAX_VERDICT_ROWS} more in the report.")
    return "\n\n".join(parts) + "\n"
