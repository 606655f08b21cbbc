"""Recorder: precision, exact merges, per-second rows, submetrics, constant memory.

Fake clock throughout: every sample's `at` is explicit, run_start is 1000.0.
"""

from __future__ import annotations

import gc
import math
import pickle
import random
import tracemalloc

import pytest
from hdrh.histogram import HdrHistogram

from nightly_pipeline.loadgen import metrics_hdr as hdr
from nightly_pipeline.loadgen.recorder import MetricKey, Recorder, SecondSnapshot

T0 = 1000.0


def _lognormal(n: int, seed: int) -> list[float]:
    rnd = random.Random(seed)
    return [rnd.lognormvariate(3.0, 0.8) for _ in range(n)]


DATASETS = {
    "uniform_1_to_1000ms": [float(i) for i in range(1, 1001)],
    "constant_10ms": [10.0] * 500,
    "lognormal": _lognormal(20_000, 1),
    "single": [42.123],
    "sub_microsecond_to_50_minutes": [0.0001, 0.5, 3_000.0, 3_000_000.0],
    "bimodal": [1.0] * 900 + [900.0] * 100,
}
PERCENTILES = (0.0, 1.0, 50.0, 90.0, 95.0, 99.0, 99.9, 100.0)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_percentiles_within_hdr_precision(name: str) -> None:
    values = DATASETS[name]
    rec = Recorder(T0)
    for i, v in enumerate(values):
        rec.trend("lat", v, T0 + i * 0.01)
    rec.close_all()
    stats = rec.stats("lat")
    ordered = sorted(values)
    assert stats["count"] == len(values)
    assert stats["min"] == min(values) and stats["max"] == max(values)
    assert stats["avg"] == pytest.approx(sum(values) / len(values), rel=1e-9, abs=1e-6)
    for p in PERCENTILES:
        rank = max(int(p * len(values) / 100 + 0.5), 1)  # hdrh's nearest rank
        true = ordered[rank - 1]
        got = stats[f"p({p:g})"]
        # one bucket: ≤ 0.1 % above (3 significant digits), ≥ the value less 1 µs rounding
        assert true - 0.0005 <= got <= true * 1.001 + 0.0005, (p, got, true)
    assert stats["med"] == stats["p(50)"]


def test_percentiles_equal_hdrh_on_the_same_values() -> None:
    values = DATASETS["lognormal"]
    ref = HdrHistogram(1, 3_600_000_000, 3)
    for v in values:
        ref.record_value(hdr.to_us(v))
    rec = Recorder(T0)
    for i, v in enumerate(values):
        rec.trend("lat", v, T0 + i * 0.01)
    rec.close_all()
    for p in (1.0, 50.0, 95.0, 99.0, 99.99):
        want = min(max(ref.get_value_at_percentile(p) / 1000, min(values)), max(values))
        assert rec.stats("lat").percentile(p) == want


def test_values_above_one_hour_count_in_the_top_bucket_with_exact_max() -> None:
    rec = Recorder(T0)
    for v in (5_000_000.0, 6_000_000.0, 7_000_000.0):
        rec.trend("lat", v, T0)
    rec.close_all()
    stats = rec.stats("lat")
    assert stats["max"] == 7_000_000.0 and stats["avg"] == 6_000_000.0
    # all three land in the top bucket (1 h); percentiles are clamped to the exact min
    assert stats["med"] == stats["p(99)"] == 5_000_000.0


def _record_mixed(recs: list[Recorder], seed: int, seconds: int = 30) -> None:
    """Samples of every kind, spread at random over `recs` (one list = one recorder)."""
    rnd = random.Random(seed)
    for s in range(seconds):
        for j in range(40):
            r = rnd.choice(recs)
            at = T0 + s + j / 40
            tags = {"name": rnd.choice(["login", "send"]), "status": rnd.choice(["200", "500"])}
            r.trend("http_req_duration", rnd.lognormvariate(2.5, 1.0), at, tags)
            r.rate("http_req_failed", tags["status"] == "500", at, tags)
            r.counter("http_reqs", at, tags=tags)
            r.counter("data_sent", at, value=float(rnd.randint(100, 2000)))
        rnd.choice(recs).gauge("vus", float(rnd.randint(1, 50)), T0 + s + 0.5)


