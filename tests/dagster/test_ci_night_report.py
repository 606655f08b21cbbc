"""The HTML report of a real ci night, read as an operator reads it: for every test of
the catalog, its block with the result, the checks and the in-run chart, showing the
numbers the store holds for that run, formatted as the report formats them.

The night is the session's ``ci_night`` (``nightly run`` at ci: the suite, then the
``nightly_history`` job writes ``<home>/reports/<night>.html``); nothing else runs here.
Expected values come from the store and the catalog, never from the report's code paths
that build the page: the page is parsed and compared with them.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import polars as pl
import pytest

from nightly_pipeline.loadgen.thresholds import parse_selector
from nightly_pipeline.report.text import format_cell
from nightly_pipeline.report.values import format_threshold, format_value
from nightly_pipeline.store import MetricStore
from nightly_pipeline.suite.catalog import TESTS
from nightly_pipeline.suite.spec import TestSpec
from tests.ci_night import NIGHT, CiNight

CHAOS = {"08", "09", "10", "11"}
"""The catalog's chaos tests: their block also holds the experiment's journal."""
IN_RUN_PANELS = ("throughput (req/s)", "latency http_req_duration (ms)", "errors (errors/s)")


@dataclass(frozen=True)
class Night:
    """The night's report page and the store it was written from."""

    page: str
    store: MetricStore

    @cached_property
    def results(self) -> pl.DataFrame:
        rows = self.store.recent_results(limit_nights=10_000)
        return rows.filter(pl.col("night") == NIGHT)

    @cached_property
    def thresholds(self) -> pl.DataFrame:
        return self.store.threshold_results(NIGHT, profile="ci")

    def block(self, test: str) -> str:
        """The Tests section's block of ``test``: its heading up to the next heading."""
        start = self.page.index(f'<h3 id="test-ci-{test}">')
        end = self.page.find("<h3", start + 1)
        return self.page[start:end]


@pytest.fixture(scope="module")
def night(ci_night: CiNight) -> Night:
    page = (ci_night.home.reports / f"{NIGHT.isoformat()}.html").read_text("utf-8")
    return Night(page, MetricStore(ci_night.home.store))


def _cells(row_html: str) -> list[str]:
    """A table row's cells as text (tags dropped, entities decoded)."""
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row_html, flags=re.S)
    return [html.unescape(re.sub(r"<[^>]+>", "", c)) for c in cells]


def _tables(block: str) -> list[tuple[list[str], list[list[str]]]]:
    """Every table of ``block``: its headers and its rows' cells."""
    out = []
    for body in re.findall(r"<table>(.*?)</table>", block, flags=re.S):
        headers = [html.unescape(h) for h in re.findall(r"<th>(.*?)</th>", body)]
        rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body.split("</thead>", 1)[1], flags=re.S)
        out.append((headers, [_cells(r) for r in rows]))
    return out


def _table(block: str, first_header: str) -> list[list[str]]:
    (rows,) = [rows for headers, rows in _tables(block) if headers[0] == first_header]
    return rows


def _figures(block: str) -> list[dict[str, Any]]:
    """Every plotly figure of ``block`` as the page passes it to ``Plotly.newPlot``."""
    decoder, out = json.JSONDecoder(), []
    for call in re.finditer(r'Plotly\.newPlot\(\s*"[^"]+",\s*', block):
        data, end = decoder.raw_decode(block, call.end())
        layout, _ = decoder.raw_decode(block, re.match(r",\s*", block[end:]).end() + end)  # type: ignore[union-attr]
        out.append({"data": data, "layout": layout})
    return out


def _label(selector: str) -> str:
    """A check's selector as the page names it: ``m{name:x}`` → ``m{name=x}``."""
    name, tags, _ = parse_selector(selector)
    return f"{name}{{{','.join(f'{k}={v}' for k, v in tags)}}}" if tags else name


_STAT = {"med": "p50"}


def _unit(store: MetricStore, test: str, metric: str, expression: str) -> str:
    """The unit the run stored the figure a threshold reads in (``p(95)`` of
    ``http_req_duration`` is ``http_req_duration.p95``, in ms)."""
    agg = re.match(r"\s*(p\([\d.]+\)|[a-z]+)", expression).group(1)  # type: ignore[union-attr]
    stat = _STAT.get(agg, agg.replace("(", "").replace(")", ""))
    rows = store.metrics(test=test, metric=f"{metric}.{stat}", profile="ci", since=NIGHT)
    units = [u for u in rows.filter(pl.col("night") == NIGHT)["unit"] if u]
    return units[0] if units else ""


SPECS = [t.spec for t in TESTS]


