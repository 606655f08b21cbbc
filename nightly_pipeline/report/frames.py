"""Computing for the night report: polars in, small polars frames and dataclasses out.

Nothing here plots or writes HTML; `figures` and `night` build on what these return.
Frames follow analysis/CONTRACT.md; a column that a store read adds (``night`` on
verdicts, ``computed_for`` on baselines) is used to pick the right rows when present.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date

import polars as pl

KEY = ["profile", "test", "metric", "tags"]
VERDICT_RANK = {"regression": 0, "improvement": 1, "insufficient data": 2, "stable": 3}
STATUS_RANK = {"error": 0, "failed": 1, "passed": 2}
NOTABLE_VERDICTS = ("regression", "improvement")

# The columns the report reads from each frame (a subset of analysis/CONTRACT.md's).
_S, _F, _D = pl.String(), pl.Float64(), pl.Date()
RESULTS_SCHEMA = {"profile": _S, "test": _S, "status": _S}
HISTORY_SCHEMA = dict(
    night=_D, profile=_S, test=_S, metric=_S, tags=_S, value=_F, unit=_S, status=_S
)
VERDICTS_SCHEMA = dict(
    profile=_S, test=_S, metric=_S, tags=_S, verdict=_S, first_bad_night=_D, magnitude=_F,
    confidence=_F, plan_rule_fired=pl.Boolean(), change_nights=pl.List(_D),
)  # fmt: skip
BASELINES_SCHEMA = dict(profile=_S, test=_S, metric=_S, tags=_S, mean=_F, low=_F, high=_F)


def conform(frame: pl.DataFrame, schema: dict[str, pl.DataType], what: str) -> pl.DataFrame:
    """Check a frame has the contract's columns; an empty frame gets the missing ones."""
    missing = [c for c in schema if c not in frame.columns]
    if missing and not frame.is_empty():
        raise ValueError(f"{what} frame lacks columns {missing} (analysis/CONTRACT.md)")
    return frame.with_columns(pl.lit(None, dtype=schema[c]).alias(c) for c in missing)


def _tags_filled(frame: pl.DataFrame) -> pl.DataFrame:
    if "tags" not in frame.columns:
        return frame.with_columns(pl.lit("{}").alias("tags"))
    return frame.with_columns(pl.col("tags").fill_null("{}"))


def tags_label(tags: str | None) -> str:
    """'{"a": "x"}' → 'a=x'; the whole metric ('{}' or None) → ''."""
    if not tags or tags == "{}":
        return ""
    try:
        pairs = json.loads(tags)
    except ValueError:
        return tags
    if not isinstance(pairs, dict):
        return tags
    return ",".join(f"{k}={v}" for k, v in sorted(pairs.items()))


def metric_label(metric: str, tags: str | None) -> str:
    label = tags_label(tags)
    return f"{metric}{{{label}}}" if label else metric


def night_results(results: pl.DataFrame, night: date) -> pl.DataFrame:
    """That night's test results, errors and failures first."""
    if "night" in results.columns:
        results = results.filter(pl.col("night") == night)
    rank = pl.col("status").replace_strict(STATUS_RANK, default=3, return_dtype=pl.Int64)
    return results.sort(rank, "profile", "test")


def night_verdicts(verdicts: pl.DataFrame, night: date) -> pl.DataFrame:
    """That night's verdicts, regressions first, then by test and metric."""
    if "night" in verdicts.columns:
        verdicts = verdicts.filter(pl.col("night") == night)
    rank = pl.col("verdict").replace_strict(VERDICT_RANK, default=4, return_dtype=pl.Int64)
    return _tags_filled(verdicts).sort(rank, "profile", "test", "metric", "tags")


def status_counts(results: pl.DataFrame) -> dict[str, int]:
    counts = {"passed": 0, "failed": 0, "error": 0}
    for status, n in results.group_by("status").len().iter_rows():
        counts[status] = counts.get(status, 0) + n
    return counts


def latest_baselines(baselines: pl.DataFrame, night: date) -> pl.DataFrame:
    """One baseline per key: the latest computed for a night up to ``night``."""
    baselines = _tags_filled(baselines)
    if "computed_for" not in baselines.columns or baselines.is_empty():
        return baselines.unique(KEY, keep="last")
    return (
        baselines.filter(pl.col("computed_for") <= night)
        .sort("computed_for")
        .unique(KEY, keep="last")
    )


# --- in-run series ------------------------------------------------------------------


@dataclass(frozen=True)
class Panel:
    """One subplot of a test's in-run chart: lines over seconds (columns second, line, value)."""

    title: str
    unit: str
    lines: pl.DataFrame


def _whole(series: pl.DataFrame, metric: str) -> pl.DataFrame:
    """Rows of ``metric`` without tags (the whole metric), by second."""
    tags = pl.col("tags").is_null() | (pl.col("tags") == "{}")
    return series.filter((pl.col("metric") == metric) & tags).sort("second")


def _panel(title: str, unit: str, lines: pl.DataFrame) -> Panel | None:
    lines = lines.filter(pl.col("value").is_not_null() & pl.col("value").is_not_nan())
    return Panel(title, unit, lines) if not lines.is_empty() else None


def _throughput(series: pl.DataFrame) -> Panel | None:
    rows = _whole(series, "http_reqs")
    value = pl.coalesce(pl.col("value"), pl.col("count")).cast(pl.Float64)
    return _panel(
        "throughput", "req/s", rows.select("second", pl.lit("http_reqs").alias("line"), value)
    )


