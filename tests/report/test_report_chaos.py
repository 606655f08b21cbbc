"""A chaos test in the night report: its fault windows shaded on its in-run series at the
load's seconds, and its journal's activities as a table, from a real Test 08 journal that
went through the store."""

from __future__ import annotations

import copy
import html
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from nightly_pipeline.report import chaos, render_night_report
from nightly_pipeline.report.figures import series_figure
from nightly_pipeline.report.frames import series_panels
from nightly_pipeline.store import MetricStore, TestResultRecord
from nightly_pipeline.suite.results import activity_rows, experiment_row
from tests.report import frames
from tests.report.chromium import open_page
from tests.report.test_report_page import DEFAULT_FIGURES, FIGURE, in_figure

JOURNAL = json.loads((Path(__file__).parent / "journal_08.json").read_text())
LOAD_START = datetime(2026, 11, 20, 2, 10, 5, tzinfo=UTC)
"""The fixture's series second 0; the journal's experiment starts 4.97 s later."""
SERIES_END = 30.0  # frames.series(): seconds 0..29
# From the journal: each inject's end and its revert's end, minus LOAD_START.
SLOW_READS = (5.558188, 8.117233)
CONSUMER_KILL = (8.064974, 13.743227)


def _failed_restart() -> dict[str, Any]:
    journal = copy.deepcopy(JOURNAL)
    revert = journal["run"][4]
    assert revert["activity"]["name"] == "revert-consumer-kill"
    revert["status"], revert["output"] = "failed", None
    revert["exception"] = ["chaoslib.exceptions.ActivityFailed: consumer <b>not</b> back\n"]
    journal["status"], journal["deviated"] = "failed", True
    return journal


def _stored(tmp_path: Path, journal: dict, load_started_at: datetime | None):
    """The journal written as message_soak's result and read back as the report gets it."""
    store = MetricStore(tmp_path / "metrics.duckdb")
    store.write_test_result(
        TestResultRecord(
            night=frames.NIGHT, profile="ci", test=frames.SOAK, run_id="r1", status="failed",
            started_at=LOAD_START - timedelta(seconds=5),
            finished_at=LOAD_START + timedelta(seconds=40),
            load_started_at=load_started_at,
            experiment=experiment_row(journal), activities=activity_rows(journal),
        )
    )  # fmt: skip
    return store.chaos_experiments(frames.NIGHT), store.chaos_activities(frames.NIGHT)


def _render(tmp_path: Path, journal: dict, load_started_at: datetime | None = LOAD_START):
    experiments, activities = _stored(tmp_path, journal, load_started_at)
    return render_night_report(
        tmp_path / "reports", frames.NIGHT, results=frames.results(), history=frames.history(),
        verdicts=frames.verdicts(), baselines=frames.baselines(),
        series={("ci", frames.SOAK): frames.series()}, experiments=experiments,
        activities=activities,
    )  # fmt: skip


def _windows(tmp_path: Path, journal: dict) -> list[chaos.FaultWindow]:
    journal_frame = chaos.journal_of(*_stored(tmp_path, journal, LOAD_START), "ci", frames.SOAK)
    assert journal_frame is not None
    return chaos.fault_windows(journal_frame, SERIES_END)


_SEPARATORS = re.compile(r"[\s,]*")


def _figure_json(page: str) -> list[dict]:
    """The layout shapes of every figure of the page, read from its newPlot calls
    (``Plotly.newPlot("id", [data], {layout}, {config})``)."""
    decoder, shapes = json.JSONDecoder(), []
    for call in re.finditer(r"Plotly\.newPlot\(", page):
        at, args = call.end(), []
        for _ in range(3):  # the div id, the data, the layout
            at = _SEPARATORS.match(page, at).end()  # type: ignore[union-attr]
            value, at = decoder.raw_decode(page, at)
            args.append(value)
        shapes += args[2].get("shapes", [])
    return shapes


def test_windows_come_from_inject_and_revert_ends(tmp_path: Path) -> None:
    windows = _windows(tmp_path, JOURNAL)
    got = [(w.fault, round(w.start_s, 6), round(w.end_s, 6), w.reverted) for w in windows]
    assert got == [("slow-reads", *SLOW_READS, True), ("consumer-kill", *CONSUMER_KILL, True)]