def test_every_test_of_the_catalog_ran_and_has_a_block(night: Night) -> None:
    ran = set(night.results["test"])
    assert {s.key for s in SPECS} <= ran
    for spec in SPECS:
        assert night.page.count(f'<h3 id="test-ci-{spec.key}">') == 1
        assert f'<a href="#test-ci-{spec.key}">{spec.key}</a>' in night.page  # navigation


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.key)
def test_block_shows_the_stored_result(night: Night, spec: TestSpec) -> None:
    (stored,) = night.results.filter(test=spec.key).iter_rows(named=True)
    (row,) = _table(night.block(spec.key), "status")
    assert row == [
        stored["status"],
        format_cell(stored["duration_s"]),
        format_cell(stored["generator_bound"]),
        format_cell(stored["failed_thresholds"]),
        stored["detail"] or "",
    ]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.key)
def test_block_shows_every_check_with_its_stored_value(night: Night, spec: TestSpec) -> None:
    shown = _table(night.block(spec.key), "check")
    stored = night.thresholds.filter(test=spec.key, scope="run")
    assert len(shown) == stored.height == len(spec.checks)
    by_check = {(row[0], row[1]): row for row in shown}
    for check in spec.checks:
        name, tags, _ = parse_selector(check.metric)
        tags_json = json.dumps(dict(tags), separators=(",", ":"))
        mine = stored.filter(metric=name, expression=check.expr, tags=tags_json)
        (value,) = mine.iter_rows(named=True)
        unit = _unit(night.store, spec.key, name, check.expr)
        row = by_check[(_label(check.metric), format_threshold(check.expr, unit))]
        assert row[2:] == [
            format_value(value["observed"], unit),
            "blocking" if check.severity == "error" else "warn",
            "pass" if value["passed"] else "FAIL",
        ], check.name


def test_memory_growth_checks_read_as_percentages(night: Night) -> None:
    """The unit comes from the stored row, which once had none (``0.543``)."""
    rows = [
        row
        for spec in SPECS
        if any(c.metric == "process_rss_growth_pct" for c in spec.checks)
        for row in _table(night.block(spec.key), "check")
        if row[0] == "process_rss_growth_pct"
    ]
    assert len(rows) >= 4  # 01, 05, 06, 14
    for row in rows:
        assert row[1].endswith(" %") and row[2].endswith(" %"), row


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.key)
def test_block_draws_the_stored_in_run_series(night: Night, spec: TestSpec) -> None:
    (figure,) = _figures(night.block(spec.key))
    layout = figure["layout"]
    assert layout["title"]["text"] == f"{spec.key} (ci) — in-run series"
    assert [a["text"] for a in layout["annotations"] if a["text"] in IN_RUN_PANELS] == list(
        IN_RUN_PANELS
    )
    series = night.store.series(NIGHT, spec.key, "ci").filter(tags="{}")
    traces = {t["name"]: t for t in figure["data"]}
    reqs = series.filter(metric="http_reqs").sort("second")
    assert traces["http_reqs"]["x"] == reqs["second"].to_list()
    assert traces["http_reqs"]["y"] == reqs["value"].to_list()
    latency = series.filter(metric="http_req_duration").sort("second")
    for line in ("p50", "p95", "p99"):
        assert traces[line]["x"] == latency["second"].to_list()
        assert traces[line]["y"] == latency[line].to_list()
    failed = series.filter(metric="http_req_failed").sort("second")
    counts = [round(v * n) for v, n in zip(failed["value"], failed["count"], strict=True)]
    assert traces["failed requests"]["y"] == counts


@pytest.mark.parametrize("spec", [s for s in SPECS if s.id in CHAOS], ids=lambda s: s.key)
def test_chaos_block_shows_its_journal(night: Night, spec: TestSpec) -> None:
    block = night.block(spec.key)
    (experiment,) = night.store.chaos_experiments(NIGHT, "ci", spec.key).iter_rows(named=True)
    title = html.escape(experiment["title"], quote=True)
    assert f"Chaos experiment: {title} — status <b>{experiment['status']}</b>" in block
    activities = night.store.chaos_activities(NIGHT, "ci", spec.key)
    shown = _table(block, "phase")
    assert [r[:4] for r in shown] == [
        [a["phase"], a["name"], a["kind"] or "-", a["status"]]
        for a in activities.iter_rows(named=True)
    ]
    assert experiment["load_started_at"] is not None
    (figure,) = _figures(block)
    rects = [s for s in figure["layout"].get("shapes", []) if s.get("type") == "rect"]
    injected = activities.filter(
        pl.col("name").str.starts_with("inject-") & (pl.col("status") == "succeeded")
    )
    assert len(rects) == injected.height * len(IN_RUN_PANELS)  # every fault on every panel
