"""Two profiles on one night, as the store holds them after real runs: each heading of
the report shows its own profile's series and values, never the other's.

The night seen in a real report: a ci run (its load 30 s) and a smoke run (60 s) of the
same test; the ci heading drew the smoke run's 60-second series and the smoke heading
none. Rows are written through the store (``tests.real_rows``), the report through
``evaluate.write_report``, as the history assets do.
"""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from nightly_pipeline import evaluate
from nightly_pipeline.report import render_night_report
from nightly_pipeline.store import MetricStore
from tests.real_rows import Run, write_run

NIGHT = date(2026, 11, 20)
SOAK = "01_message_soak"
CI = Run("ci", SOAK, seconds=30, latency_ms=40.0)
SMOKE = Run("smoke", SOAK, seconds=60, latency_ms=80.0, failed=True)
CRUD_CI = Run("ci", "02_conversation_crud", seconds=20, latency_ms=12.0)
"""Run by ci only: the smoke profile has no such heading."""


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The report of NIGHT after three earlier nights of the same runs."""
    home = tmp_path_factory.mktemp("home")
    store = MetricStore(home / "metrics.duckdb")
    for back in range(3, -1, -1):
        for run in (CI, SMOKE, CRUD_CI):
            write_run(store, NIGHT - timedelta(days=back), run)
    evaluate.evaluate_night(store, NIGHT)
    files = evaluate.write_report(store, NIGHT, home / "reports")
    return files.page.read_text("utf-8")


def _block(page: str, profile: str, test: str) -> str:
    """The Tests section's block under ``test (profile)``: up to the next heading."""
    start = page.index(f'<h3 id="test-{profile}-{test}">')
    end = page.find("<h3", start + 1)
    return page[start : end if end != -1 else len(page)]


def _figures(html: str) -> list[dict[str, Any]]:
    """Every plotly figure in ``html``: its traces and layout, as the page passes them."""
    decoder = json.JSONDecoder()
    out = []
    for match in re.finditer(r'Plotly\.newPlot\(\s*"[^"]+",\s*', html):
        data, end = decoder.raw_decode(html, match.end())
        layout, _ = decoder.raw_decode(html, re.match(r",\s*", html[end:]).end() + end)  # type: ignore[union-attr]
        out.append({"data": data, "layout": layout})
    return out


def _trace(figure: dict[str, Any], name: str) -> dict[str, Any]:
    (trace,) = [t for t in figure["data"] if t.get("name") == name]
    return trace


@pytest.mark.parametrize("run", [CI, SMOKE, CRUD_CI], ids=lambda r: f"{r.profile}-{r.test}")
def test_each_heading_draws_its_own_profiles_series(page: str, run: Run) -> None:
    (figure,) = _figures(_block(page, run.profile, run.test))
    assert figure["layout"]["title"]["text"] == f"{run.test} ({run.profile}) — in-run series"
    p95 = _trace(figure, "p95")
    assert p95["x"] == list(range(run.seconds))  # ci: 0-29, smoke: 0-59
    assert set(p95["y"]) == {run.latency_ms}


@pytest.mark.parametrize("run", [CI, SMOKE], ids=lambda r: r.profile)
def test_each_heading_shows_its_own_profiles_values(page: str, run: Run) -> None:
    block = _block(page, run.profile, run.test)
    status = "failed" if run.failed else "passed"
    assert f'<tr class="{status}">' in block
    assert f'<td class="num">{run.seconds}</td>' in block  # duration s
    other = SMOKE if run is CI else CI
    assert f"observed {other.latency_ms:g}" not in block  # the other profile's detail


def test_a_test_run_at_one_profile_only_has_one_heading(page: str) -> None:
    assert page.count(f'<h3 id="test-ci-{CRUD_CI.test}">') == 1
    assert f'<h3 id="test-smoke-{CRUD_CI.test}">' not in page
    assert "No in-run series recorded." not in page


def test_trends_are_drawn_per_profile(page: str) -> None:
    trends = page[page.index("<h2>Trends across nights</h2>") :]
    for run in (CI, SMOKE):
        start = trends.index(f"<h3>{run.test} <small>({run.profile})</small></h3>")
        end = trends.find("<h3", start + 1)
        charts = _figures(trends[start:end])
        (p95,) = [f for f in charts if "http_req_duration.p95" in f["layout"]["title"]["text"]]
        values = {y for t in p95["data"] for y in t.get("y") or () if isinstance(y, float)}
        assert run.latency_ms in values
        assert (SMOKE if run is CI else CI).latency_ms not in values


def test_a_series_under_another_runs_key_is_refused(tmp_path: Path) -> None:
    """The mistake behind the real report: one profile's rows under the other's key."""
    store = MetricStore(tmp_path / "metrics.duckdb")
    for run in (CI, SMOKE):
        write_run(store, NIGHT, run)
    smoke_rows = store.series(NIGHT, SOAK, "smoke")
    with pytest.raises(ValueError, match=r"series under \('ci', '01_message_soak'\) holds"):
        render_night_report(
            tmp_path, NIGHT, results=evaluate.night_results(store, NIGHT),
            history=pl.DataFrame(), verdicts=pl.DataFrame(), baselines=pl.DataFrame(),
            series={("ci", SOAK): smoke_rows},
        )  # fmt: skip