def test_a_fault_never_reverted_is_shaded_to_the_end_of_the_series(tmp_path: Path) -> None:
    windows = _windows(tmp_path, _failed_restart())
    assert [(w.fault, round(w.start_s, 6), w.end_s, w.label) for w in windows][1] == (
        "consumer-kill", CONSUMER_KILL[0], SERIES_END, "consumer-kill (not reverted)"
    )  # fmt: skip


def test_an_unreverted_fault_on_a_compacted_night_is_shaded_to_the_load_end(
    tmp_path: Path,
) -> None:
    """Per-minute rows (second 0, 60, 120; the last merged 30 s) end at 150 s, not at 121."""
    series = frames.series(150, compacted=True)
    assert set(series["resolution_s"]) == {60}
    assert sorted(set(series["second"])) == [0, 60, 120]
    experiments, activities = _stored(tmp_path, _failed_restart(), LOAD_START)
    page = render_night_report(
        tmp_path / "reports", frames.NIGHT, results=frames.results(), history=frames.history(),
        verdicts=frames.verdicts(), baselines=frames.baselines(),
        series={("ci", frames.SOAK): series}, experiments=experiments, activities=activities,
    ).read_text("utf-8")  # fmt: skip
    rects = [s for s in _figure_json(page) if s.get("type") == "rect"]
    spans = sorted({(round(s["x0"], 6), round(s["x1"], 6)) for s in rects})
    assert spans == [SLOW_READS, (CONSUMER_KILL[0], 150.0)]


def _activities(*rows: tuple[int, str, str, float]) -> pl.DataFrame:
    """(seq, name, status, end offset s) rows of one test's actions."""
    return pl.DataFrame(
        [
            {"profile": "ci", "test": "t", "seq": seq, "phase": "method", "kind": "action",
             "name": name, "status": status, "started_at": None,
             "ended_at": LOAD_START.replace(tzinfo=None) + timedelta(seconds=at)}
            for seq, name, status, at in rows
        ],
        schema_overrides={"started_at": pl.Datetime("us")},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([(0, "inject-a", "failed", 1.0), (1, "revert-a", "succeeded", 2.0)], []),
        ([(0, "inject-a", "succeeded", 1.0), (1, "revert-a", "failed", 2.0),
          (2, "revert-a", "succeeded", 4.0)], [("a", 1.0, 4.0, True)]),
        ([(0, "inject-a", "succeeded", 1.0), (1, "revert-a", "succeeded", 2.0),
          (2, "inject-a", "succeeded", 5.0)], [("a", 1.0, 2.0, True), ("a", 5.0, 30.0, False)]),
        ([(0, "revert-every-fault", "succeeded", 9.0), (1, "inject-", "succeeded", 1.0)], []),
        ([(0, "inject-b", "succeeded", 3.0), (1, "inject-a", "succeeded", 1.0)],
         [("a", 1.0, 30.0, False), ("b", 3.0, 30.0, False)]),
    ],
    ids=["failed inject", "failed revert", "injected twice", "no fault named", "by start"],
)  # fmt: skip
def test_fault_windows_table(rows: list, expected: list) -> None:
    journal = chaos.Journal("t", "completed", False, None, LOAD_START.replace(tzinfo=None), None,
                            _activities(*rows))  # fmt: skip
    got = [(w.fault, w.start_s, w.end_s, w.reverted) for w in chaos.fault_windows(journal, 30.0)]
    assert got == expected


def test_series_figure_shades_every_panel_and_names_each_fault_once() -> None:
    panels = series_panels(frames.series())
    windows = [chaos.FaultWindow("slow-reads", *SLOW_READS, reverted=True)]
    fig = series_figure(frames.SOAK, panels, windows)
    rects = [s for s in fig.layout.shapes if s.type == "rect"]
    assert len(rects) == len(panels) == 3  # throughput, latency, errors
    assert {(s.x0, s.x1, s.xref) for s in rects} == {
        (*SLOW_READS, xref) for xref in ("x", "x2", "x3")
    }
    labels = [a.text for a in fig.layout.annotations if a.text == "slow-reads"]
    assert labels == ["slow-reads"]


