"""The night report and index as files: content, escaping, plotly.js once, figure count."""

from __future__ import annotations

import html
import re
from pathlib import Path

import polars as pl
import pytest
from plotly.io.json import to_json_plotly
from plotly.offline import get_plotlyjs

from nightly_pipeline.report import render_index, render_night_report
from tests.report import frames

FIGURE = 'class="plotly-graph-div"'
DEFAULT_FIGURES = 1 + 7  # 01_message_soak's series + 3 + 4 trends (see test_report_frames)


def in_figure(text: str) -> str:
    """``text`` as it appears inside a figure's JSON (plotly escapes <, >, / and non-ASCII)."""
    return to_json_plotly(text)[1:-1]


def _render(tmp_path: Path, **overrides: object) -> str:
    args: dict[str, object] = {
        "results": frames.results(),
        "history": frames.history(),
        "verdicts": frames.verdicts(),
        "baselines": frames.baselines(),
        "series": {("ci", frames.SOAK): frames.series()},
    }
    args.update(overrides)
    path = render_night_report(tmp_path, frames.NIGHT, **args)  # type: ignore[arg-type]
    return path.read_text("utf-8")


def test_writes_the_night_file(report: Path) -> None:
    assert report.name == "2026-11-20.html"
    assert report.is_file()
    assert not list(report.parent.glob("*.tmp"))


def test_plotly_js_is_embedded_exactly_once(report: Path) -> None:
    page = report.read_text("utf-8")
    assert page.count(get_plotlyjs()[:200]) == 1
    assert page.count("* plotly.js v") == 1
    rest = page.replace(get_plotlyjs(), "")  # the figures and the page around them
    # Nothing to fetch, so it works offline from a file:// URL.
    assert not re.search(r"<(script|img|link|iframe)\b[^>]*\b(src|href)=", rest)
    assert "://" not in rest


def test_figures_default_to_the_metrics_that_matter(report: Path) -> None:
    page = report.read_text("utf-8")
    assert page.count(FIGURE) == DEFAULT_FIGURES
    assert page.count("Plotly.newPlot(") == DEFAULT_FIGURES


def test_all_metrics_charts_every_metric(tmp_path: Path) -> None:
    page = render_night_report(
        tmp_path, frames.NIGHT, results=frames.results(), history=frames.history(),
        verdicts=frames.verdicts(), baselines=frames.baselines(),
        series={("ci", frames.SOAK): frames.series()}, all_metrics=True,
    ).read_text("utf-8")  # fmt: skip
    # 01_message_soak: 5 metrics + a tagged p95; crud: 5 metrics; + 1 series figure
    assert page.count(FIGURE) == 1 + 6 + 5


def test_header_counts_and_verdict_rows_regressions_first(report: Path) -> None:
    page = report.read_text("utf-8")
    assert "Nightly report 2026-11-20" in page
    assert "passed: 1" in page and "failed: 1" in page and "regressions: 1" in page
    regression = re.search(r'<tr class="regression">(.*?)</tr>', page)
    assert regression is not None
    cells = re.findall(r"<td[^>]*>(.*?)</td>", regression.group(1))
    assert cells == [
        "ci", frames.SOAK, "http_req_duration.p95", "regression", "+30.0",
        "2026-11-17", "99.99", "yes",
    ]  # fmt: skip
    improvement = page.index('<tr class="improvement">')
    stable = page.index('<tr class="stable">')
    assert page.index('<tr class="regression">') < improvement < stable
    assert "8 stable or undecided metrics" in page


def test_text_from_data_is_escaped(report: Path) -> None:
    page = report.read_text("utf-8")
    assert frames.EVIL not in page
    assert "<b>bold?</b>" not in page
    assert html.escape(frames.EVIL) in page  # tables, headings, navigation
    assert "&lt;b&gt;bold?&lt;/b&gt;" in page  # the failing test's detail
    # The only <script> tags are plotly.js and one newPlot per figure.
    assert page.count("<script") == 1 + DEFAULT_FIGURES


