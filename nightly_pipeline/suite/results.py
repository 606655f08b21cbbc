"""Turn a load run into the store's records: summary metrics, per-second series, verdicts,
and a chaos test's Chaos Toolkit journal.

Metric names in the store are ``<k6 metric>.<stat>`` (``http_req_duration.p95``) with
the submetric's tags in ``tags``, so every night's figures line up in long format.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from nightly_pipeline.loadgen import LoadResult, ThresholdResult
from nightly_pipeline.loadgen.metrics_stats import COUNTER, GAUGE, RATE, TREND
from nightly_pipeline.store import (
    ActivityRow,
    ExperimentRow,
    MetricRow,
    SeriesRow,
    TestResultRecord,
    ThresholdRow,
)
from nightly_pipeline.store.records import to_utc_naive

JOURNAL = "journal.json"
"""Where ``suite.chaos_run`` writes the experiment's journal, in the run directory."""
TEXT_LIMIT = 16_384
"""Characters kept of one activity's output or error (journals are kept forever)."""

STATS_BY_KIND: dict[str, tuple[tuple[str, str, str], ...]] = {
    # (stat in the recorder's flat map, name in the store, unit)
    TREND: (
        ("avg", "avg", "ms"),
        ("min", "min", "ms"),
        ("med", "p50", "ms"),
        ("p(90)", "p90", "ms"),
        ("p(95)", "p95", "ms"),
        ("p(99)", "p99", "ms"),
        ("max", "max", "ms"),
        ("count", "count", "count"),
    ),
    COUNTER: (("count", "count", "count"), ("rate", "rate", "1/s")),
    RATE: (("rate", "rate", "ratio"), ("passes", "true", "count"), ("fails", "false", "count")),
    GAUGE: (("value", "value", ""), ("min", "min", ""), ("max", "max", "")),
}
GAUGE_UNITS: tuple[tuple[str, str], ...] = (
    # (name ends with, unit): a gauge's unit is in its name (first match wins)
    ("_pct", "%"),
    ("_per_s", "1/s"),
    ("_ms", "ms"),
    ("_s", "s"),
    ("_ratio", "ratio"),
    ("_kib_per_socket", "KiB"),
    ("_bytes", "B"),
)


def gauge_unit(name: str) -> str:
    """``process_rss_growth_pct`` is in ``%``, ``time_to_recover_s`` in ``s``; ``""`` for a
    name that does not say (the report then shows the bare number)."""
    return next((unit for suffix, unit in GAUGE_UNITS if name.endswith(suffix)), "")


def metric_rows(result: LoadResult) -> list[MetricRow]:
    """Whole-run figures of every (metric, tags) the run recorded, plus engine health."""
    rec = result.recorder
    rows: list[MetricRow] = []
    for key in rec.metric_keys():
        tags = dict(key.tags)
        stats = rec.stats(key.name, tags, exact=True)
        kind = rec.kind(key.name)
        for stat, name, unit in STATS_BY_KIND[kind]:
            value = stats.get(stat)
            if value is not None:
                unit = gauge_unit(key.name) if kind == GAUGE else unit
                rows.append(MetricRow(f"{key.name}.{name}", float(value), unit, tags))
    rows.append(MetricRow("engine.scheduling_lag.p99", result.scheduling_lag_p99_ms, "ms"))
    rows.append(MetricRow("engine.generator_bound", float(result.generator_bound), "bool"))
    return rows


def series_rows(result: LoadResult) -> list[SeriesRow]:
    """Per-second rows; HTTP latency rows carry that second's failed requests as errors."""
    raw = result.recorder.series_rows()
    failed_per_second = {
        r["second"]: round(r["value"] * r["count"])
        for r in raw
        if r["metric"] == "http_req_failed" and not r["tags"]
    }
    out = []
    for r in raw:
        errors = r["errors"]
        if r["metric"].startswith("http_req_") and not r["tags"] and r["p50"] is not None:
            errors = failed_per_second.get(r["second"], 0)
        out.append(
            SeriesRow(
                r["metric"],
                r["second"],
                r["tags"],
                r["count"],
                errors,
                r["mean"],
                r["p50"],
                r["p95"],
                r["p99"],
                r["max"],
                r["value"],
            )
        )
    return out


def threshold_rows(
    results: Iterable[ThresholdResult],
    severity: str = "error",
    severity_of: Mapping[tuple[str, str], str] | None = None,
) -> list[ThresholdRow]:
    """Store rows of threshold verdicts; ``severity_of`` maps (selector, expression) to a
    check's severity, ``severity`` is the default.

    A result not measurable on this target is stored with its reason in
    ``not_measurable``, ``passed`` None (neither passed nor failed: no failed threshold
    is counted) and no observed value."""
    return [
        ThresholdRow(
            t.metric,
            t.expression,
            t.scope,  # type: ignore[arg-type]
            None if t.not_measurable else t.passed,
            None if t.not_measurable else t.observed,
            t.window_start,
            t.window_end,
            (severity_of or {}).get((t.selector, t.expression), severity),
            dict(t.tags),
            t.not_measurable or None,
        )
        for t in results
    ]


def build_test_record(
    result: LoadResult,
    *,
    night: date,
    profile: str,
    test: str,
    run_id: str,
    started_at: datetime,
    finished_at: datetime,
) -> TestResultRecord:
    """The whole record of one test for one night, ready for ``MetricStore.write_test_result``."""
    failed = [t for t in result.thresholds if not t.passed]
    if result.aborted:
        detail = f"aborted: {result.aborted}"
    elif failed:
        detail = "; ".join(f"{t.selector} {t.expression} observed {t.observed:g}" for t in failed)
    else:
        detail = ""
    return TestResultRecord(
        night=night,
        profile=profile,
        test=test,
        run_id=run_id,
        status="passed" if result.passed else "failed",
        started_at=started_at,
        finished_at=finished_at,
        detail=detail,
        generator_bound=result.generator_bound,
        metrics=tuple(metric_rows(result)),
        series=tuple(series_rows(result)),
        thresholds=tuple(threshold_rows(result.thresholds)),
    )


