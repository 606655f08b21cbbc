"""Each test's checks under its heading, from a real run's stored threshold verdicts:
the observed value in the unit the run stored that figure in, passed or failed."""

from __future__ import annotations

import re
from datetime import date

import pytest

from nightly_pipeline import evaluate
from nightly_pipeline.report.checks import stored_metric
from nightly_pipeline.store import MetricStore
from tests.real_rows import Run, write_run

NIGHT = date(2026, 11, 20)
PASSING = Run("ci", "01_message_soak", seconds=6, latency_ms=40.0)
FAILING = Run("ci", "02_conversation_crud", seconds=6, latency_ms=123.4, failed=True)


def _checks_rows(page: str, test: str) -> list[list[str]]:
    """The cells of the checks table in ``test``'s block (the table after its result)."""
    start = page.index(f'<h3 id="test-ci-{test}">')
    block = page[start : page.find("<h3", start + 1)]
    tables = re.findall(r"<table>(.*?)</table>", block)
    assert "<th>check</th>" in tables[1]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", tables[1].split("</thead>")[1])
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in rows]


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> str:
    home = tmp_path_factory.mktemp("home")
    store = MetricStore(home / "metrics.duckdb")
    for run in (PASSING, FAILING):
        write_run(store, NIGHT, run)
    return evaluate.write_report(store, NIGHT, home / "reports").page.read_text("utf-8")


def test_a_passing_check_shows_its_observed_value_in_ms(page: str) -> None:
    assert _checks_rows(page, PASSING.test) == [
        ["http_req_duration", "p(95) &lt; 100 ms", "40.0 ms", "blocking", "pass"]
    ]


def test_a_failed_check_is_marked_with_its_value(page: str) -> None:
    assert _checks_rows(page, FAILING.test) == [
        ["http_req_duration", "p(95) &lt; 100 ms", "123.4 ms", "blocking", "FAIL"]
    ]
    assert '<tr class="failed"><td>http_req_duration</td>' in page


@pytest.mark.parametrize(
    ("metric", "expression", "stored"),
    [
        ("http_req_duration", "p(95)<100", "http_req_duration.p95"),
        ("http_req_duration", "med<20", "http_req_duration.p50"),
        ("delivery_lost", "count==0", "delivery_lost.count"),
        ("process_rss_growth_pct", "max<10", "process_rss_growth_pct.max"),
        ("http_req_failed", "rate<0.01", "http_req_failed.rate"),
    ],
)
def test_the_stored_figure_a_threshold_reads(metric: str, expression: str, stored: str) -> None:
    assert stored_metric(metric, expression) == stored