def test_text_from_data_is_escaped_in_figures(tmp_path: Path) -> None:
    page = _render(tmp_path, series={("ci", frames.CRUD): frames.series(test=frames.CRUD)})
    assert in_figure(html.escape(frames.CRUD, quote=False) + " (ci) — in-run series") in page
    assert in_figure(frames.EVIL) not in page


def test_test_results_and_series_sections(report: Path) -> None:
    page = report.read_text("utf-8")
    soak = page.index(f'<h3 id="test-ci-{frames.SOAK}">')
    assert page.index('<tr class="failed">', soak) > soak
    assert "p(95)&lt;100 failed" in page
    assert in_figure(f"{frames.SOAK} (ci) — in-run series") in page
    for title in ("throughput (req/s)", "latency http_req_duration (ms)", "errors (errors/s)"):
        assert in_figure(title) in page
    assert "memory (RSS)" not in page  # no run stores a per-second RSS
    assert page.count("No in-run series recorded.") == 1  # the crud test has none


def test_absent_series_are_skipped(tmp_path: Path) -> None:
    page = _render(tmp_path, series={})
    assert page.count(FIGURE) == DEFAULT_FIGURES - 1
    assert page.count("No in-run series recorded.") == 2
    only_failures = frames.series().filter(metric="http_req_failed")
    page = _render(tmp_path, series={("ci", frames.SOAK): only_failures})
    assert in_figure("errors (errors/s)") in page and in_figure("throughput (req/s)") not in page


def test_empty_night_still_renders(tmp_path: Path) -> None:
    page = _render(
        tmp_path,
        results=frames.results().clear(),
        history=frames.history().clear(),
        verdicts=frames.verdicts().clear(),
        baselines=frames.baselines().clear(),
        series={},
    )
    assert FIGURE not in page
    assert "No test results for this night." in page and "No history yet." in page


def test_empty_frames_without_columns_are_accepted(tmp_path: Path) -> None:
    empty = pl.DataFrame()
    page = _render(tmp_path, history=empty, verdicts=empty, baselines=empty, series={})
    assert "No history yet." in page and "No regression verdicts for this night." in page
    assert page.count(FIGURE) == 0


def test_frames_missing_contract_columns_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"verdicts frame lacks columns \['change_nights'\]"):
        _render(tmp_path, verdicts=frames.verdicts().drop("change_nights"))


def test_index_links_every_report_present(tmp_path: Path, report: Path) -> None:
    (tmp_path / report.name).write_bytes(report.read_bytes())
    (tmp_path / "2026-11-19.html").write_text("<html></html>")  # a report without counts
    (tmp_path / "notes.html").write_text("not a night")
    page = render_index(tmp_path, frames.nights()).read_text("utf-8")
    assert '<a href="2026-11-20.html">2026-11-20</a>' in page
    assert '<a href="2026-11-19.html">2026-11-19</a>' in page
    assert "2026-11-13" in page and 'href="2026-11-13.html"' not in page  # no file
    assert "notes.html" not in page
    assert page.index("2026-11-20") < page.index("2026-11-19") < page.index("2026-11-13")
    assert '<tr class="failed"><td><a href="2026-11-20.html">' in page
    assert "plotly.js" not in page


def test_index_of_no_nights(tmp_path: Path) -> None:
    empty = frames.nights().clear()
    assert "No nights recorded yet." in render_index(tmp_path, empty).read_text("utf-8")


def test_report_takes_store_shaped_frames(tmp_path: Path) -> None:
    """Verdicts of several nights and older baselines (store reads) pick the right rows."""
    older = frames.verdicts().with_columns(
        pl.lit(frames.NIGHTS[0]).alias("night"), pl.lit("regression").alias("verdict")
    )
    page = _render(tmp_path, verdicts=pl.concat([frames.verdicts(), older]))
    assert page.count('<tr class="regression">') == 1
