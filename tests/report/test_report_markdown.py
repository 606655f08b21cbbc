from __future__ import annotations

import polars as pl

from nightly_pipeline.report import markdown_summary
from nightly_pipeline.report.markdown import md_cell
from tests.report import frames


def test_summary_counts_tests_and_verdicts() -> None:
    text = markdown_summary(frames.NIGHT, frames.results(), frames.verdicts())
    lines = text.splitlines()
    assert lines[0] == "**2026-11-20** (ci): 1 passed, 1 failed, 0 errors; 1 regressions"
    assert "| 01_message_soak | failed | 31.5 | 2 |" in lines
    assert (
        "| 01_message_soak | http_req_duration.p95 | regression | +30.0 % | 2026-11-17 |" in lines
    )
    assert "stable" not in text
    assert frames.EVIL not in text and "crud_&lt;script&gt;" in text


def test_cells_cannot_break_the_table() -> None:
    assert md_cell("a|b\nc") == "a\\|b c"
    assert md_cell(None) == "-"


def test_long_verdict_lists_are_cut() -> None:
    many = pl.concat([frames.verdicts().with_columns(pl.lit("regression").alias("verdict"))] * 2)
    text = markdown_summary(frames.NIGHT, frames.results(), many)
    assert "… and 10 more in the report." in text