def _latency(series: pl.DataFrame) -> Panel | None:
    rows = _whole(series, "http_req_duration").select("second", "p50", "p95", "p99")
    long = rows.unpivot(index="second", variable_name="line", value_name="value")
    return _panel("latency http_req_duration", "ms", long.cast({"value": pl.Float64}))


def _errors(series: pl.DataFrame) -> Panel | None:
    """Failed requests per second; a compacted (per-minute) row's are its minute's, so
    they are divided by the seconds it merged."""
    seconds = pl.col("seconds_present") if "seconds_present" in series.columns else pl.lit(1)
    failed = _whole(series, "http_req_failed")
    if not failed.is_empty():
        value = (pl.col("value") * pl.col("count")).round(0) / seconds
        rows = failed.select("second", value.alias("value"))
    else:
        errors = pl.col("errors") / seconds
        rows = _whole(series, "http_req_duration").select("second", errors.alias("value"))
    rows = rows.select("second", pl.lit("failed requests").alias("line"), "value")
    return _panel("errors", "errors/s", rows.cast({"value": pl.Float64}))


def series_panels(series: pl.DataFrame | None) -> list[Panel]:
    """The panels a test's series supports, in display order; absent series are skipped.

    No memory panel: a run stores no per-second RSS. Its one RSS figure,
    ``process_rss_growth_pct`` (a percentage, one point after the load), is a check's
    value and shows in the test's checks table; a panel matching "rss" drew it in MB."""
    if series is None or series.is_empty():
        return []
    series = _tags_filled(series)
    panels = (_throughput(series), _latency(series), _errors(series))
    return [p for p in panels if p is not None]


# --- trends across nights ------------------------------------------------------------


def is_key_metric(metric: str) -> bool:
    """Metrics charted by default: p95/p99 latencies, error rates, throughput."""
    base, _, stat = metric.rpartition(".")
    if stat in ("p95", "p99"):
        return True
    if metric == "http_reqs.rate":
        return True
    return stat == "rate" and ("failed" in base or "error" in base)


@dataclass(frozen=True)
class Trend:
    """One metric of one test across nights, with what analysis said about it."""

    profile: str
    test: str
    metric: str
    tags: str
    unit: str
    points: pl.DataFrame  # night, value, status
    verdict: str | None = None
    first_bad_night: date | None = None
    change_nights: tuple[date, ...] = ()
    band: tuple[float, float, float] | None = None  # low, mean, high
    band_nights: int | None = None
    failed_nights: tuple[date, ...] = ()

    @property
    def label(self) -> str:
        return metric_label(self.metric, self.tags)


def trend_keys(
    history: pl.DataFrame, verdicts: pl.DataFrame, *, all_metrics: bool = False
) -> pl.DataFrame:
    """(profile, test, metric, tags) to chart: key metrics without tags, plus notable verdicts."""
    keys = history.select(KEY).unique()
    if not all_metrics:
        key_metric = pl.col("metric").map_elements(is_key_metric, return_dtype=pl.Boolean)
        keys = keys.filter(key_metric & (pl.col("tags") == "{}"))
        notable = verdicts.filter(pl.col("verdict").is_in(NOTABLE_VERDICTS)).select(KEY)
        keys = pl.concat([keys, notable]).unique()
    return keys.sort(KEY)


def _trend(
    key: tuple[str, str, str, str],
    points: pl.DataFrame,
    verdict: dict | None,
    band: dict | None,
) -> Trend:
    unit = next((u for u in points["unit"] if u), "") if "unit" in points.columns else ""
    values = points.select("night", "value", "status").sort("night")
    failed = values.filter(pl.col("status") != "passed")["night"].to_list()
    band_tuple = None
    if band is not None and None not in (band["low"], band["mean"], band["high"]):
        band_tuple = (band["low"], band["mean"], band["high"])
    return Trend(
        *key,
        unit=unit,
        points=values,
        verdict=verdict["verdict"] if verdict else None,
        first_bad_night=verdict["first_bad_night"] if verdict else None,
        change_nights=tuple(verdict["change_nights"] or ()) if verdict else (),
        band=band_tuple,
        band_nights=band.get("n") if band else None,
        failed_nights=tuple(failed),
    )


def trends(
    history: pl.DataFrame,
    verdicts: pl.DataFrame,
    baselines: pl.DataFrame,
    night: date,
    *,
    profiles: list[str] | None = None,
    tests: list[str] | None = None,
    all_metrics: bool = False,
) -> list[Trend]:
    """The trends to chart for ``night``, sorted by profile, test, metric, tags."""
    history = _tags_filled(history).filter(pl.col("night") <= night)
    if profiles:
        history = history.filter(pl.col("profile").is_in(profiles))
    if tests:
        history = history.filter(pl.col("test").is_in(tests))
    verdicts = night_verdicts(verdicts, night)
    keys = trend_keys(history, verdicts, all_metrics=all_metrics)
    selected = history.join(keys, on=KEY, how="semi")
    by_verdict = {tuple(r[k] for k in KEY): r for r in verdicts.iter_rows(named=True)}
    by_band = {
        tuple(r[k] for k in KEY): r
        for r in latest_baselines(baselines, night).iter_rows(named=True)
    }
    out = []
    for key, points in sorted(selected.partition_by(KEY, as_dict=True).items()):
        out.append(_trend(key, points, by_verdict.get(key), by_band.get(key)))  # type: ignore[arg-type]
    return out