# --- the chaos journal ---------------------------------------------------------------


def _clocks() -> tuple[datetime, float]:
    return datetime.now(UTC), time.perf_counter()


def wall_time_of(
    perf: float, *, clocks: Callable[[], tuple[datetime, float]] = _clocks
) -> datetime:
    """The wall time (aware UTC) of a ``time.perf_counter()`` reading of this process, such
    as a recorder's ``run_start``: the journal's times are wall times, the series' seconds
    count from ``run_start``. Exact up to the clocks' drift since ``perf`` (NTP slews
    CLOCK_REALTIME by at most 500 ppm; a clock step would shift it by the step)."""
    wall, now = clocks()
    return wall - timedelta(seconds=now - perf)


def read_journal(path: Path, *, written_since: datetime) -> dict[str, Any] | None:
    """The journal at ``path`` if it was written at or after ``written_since``, else None.

    Every test of a Dagster run shares its run directory, so Test 08's journal is still
    there when Test 12 runs: only a fresh file is this test's. A fresh file that does not
    parse becomes an ``unreadable`` stub, so the test's result is still stored, saying so.
    """
    try:
        modified = path.stat().st_mtime
    except FileNotFoundError:
        return None
    if modified < written_since.timestamp():
        return None
    try:
        journal = json.loads(path.read_text("utf-8"))
        if not isinstance(journal, dict):
            raise ValueError(f"a JSON {type(journal).__name__}, not an object")
    except (OSError, ValueError) as exc:
        return {
            "experiment": {"title": f"(unreadable {path.name})"},
            "status": "unreadable",
            "deviated": True,
            "error": f"{path}: {exc}",
            "run": [],
            "rollbacks": [],
        }
    return journal


def experiment_row(journal: Mapping[str, Any]) -> ExperimentRow:
    """The experiment's verdict as the journal states it (chaoslib's ``status`` and
    ``deviated``; our ``unfinished`` stub carries ``error``)."""
    experiment = journal.get("experiment") or {}
    return ExperimentRow(
        title=str(experiment.get("title") or "(untitled)"),
        status=str(journal.get("status") or "unknown"),
        deviated=bool(journal.get("deviated")),
        started_at=_utc_naive(journal.get("start")),
        ended_at=_utc_naive(journal.get("end")),
        error=_clip(str(journal["error"])) if journal.get("error") else None,
    )


def activity_rows(journal: Mapping[str, Any]) -> tuple[ActivityRow, ...]:
    """Every activity the journal ran, in journal order: the steady-state probes before,
    the method, any probes during, the probes after, the rollbacks. Times become naive
    UTC, outputs strict JSON text, an exception's lines one ``error`` string."""
    states = journal.get("steady_states") or {}
    during = [p for state in states.get("during") or () for p in _probes(state)]
    phases = (
        ("hypothesis_before", _probes(states.get("before"))),
        ("method", journal.get("run") or ()),
        ("hypothesis_during", during),
        ("hypothesis_after", _probes(states.get("after"))),
        ("rollback", journal.get("rollbacks") or ()),
    )
    entries = [(phase, entry) for phase, runs in phases for entry in runs]
    return tuple(_activity(seq, phase, entry) for seq, (phase, entry) in enumerate(entries))


def _probes(state: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    return list((state or {}).get("probes") or ())


def _activity(seq: int, phase: str, entry: Mapping[str, Any]) -> ActivityRow:
    activity = entry.get("activity") or {}
    started, ended = _utc_naive(entry.get("start")), _utc_naive(entry.get("end"))
    duration = entry.get("duration")
    if duration is None and started is not None and ended is not None:
        duration = (ended - started).total_seconds()
    exception = entry.get("exception")
    if isinstance(exception, list | tuple):
        exception = "".join(str(line) for line in exception)
    tolerance = entry.get("tolerance_met")
    return ActivityRow(
        seq=seq,
        phase=phase,  # type: ignore[arg-type]
        kind=activity.get("type"),
        name=str(activity.get("name") or "(unnamed)"),
        status=str(entry.get("status") or "unknown"),
        started_at=started,
        ended_at=ended,
        duration_s=None if duration is None else float(duration),
        output_json=json_text(entry.get("output")),
        tolerance_met=None if tolerance is None else bool(tolerance),
        error=_clip(str(exception).strip()) if exception else None,
    )


def _utc_naive(text: object) -> datetime | None:
    """chaoslib's ISO 8601 (``2026-11-29T17:03:45.503881+00:00``) as naive UTC; a naive
    one is taken as UTC (the store's convention); anything else as unknown."""
    if not isinstance(text, str):
        return None
    try:
        return to_utc_naive(datetime.fromisoformat(text))
    except ValueError:
        return None


def json_text(value: Any) -> str | None:
    """``value`` as strict JSON (NaN and infinities as strings, other objects by ``str``);
    None for None. Past ``TEXT_LIMIT`` characters: ``{"truncated_chars": n, "head": ...}``."""
    if value is None:
        return None
    text = json.dumps(_finite(value), default=str, ensure_ascii=False, allow_nan=False)
    if len(text) > TEXT_LIMIT:
        return json.dumps({"truncated_chars": len(text), "head": text[:TEXT_LIMIT]})
    return text


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value).replace("inf", "Infinity").replace("nan", "NaN")
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _clip(text: str) -> str:
    return text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT] + " …(truncated)"
