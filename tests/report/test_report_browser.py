"""The report in a real browser: headless Debian Chromium, no console errors, every
figure rendered by plotly. Fails (never skips) when Chromium is not installed."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from plotly.offline import get_plotlyjs

from nightly_pipeline.report import render_night_report
from tests.report import frames
from tests.report.chromium import INSTALL, chromium_binary, open_page
from tests.report.test_report_page import DEFAULT_FIGURES


def test_report_renders_without_console_errors(report: Path) -> None:
    run = open_page(report)
    assert run.console == [], run.console
    assert run.count("js-plotly-plot") == DEFAULT_FIGURES
    assert run.count("main-svg") >= DEFAULT_FIGURES
    assert run.count("scatterlayer") >= DEFAULT_FIGURES  # traces drawn, not empty axes


def test_checker_sees_a_script_error(tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><body><p>x</p>"
        "<script>console.error('explicit'); notDefined();</script></body></html>"
    )
    run = open_page(page)
    assert any("explicit" in line for line in run.console), run.stderr[-2000:]
    assert any("notDefined is not defined" in line for line in run.uncaught), run.console


def test_checker_sees_plots_that_did_not_render(tmp_path: Path, report: Path) -> None:
    """The same report without plotly.js: errors logged and no plot rendered."""
    text = report.read_text("utf-8").replace(get_plotlyjs(), "")
    broken = tmp_path / "no-plotly.html"
    broken.write_text(text, "utf-8")
    run = open_page(broken)
    assert any("Plotly is not defined" in line for line in run.uncaught), run.console
    assert run.count("js-plotly-plot") == 0
    assert run.count("plotly-graph-div") == DEFAULT_FIGURES


def test_names_from_data_render_as_text(tmp_path: Path) -> None:
    """A test name full of markup shows as text in tables and plot titles, runs nothing."""
    path = render_night_report(
        tmp_path, frames.NIGHT, results=frames.results(), history=frames.history(),
        verdicts=frames.verdicts(), baselines=frames.baselines(),
        series={("ci", frames.CRUD): frames.series(test=frames.CRUD)},
    )  # fmt: skip
    run = open_page(path)
    assert run.console == [], run.console
    assert run.count("js-plotly-plot") == DEFAULT_FIGURES
    shown = html.escape(frames.CRUD, quote=False)
    assert f"{shown} (ci) — in-run series</text>" in run.dom  # the SVG title, as text
    assert f"{shown} <small>" in run.dom  # the heading


def test_missing_chromium_fails_with_the_install_line() -> None:
    with pytest.raises(pytest.fail.Exception, match=re.escape(INSTALL)):
        chromium_binary(["/nonexistent/chromium", None])