def _comparable(rec: Recorder) -> dict:
    """Everything observable, NaN replaced so that == works."""

    def clean(d: dict) -> dict:
        return {k: ("nan" if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}

    out: dict = {"keys": rec.metric_keys(), "rows": rec.series_rows(), "duration": rec.duration_s}
    for key in rec.metric_keys():
        stats = rec.stats(key.name, dict(key.tags), exact=True)
        if rec.kind(key.name) == "trend":
            stats["p(99.9)"]
        out[key] = clean(dict(stats))
        out[(key, "window")] = clean(dict(rec.window_stats(key.name, dict(key.tags), 3, 11)))
    for sel in ({"name": "login"}, {"status": "500"}):
        out[("submetric", str(sel))] = clean(dict(rec.stats("http_req_duration", sel)))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_merge_equals_single_recorder(seed: int) -> None:
    single = Recorder(T0)
    _record_mixed([single], seed)
    a, b = Recorder(T0), Recorder(T0)
    _record_mixed([a, b], seed)
    single.close_all()
    a.close_all()
    b.close_all()
    a.merge(b)
    assert _comparable(a) == _comparable(single)


def test_merge_includes_open_seconds() -> None:
    single, a, b = Recorder(T0), Recorder(T0), Recorder(T0)
    _record_mixed([single], 7, seconds=5)
    _record_mixed([a, b], 7, seconds=5)
    a.merge(b)  # nothing closed yet on either side
    a.close_all()
    single.close_all()
    assert _comparable(a) == _comparable(single)


def test_ingest_of_streamed_snapshots_equals_merge() -> None:
    single = Recorder(T0)
    _record_mixed([single], 11)
    single.close_all(now=T0 + 30.0)  # the workers' last close_seconds() ends the run at 30 s
    w1, w2 = Recorder(T0), Recorder(T0)
    parent = Recorder(T0)
    rnd = random.Random(11)
    # the same samples, replayed second by second, streamed over a "pipe" every second
    for s in range(30):
        for j in range(40):
            r = rnd.choice([w1, w2])
            at = T0 + s + j / 40
            tags = {"name": rnd.choice(["login", "send"]), "status": rnd.choice(["200", "500"])}
            r.trend("http_req_duration", rnd.lognormvariate(2.5, 1.0), at, tags)
            r.rate("http_req_failed", tags["status"] == "500", at, tags)
            r.counter("http_reqs", at, tags=tags)
            r.counter("data_sent", at, value=float(rnd.randint(100, 2000)))
        rnd.choice([w1, w2]).gauge("vus", float(rnd.randint(1, 50)), T0 + s + 0.5)
        for w in (w1, w2):
            parent.ingest(pickle.loads(pickle.dumps(w.close_seconds(T0 + s + 1.0))))
    for w in (w1, w2):
        parent.ingest(pickle.loads(pickle.dumps(w.close_all())))
    assert parent.closed_until == 30
    assert _comparable(parent) == _comparable(single)


def test_close_seconds_is_idempotent_and_streams_each_second_once() -> None:
    rec = Recorder(T0)
    for s in range(5):
        rec.counter("c", T0 + s + 0.5)
    first = rec.close_seconds(T0 + 3.2)
    assert [snap.second for snap in first] == [0, 1, 2]
    assert rec.close_seconds(T0 + 3.2) == []
    assert [snap.second for snap in rec.close_all()] == [3, 4]
    assert rec.close_all() == []


def test_late_sample_counts_in_oldest_open_second_and_totals_stay_exact() -> None:
    rec = Recorder(T0)
    rec.counter("c", T0 + 0.5)
    rec.close_seconds(T0 + 2.0)
    rec.counter("c", T0 + 1.5)  # second 1 already closed → counted in second 2
    rec.close_all()
    assert [(r["second"], r["value"]) for r in rec.series_rows()] == [(0, 1.0), (2, 1.0)]
    assert rec.stats("c")["count"] == 2


def test_auto_close_bounds_open_buffers_and_hands_snapshots_to_next_close() -> None:
    rec = Recorder(T0, auto_close_after_s=3)
    for s in range(20):
        rec.trend("lat", 5.0, T0 + s)
    assert len(rec._open) <= 4
    assert [snap.second for snap in rec.close_seconds(T0 + 20)] == list(range(20))


SECOND_ROWS = [
    # (metric, kind-recording, second, expected row fields)
    ("lat", 0, {"count": 3, "errors": 0, "mean": 20.0, "p50": 20.0, "max": 30.0, "value": None}),
    ("lat", 1, {"count": 1, "errors": 0, "mean": 100.0, "p99": 100.0, "max": 100.0}),
    ("ok", 0, {"count": 4, "errors": None, "value": 0.75, "mean": None}),
    ("reqs", 0, {"count": 2, "value": 5.0, "errors": 0}),
    ("reqs", 1, {"count": 1, "value": 1.0}),
    ("mem", 0, {"count": 2, "value": 7.0, "max": 9.0}),
]


@pytest.mark.parametrize(("metric", "second", "expected"), SECOND_ROWS)
def test_per_second_rows(metric: str, second: int, expected: dict) -> None:
    rec = Recorder(T0)
    for v, at in ((10.0, 0.1), (20.0, 0.2), (30.0, 0.9), (100.0, 1.5)):
        rec.trend("lat", v, T0 + at)
    for ok in (True, True, False, True):
        rec.rate("ok", ok, T0 + 0.3)
    rec.counter("reqs", T0 + 0.1, 2.0)
    rec.counter("reqs", T0 + 0.2, 3.0)
    rec.counter("reqs", T0 + 1.2)
    rec.gauge("mem", 7.0, T0 + 0.8)
    rec.gauge("mem", 9.0, T0 + 0.4)  # earlier sample: 7.0 stays the latest value
    rec.close_all()
    rows = [r for r in rec.series_rows() if r["metric"] == metric and r["second"] == second]
    assert len(rows) == 1
    assert set(rows[0]) == {
        "second",
        "metric",
        "tags",
        "count",
        "errors",
        "mean",
        "p50",
        "p95",
        "p99",
        "max",
        "value",
    }
    for k, v in expected.items():
        assert rows[0][k] == (pytest.approx(v, rel=1e-3) if isinstance(v, float) else v), k


def test_tagged_samples_form_submetrics_and_the_parent_covers_all() -> None:
    rec = Recorder(T0)
    for i, (name, status, v) in enumerate(
        [("login", "200", 10.0), ("login", "500", 20.0), ("send", "200", 30.0), (None, None, 40.0)]
    ):
        tags = {"name": name, "status": status} if name else None
        rec.trend("d", v, T0 + i * 0.1, tags)
    rec.close_all()
    assert rec.stats("d")["count"] == 4
    assert rec.stats("d", {"name": "login"})["count"] == 2
    assert rec.stats("d", {"name": "login"})["max"] == 20.0
    assert rec.stats("d", {"status": "200"})["avg"] == pytest.approx(20.0)
    assert rec.stats("d", {"name": "login", "status": "500"})["min"] == 20.0
    assert rec.stats("d", {"name": "nope"})["count"] == 0
    assert rec.stats("d", {"name": "login"}, exact=True)["count"] == 0  # no such exact tag set
    assert MetricKey("d", (("name", "login"), ("status", "200"))) in rec.metric_keys()
    assert MetricKey("d", ()).selector() == "d"
    assert rec.metric_keys()[1].selector() == "d{name:login,status:200}"


@pytest.mark.parametrize(
    ("kind", "record", "expected"),
    [
        ("counter", lambda r: r.counter("c", T0 + 1.0, 3.0), {"count": 3.0, "rate": 1.5}),
        (
            "rate",
            lambda r: (r.rate("c", True, T0), r.rate("c", False, T0)),
            {"rate": 0.5, "passes": 1, "fails": 1},
        ),
        (
            "gauge",
            lambda r: (r.gauge("c", 5.0, T0 + 1), r.gauge("c", 2.0, T0 + 1.5)),
            {"value": 2.0, "min": 2.0, "max": 5.0},
        ),
    ],
)
def test_flat_stats_per_kind(kind: str, record, expected: dict) -> None:
    rec = Recorder(T0)
    record(rec)
    rec.close_all(now=T0 + 2.0)
    assert rec.kind("c") == kind
    assert rec.duration_s == 2.0
    assert dict(rec.stats("c")) == expected


def test_empty_and_unknown_metrics() -> None:
    rec = Recorder(T0)
    rec.declare("dead_letters", "counter")
    rec.declare("lat", "trend")
    assert rec.stats("dead_letters")["count"] == 0
    assert math.isnan(rec.stats("lat")["avg"]) and rec.stats("lat")["count"] == 0
    assert rec.stats("unknown") == {}
    with pytest.raises(KeyError, match="unknown"):
        rec.kind("unknown")


def test_run_start_is_settable_until_the_first_sample() -> None:
    rec = Recorder(0.0)
    rec.run_start = T0  # a worker learns the common start after building its recorder
    rec.counter("c", T0 + 2.5)
    (snap,) = rec.close_all()
    assert snap.second == 2 and rec.duration_s == 2.5
    with pytest.raises(ValueError, match="run_start"):
        rec.run_start = T0 + 1


def test_kind_conflict_is_an_error() -> None:
    rec = Recorder(T0)
    rec.trend("x", 1.0, T0)
    with pytest.raises(ValueError, match="'x' is a trend, not a counter"):
        rec.counter("x", T0)


def test_non_finite_trend_values_are_dropped_and_counted() -> None:
    rec = Recorder(T0)
    for v in (1.0, math.nan, math.inf, 2.0):
        rec.trend("lat", v, T0)
    rec.close_all()
    assert rec.stats("lat")["count"] == 2 and rec.dropped_samples == 2


def test_stats_include_open_seconds() -> None:
    rec = Recorder(T0)
    rec.trend("lat", 10.0, T0 + 0.5)
    rec.close_seconds(T0 + 1.0)
    rec.trend("lat", 30.0, T0 + 1.5)  # still open
    assert rec.stats("lat")["count"] == 2 and rec.stats("lat")["max"] == 30.0
    assert rec.window_stats("lat", None, 0, 1)["count"] == 1  # windows: closed seconds only


def test_snapshot_is_picklable_and_compact() -> None:
    rec = Recorder(T0)
    for i, v in enumerate(_lognormal(500, 3)):
        rec.trend("http_req_duration", v, T0 + i / 500, {"name": "send"})
        rec.counter("http_reqs", T0 + i / 500)
    (snap,) = rec.close_all()
    assert isinstance(snap, SecondSnapshot)
    blob = pickle.dumps(snap, protocol=pickle.HIGHEST_PROTOCOL)
    assert pickle.loads(blob) == snap
    assert len(blob) < 2_000  # 500 latencies ×2 series + a counter, about 1.2 KB
    # the per-second histogram is a standard V2 encoding that hdrh itself decodes
    trend_row = snap.series[0]
    decoded = HdrHistogram.decode(trend_row.hist, b64_wrap=False)
    assert decoded.get_total_count() == trend_row.n == 500
    assert decoded.get_value_at_percentile(95) / 1000 == pytest.approx(trend_row.p95, rel=1e-3)


def _histograms() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, HdrHistogram))


