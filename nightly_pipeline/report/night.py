"""The night report: one self-contained HTML file per night (analysis/CONTRACT.md).

Sections: header (counts and the verdict table), one block per test (its result, its
checks with their observed values, in-run series and, for a chaos test, its experiment:
fault windows shaded on the series and the journal's activities), and the trend of the
metrics that matter across nights.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from pathlib import Path

import polars as pl

from nightly_pipeline.report import chaos, checks, frames
from nightly_pipeline.report.figures import series_figure, trend_figure
from nightly_pipeline.report.html import anchor, css_class, esc, figure_div, page, table

SeriesKey = tuple[str, str]
"""(profile, test): a night holds one series per test and profile."""

VERDICT_HEADERS = (
    *("profile", "test", "metric", "verdict", "magnitude %", "first bad night"),
    *("confidence", "plan rule fired"),
)


def _pct(value: float | None, *, signed: bool) -> str:
    if value is None or value != value:
        return "-"
    return f"{value * 100:+.1f}" if signed else f"{value * 100:.2f}"


def _verdict_table(verdicts: pl.DataFrame) -> str:
    rows, classes = [], []
    for v in verdicts.iter_rows(named=True):
        rows.append(
            [
                esc(v["profile"]),
                esc(v["test"]),
                esc(frames.metric_label(v["metric"], v["tags"])),
                esc(v["verdict"]),
                _pct(v["magnitude"], signed=True),
                esc(v["first_bad_night"]),
                _pct(v["confidence"], signed=False),
                esc(v["plan_rule_fired"]),
            ]
        )
        classes.append(css_class(str(v["verdict"])))
    return table(VERDICT_HEADERS, rows, row_classes=classes, numeric=(4, 6))


def _verdicts_section(verdicts: pl.DataFrame) -> str:
    if verdicts.is_empty():
        return "<p>No regression verdicts for this night.</p>"
    notable = verdicts.filter(pl.col("verdict").is_in(frames.NOTABLE_VERDICTS))
    rest = verdicts.filter(~pl.col("verdict").is_in(frames.NOTABLE_VERDICTS))
    parts = [_verdict_table(notable) if not notable.is_empty() else "<p>No regressions.</p>"]
    if not rest.is_empty():
        parts.append(
            f"<details><summary>{len(rest)} stable or undecided metrics</summary>"
            f"{_verdict_table(rest)}</details>"
        )
    return "".join(parts)


def _header(night: date, results: pl.DataFrame, verdicts: pl.DataFrame) -> str:
    counts = frames.status_counts(results)
    profiles = ", ".join(esc(p) for p in results["profile"].unique().sort()) or "-"
    regressions = verdicts.filter(pl.col("verdict") == "regression").height
    bad = ' class="bad"'
    links = "".join(
        f'<a href="#{anchor("test", r["profile"], r["test"])}">{esc(r["test"])}</a>'
        for r in results.iter_rows(named=True)
    )
    return (
        f"<h1>Nightly report {esc(night)}</h1>"
        f'<p class="summary"><span>profile: {profiles}</span>'
        f"<span>tests: {results.height}</span>"
        f'<span class="good">passed: {counts["passed"]}</span>'
        f"<span{bad if counts['failed'] else ''}>failed: {counts['failed']}</span>"
        f"<span{bad if counts['error'] else ''}>errors: {counts['error']}</span>"
        f"<span{bad if regressions else ''}>regressions: {regressions}</span></p>"
        f"<nav>{links}</nav>"
        f'<p><a href="index.html">all nights</a></p>'
        f"<h2>Verdicts</h2>{_verdicts_section(verdicts)}"
    )


ACTIVITY_HEADERS = ("phase", "activity", "kind", "status", "start s", "duration s", "output")


def _experiment(journal: chaos.Journal) -> str:
    """The experiment's verdict and its activities, under the test's heading."""
    deviated = ' class="bad"' if journal.deviated else ""
    error = f' <span class="detail">{esc(journal.error)}</span>' if journal.error else ""
    what, rows = chaos.activity_table(journal)
    cells = [
        [
            esc(r["phase"]), esc(r["name"]), esc(r["kind"]), esc(r["status"]),
            "-" if r["start_s"] is None else f"{r['start_s']:.2f}",
            "-" if r["duration_s"] is None else f"{r['duration_s']:.3f}",
            f'<span class="detail">{esc(r["output"])}</span>',
        ]
        for r in rows
    ]  # fmt: skip
    classes = ["failed" if r["failed"] else "" for r in rows]
    placed = "" if journal.placed else (
        "<p>Fault windows are not shaded: this result does not record when its load "
        "started, so the journal's times cannot be placed on the series.</p>"
    )  # fmt: skip
    table_html = (
        table(ACTIVITY_HEADERS, cells, row_classes=classes, numeric=(4, 5))
        if rows
        else "<p>The journal records no activities.</p>"
    )
    return (
        f'<p class="experiment">Chaos experiment: {esc(journal.title)} — status '
        f"<b>{esc(journal.status)}</b>, <span{deviated}>deviated: {esc(journal.deviated)}</span>"
        f"{error}</p>{placed}"
        f"<p><small>start s: seconds since the {what}.</small></p>{table_html}"
    )


def _series_end(series: pl.DataFrame) -> float:
    """The end of the last recorded second (its point is drawn at its start).

    A compacted night's rows are minutes (``resolution_s`` 60) starting at ``second``;
    a minute ends after the seconds it merged (``seconds_present``, at most its
    resolution), so an unreverted fault is shaded to the load's end, not one second
    into the last minute."""
    if "seconds_present" not in series.columns:
        return float(series["second"].max()) + 1.0  # type: ignore[arg-type]
    width = pl.col("resolution_s").fill_null(1) if "resolution_s" in series.columns else 1
    merged = pl.col("seconds_present").fill_null(1).clip(1, width)
    return float(series.select((pl.col("second") + merged).max()).item())


def _test_block(
    result: dict,
    series: pl.DataFrame | None,
    *,
    journals: tuple[pl.DataFrame, pl.DataFrame],
    check_rows: list[dict[str, object]],
) -> str:
    status = str(result["status"])
    row = [
        f'<span class="{"good" if status == "passed" else "bad"}">{esc(status)}</span>',
        esc(result.get("duration_s")),
        esc(result.get("generator_bound")),
        esc(result.get("failed_thresholds")),
        f'<span class="detail">{esc(result.get("detail") or "")}</span>',
    ]
    headers = ("status", "duration s", "generator bound", "failed thresholds", "detail")
    out = [
        f'<h3 id="{anchor("test", result["profile"], result["test"])}">'
        f"{esc(result['test'])} <small>({esc(result['profile'])})</small></h3>",
        table(headers, [row], row_classes=[css_class(status)], numeric=(1, 3)),
        checks.checks_table(check_rows),
    ]
    journal = chaos.journal_of(*journals, result["profile"], result["test"])
    if journal is not None:
        out.append(_experiment(journal))
    panels = frames.series_panels(series)
    if panels and series is not None:
        windows = chaos.fault_windows(journal, _series_end(series)) if journal else []
        label = f"{result['test']} ({result['profile']})"
        out.append(figure_div(series_figure(label, panels, windows)))
    else:
        out.append("<p>No in-run series recorded.</p>")
    return "".join(out)


def _series_of(
    series: Mapping[SeriesKey, pl.DataFrame], profile: str, test: str
) -> pl.DataFrame | None:
    """The series stored for (profile, test), refused when its rows are another run's: a
    heading shows its own profile's series or none, never a neighbour's."""
    frame = series.get((profile, test))
    if frame is None or frame.is_empty():
        return frame
    held = frame.select("profile", "test").unique().rows()
    if held != [(profile, test)]:
        raise ValueError(f"series under ({profile!r}, {test!r}) holds the rows of {held!r}")
    return frame


def _tests_section(
    results: pl.DataFrame,
    series: Mapping[SeriesKey, pl.DataFrame],
    journals: tuple[pl.DataFrame, pl.DataFrame],
    thresholds: pl.DataFrame,
    history: pl.DataFrame,
) -> str:
    blocks = [
        _test_block(
            result,
            _series_of(series, result["profile"], result["test"]),
            journals=journals,
            check_rows=checks.check_rows(thresholds, history, result["profile"], result["test"]),
        )
        for result in results.iter_rows(named=True)
    ]
    return "<h2>Tests</h2>" + ("".join(blocks) or "<p>No test results for this night.</p>")


def _trends_section(trends: list[frames.Trend], *, all_metrics: bool) -> str:
    scope = "every metric" if all_metrics else "key metrics and every metric with a verdict"
    out = [f"<h2>Trends across nights</h2><p>Showing {scope}.</p>"]
    current = None
    for trend in trends:
        if (trend.profile, trend.test) != current:
            current = (trend.profile, trend.test)
            out.append(f"<h3>{esc(trend.test)} <small>({esc(trend.profile)})</small></h3>")
        out.append(figure_div(trend_figure(trend)))
    if not trends:
        out.append("<p>No history yet.</p>")
    return "".join(out)


def _frame(frame: pl.DataFrame | None) -> pl.DataFrame:
    return pl.DataFrame() if frame is None else frame


def render_night_report(
    out_dir: Path,
    night: date,
    *,
    results: pl.DataFrame,
    history: pl.DataFrame,
    verdicts: pl.DataFrame,
    baselines: pl.DataFrame,
    series: Mapping[SeriesKey, pl.DataFrame],
    experiments: pl.DataFrame | None = None,
    activities: pl.DataFrame | None = None,
    thresholds: pl.DataFrame | None = None,
    all_metrics: bool = False,
) -> Path:
    """Write ``<out_dir>/<night>.html`` and return its path.

    ``series`` maps (profile, test) to ``MetricStore.series(night, test, profile)``; a
    frame holding another profile's or test's rows is refused (ValueError).
    ``experiments`` and ``activities`` are ``MetricStore.chaos_experiments(night)`` and
    ``.chaos_activities(night)``: a chaos test gets its activity table and its fault
    windows shaded on its series. ``thresholds`` is ``MetricStore.threshold_results(night)``:
    each test's run-wide checks with their observed values. ``all_metrics`` charts the
    trend of every metric instead of the key ones (p95/p99, error rates, throughput) plus
    those with a regression or improvement verdict.
    """
    results = frames.night_results(frames.conform(results, frames.RESULTS_SCHEMA, "results"), night)
    verdicts = frames.night_verdicts(
        frames.conform(verdicts, frames.VERDICTS_SCHEMA, "verdicts"), night
    )
    history = frames.conform(history, frames.HISTORY_SCHEMA, "history")
    baselines = frames.conform(baselines, frames.BASELINES_SCHEMA, "baselines")
    journals = (
        frames.conform(_frame(experiments), chaos.EXPERIMENTS_SCHEMA, "experiments"),
        frames.conform(_frame(activities), chaos.ACTIVITIES_SCHEMA, "activities"),
    )
    night_history = history.filter(pl.col("night") == night)
    thresholds = frames.conform(_frame(thresholds), checks.THRESHOLDS_SCHEMA, "thresholds")
    profiles = results["profile"].unique().to_list() or None
    tests = results["test"].unique().to_list() or None
    trends = frames.trends(
        history, verdicts, baselines, night, profiles=profiles, tests=tests,
        all_metrics=all_metrics,
    )  # fmt: skip
    body = (
        _header(night, results, verdicts)
        + _tests_section(results, series, journals, thresholds, night_history)
        + _trends_section(trends, all_metrics=all_metrics)
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{night.isoformat()}.html"
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(page(f"Nightly report {night.isoformat()}", body, plotly=True), "utf-8")
    tmp.replace(path)
    return path