def test_page_shades_the_windows_and_lists_the_activities(tmp_path: Path) -> None:
    page = _render(tmp_path, JOURNAL).read_text("utf-8")
    rects = [s for s in _figure_json(page) if s.get("type") == "rect"]
    spans = sorted({(round(s["x0"], 6), round(s["x1"], 6)) for s in rects})
    assert spans == [SLOW_READS, CONSUMER_KILL]
    assert len(rects) == 2 * 3  # two faults on three panels
    assert in_figure("slow-reads") in page and in_figure("consumer-kill") in page
    assert page.count(FIGURE) == DEFAULT_FIGURES

    soak = page.index(f'<h3 id="test-ci-{frames.SOAK}">')
    experiment = page.index('<p class="experiment">Chaos experiment: 08_consumer_resilience')
    assert soak < experiment < page.index(FIGURE, soak)
    assert "status <b>completed</b>" in page
    table = page[experiment : page.index("</table>", experiment)]
    names = re.findall(r"<tr[^>]*><td>([^<]*)</td><td>([^<]*)</td>", table)
    assert [n for _, n in names] == [
        "api-ready", "inject-slow-reads", "inject-consumer-kill", "pel-at-kill",
        "revert-slow-reads", "revert-consumer-kill", "ready-again", "api-ready",
        "revert-every-fault",
    ]  # fmt: skip
    # inject-slow-reads: started 5.50 s into the load, took 0.054 s, output its fault.
    inject = re.search(r"<td>inject-slow-reads</td>(.*?)</tr>", table)
    assert inject is not None
    cells = re.findall(r"<td[^>]*>(.*?)</td>", inject.group(1))
    assert cells[:4] == ["action", "succeeded", "5.50", "0.054"]
    assert html.escape('"name": "slow-reads"') in cells[4]
    assert "start s: seconds since the load start" in page


def test_failed_activity_is_marked_and_its_error_escaped(tmp_path: Path) -> None:
    page = _render(tmp_path, _failed_restart()).read_text("utf-8")
    assert in_figure("consumer-kill (not reverted)") in page
    failed = re.search(r'<tr class="failed"><td>method</td><td>revert-consumer-kill</td>', page)
    assert failed is not None
    assert "consumer &lt;b&gt;not&lt;/b&gt; back" in page and "<b>not</b>" not in page
    assert "status <b>failed</b>" in page and 'class="bad">deviated: yes' in page


def test_without_the_load_start_nothing_is_shaded_and_says_why(tmp_path: Path) -> None:
    page = _render(tmp_path, JOURNAL, load_started_at=None).read_text("utf-8")
    assert not [s for s in _figure_json(page) if s.get("type") == "rect"]
    assert "Fault windows are not shaded" in page
    assert "start s: seconds since the experiment start" in page
    assert "<td>hypothesis_before</td><td>api-ready</td><td>probe</td><td>succeeded</td>" \
           "<td class=\"num\">0.00</td>" in page  # fmt: skip


def test_unfinished_journal_shows_why_and_no_table(tmp_path: Path) -> None:
    stub = {"experiment": JOURNAL["experiment"], "status": "unfinished", "deviated": True,
            "error": "still running after 120 s", "run": [], "rollbacks": []}  # fmt: skip
    page = _render(tmp_path, stub).read_text("utf-8")
    assert "status <b>unfinished</b>" in page and "still running after 120 s" in page
    assert "The journal records no activities." in page
    assert not [s for s in _figure_json(page) if s.get("type") == "rect"]


def test_chaos_page_renders_without_console_errors(tmp_path: Path) -> None:
    run = open_page(_render(tmp_path, _failed_restart()))
    assert run.console == [], run.console
    assert run.count("js-plotly-plot") == DEFAULT_FIGURES
    assert "consumer-kill (not reverted)" in run.dom  # the label, drawn as SVG text