def test_one_million_samples_do_not_grow_whole_run_structures() -> None:
    rec = Recorder(T0)
    before = _histograms()
    tags = [{"name": "login"}, {"name": "send"}]
    n, seconds = 1_000_000, 100
    for i in range(10_000):
        rec.trend("lat", 10.0 + i % 97, T0 + i * seconds / n, tags[i & 1])
    rec.close_seconds(T0 + 1.0)
    sizes = (len(rec._totals), _histograms() - before)
    for i in range(10_000, n):
        rec.trend("lat", 10.0 + i % 97, T0 + i * seconds / n, tags[i & 1])
    rec.close_all()
    # whole run: still one histogram per (metric, tags): lat, lat{login}, lat{send}
    assert (len(rec._totals), _histograms() - before) == sizes == (3, 3)
    assert rec.stats("lat")["count"] == n
    assert len(rec._open) == 0
    # per-second data grows with seconds, not with samples
    assert len(rec.series_rows()) == 3 * seconds


def test_vectorised_bucket_counts_equal_the_per_value_reference() -> None:
    import random
    from collections import Counter

    from nightly_pipeline.loadgen import metrics_hdr as hdr

    rng = random.Random(7)
    values = [0.0, -1.0, 0.0004, 0.0005, 1e-3, 2.5, 3_600_000.0, 9e9]
    values += [rng.lognormvariate(0, 3) for _ in range(20_000)]
    counts, total_ns = hdr.sparse_counts_ms(values)
    assert counts == dict(Counter(hdr.index_of(hdr.to_us(v)) for v in values))
    assert total_ns == sum(round(v * 1e6) for v in values)


