"""Human-facing output: text tables for the terminal, plotly HTML reports per night.

Public surface (analysis/CONTRACT.md): `render_night_report`, `render_index`,
`markdown_summary`. `frames` computes, `figures` plots, `html` assembles; no Dagster.
"""

from nightly_pipeline.report.index import render_index
from nightly_pipeline.report.markdown import markdown_summary
from nightly_pipeline.report.night import render_night_report

__all__ = ["markdown_summary", "render_index", "render_night_report"]
