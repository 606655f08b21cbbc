"""k6 ``--summary-export`` compatible JSON (shape of k6 v1.1.0's file).

Shape, checked against the real binary (tests/loadgen/fixtures/k6-v1.1.0-summary-export.json)::

    {"metrics": {
        "<trend>":   {"avg", "min", "med", "max", "p(90)", "p(95)"}   (= trend_stats)
        "<counter>": {"count", "rate"}
        "<rate>":    {"passes", "fails", "value"}                     (value = passes/total)
        "<gauge>":   {"value", "min", "max"}
        "<name>{k:v}": a submetric, same keys as its parent — only for selectors that
                       have thresholds, plus ``http_req_duration{expected_response:true}``
                       which k6 always writes (here: when samples carry that tag, which
                       k6 puts on every HTTP sample: expected_response "true"/"false")
        ... each with "thresholds": {"<expression>": <bool>} when it has thresholds
     },
     "root_group": {"name": "", "path": "", "id": md5(path), "groups": {name: group},
                    "checks": {name: {"name", "path", "id", "passes", "fails"}}}}

The threshold boolean is **true when the threshold FAILED** (crossed), false when it
passed: verified with k6 v1.1.0 (``"avg<0": true`` for avg=12.5). Here a threshold
fails when its whole-run result or any of its windows failed.

Groups and checks come from the ``checks`` Rate as k6 records it: samples tagged
``check`` (the check's name) and ``group`` (the group path, ``::a::b``; absent or ""
for the root group). Metrics without samples are written with zeros, as k6 does
(JSON has no NaN); use the threshold results, not these zeros, for verdicts.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from nightly_pipeline.loadgen.metrics_stats import COUNTER, GAUGE, RATE, TREND
from nightly_pipeline.loadgen.recorder import Recorder
from nightly_pipeline.loadgen.thresholds import K6_BUILTIN_KINDS, ThresholdResult, parse_selector

__all__ = ["DEFAULT_TREND_STATS", "summary_export", "write_summary"]

DEFAULT_TREND_STATS = ("avg", "min", "med", "max", "p(90)", "p(95)")
_EXPECTED_RESPONSE = "http_req_duration{expected_response:true}"


def _num(x: float) -> float | int:
    """JSON-safe number: NaN/inf → 0 (k6 writes zeros for empty sinks), integral → int."""
    if x is None or not math.isfinite(x):
        return 0
    return int(x) if float(x).is_integer() else float(x)


def _stat(stats: Mapping[str, float], key: str) -> float | int:
    try:
        return _num(stats[key])  # p(N) is computed on access
    except KeyError:
        return 0


def _metric_entry(
    kind: str, stats: Mapping[str, float], trend_stats: Sequence[str]
) -> dict[str, Any]:
    if kind == TREND:
        return {k: _stat(stats, k) for k in trend_stats}
    if kind == COUNTER:
        return {"count": _num(stats.get("count", 0)), "rate": _num(stats.get("rate", 0))}
    if kind == RATE:
        return {
            "passes": _num(stats.get("passes", 0)),
            "fails": _num(stats.get("fails", 0)),
            "value": _num(stats.get("rate", 0)),
        }
    if kind == GAUGE:
        return {k: _num(stats.get(k, 0)) for k in ("value", "min", "max")}
    raise ValueError(f"unknown metric kind {kind!r}")


def _group(path: str) -> dict[str, Any]:
    name = path.rsplit("::", 1)[-1] if path else ""
    return {"name": name, "path": path, "id": _md5(path), "groups": {}, "checks": {}}


def _md5(path: str) -> str:
    """k6's group/check id."""
    return hashlib.md5(path.encode(), usedforsecurity=False).hexdigest()


def _root_group(recorder: Recorder) -> dict[str, Any]:
    root = _group("")
    if recorder.kinds().get("checks") != RATE:
        return root
    tallies: dict[tuple[str, str], list[int]] = {}
    for key in recorder.metric_keys():
        tags = dict(key.tags)
        if key.name != "checks" or "check" not in tags:
            continue
        st = recorder.stats("checks", tags, exact=True)
        tally = tallies.setdefault((tags.get("group", ""), tags["check"]), [0, 0])
        tally[0] += int(st.get("passes", 0))
        tally[1] += int(st.get("fails", 0))
    for (gpath, check), (passes, fails) in sorted(tallies.items()):
        node, path = root, ""
        for part in [p for p in gpath.split("::") if p]:
            path = f"{path}::{part}"
            node = node["groups"].setdefault(part, _group(path))
        cpath = f"{gpath}::{check}"
        node["checks"][check] = {
            "name": check,
            "path": cpath,
            "id": _md5(cpath),
            "passes": passes,
            "fails": fails,
        }
    return root


def summary_export(
    recorder: Recorder,
    thresholds_results: Iterable[ThresholdResult],
    *,
    trend_stats: Sequence[str] = DEFAULT_TREND_STATS,
) -> dict[str, Any]:
    """The k6 --summary-export dict for a finished run (call recorder.close_all() first)."""
    kinds = recorder.kinds()
    metrics: dict[str, dict[str, Any]] = {
        name: _metric_entry(kind, recorder.stats(name), trend_stats)
        for name, kind in sorted(kinds.items())
    }
    expected = {"expected_response": "true"}
    if (
        kinds.get("http_req_duration") == TREND
        and recorder.stats("http_req_duration", expected)["count"]
    ):
        # k6 always writes this submetric (successful requests only); dashboards read it
        metrics[_EXPECTED_RESPONSE] = _metric_entry(
            TREND, recorder.stats("http_req_duration", expected), trend_stats
        )
    for r in thresholds_results:
        selector = r.selector or parse_selector(r.metric)[2]
        entry = metrics.get(selector)
        if entry is None:
            kind = kinds.get(r.metric) or K6_BUILTIN_KINDS.get(r.metric)
            stats = recorder.stats(r.metric, r.tags) if kind else {}
            entry = metrics[selector] = _metric_entry(kind, stats, trend_stats) if kind else {}
        failed = entry.setdefault("thresholds", {})
        failed[r.expression] = failed.get(r.expression, False) or not r.passed
    return {"metrics": metrics, "root_group": _root_group(recorder)}


def write_summary(
    path: str | os.PathLike[str],
    recorder: Recorder,
    thresholds_results: Iterable[ThresholdResult],
    *,
    trend_stats: Sequence[str] = DEFAULT_TREND_STATS,
) -> dict[str, Any]:
    """Write the export as strict JSON (4-space indent, like k6) and return it."""
    doc = summary_export(recorder, thresholds_results, trend_stats=trend_stats)
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=4, allow_nan=False) + "\n", encoding="utf-8")
    tmp.replace(target)
    return doc