def _windows(rec: Recorder) -> list:
    out = []
    for name, tags in (("http_req_duration", None), ("http_req_duration", {"name": "login"})):
        for start, end, stats in rec.windows(name, tags, 30):
            out.append((name, str(tags), start, end, dict(stats)))
    return out


@pytest.mark.parametrize("merged", [False, True])
def test_spilled_rows_read_back_as_the_rows_kept_in_memory(merged: bool) -> None:
    """400 s of mixed samples (late ones too, and, merged, ingested from two workers):
    a recorder that moved its old rows to disk (``spill_after_s`` 20) gives the rows,
    snapshots, sliding windows and stats of one that kept them all."""
    kept = Recorder(T0, spill_after_s=None)
    _record_mixed([kept], 5, seconds=400)
    kept.trend("http_req_duration", 7.0, T0 + 3.0)  # late: counts in the oldest open second
    kept.close_all()
    if merged:
        spilled, w1, w2 = Recorder(T0, spill_after_s=20), Recorder(T0), Recorder(T0)
        _record_mixed([w1, w2], 5, seconds=400)
        w1.trend("http_req_duration", 7.0, T0 + 3.0)
        streams = [w1.close_all(), w2.close_all()]
        for at in range(0, 400, 10):  # ten seconds of each worker at a time, as streamed
            for stream in streams:
                spilled.ingest([snap for snap in stream if at <= snap.second < at + 10])
    else:
        spilled = Recorder(T0, spill_after_s=20)
        _record_mixed([spilled], 5, seconds=400)
        spilled.trend("http_req_duration", 7.0, T0 + 3.0)
        spilled.close_all()
    assert spilled._spill.used  # rows did go to disk
    assert _comparable(spilled) == _comparable(kept)
    assert _windows(spilled) == _windows(kept)
    assert _seconds(spilled) == _seconds(kept)


def _seconds(rec: Recorder) -> dict[int, list]:
    """Each snapshot's rows by second, in one order whatever the recorders' key order."""
    return {s.second: sorted(s.series, key=repr) for s in rec.snapshots()}


def test_a_long_recording_holds_only_its_recent_seconds_in_memory() -> None:
    """Python memory (tracemalloc) at 300 s and at 900 s of samples: the rows kept in
    memory are the last ``spill_after_s`` + ``SPILL_EVERY_S`` seconds', not the run's."""
    rec = Recorder(T0, spill_after_s=20)
    tracemalloc.start()
    held = {}
    for until in (300, 900):
        for s in range(len(held) and 300, until):
            for j in range(40):
                at = T0 + s + j / 40
                rec.trend("http_req_duration", 5.0 + j, at, {"name": "send"})
                rec.counter("http_reqs", at)
        rec.close_seconds(T0 + until)
        gc.collect()
        held[until] = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    in_memory = sum(len(rows.recent) for rows in rec._rows.values())
    assert in_memory <= 3 * (20 + 60) + 3
    assert held[900] - held[300] < 0.2 * held[300], held
    assert len(rec.series_rows()) == 3 * 900
