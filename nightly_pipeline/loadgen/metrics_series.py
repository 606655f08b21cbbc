"""Per-second series: the wire types, building and merging rows, sliding windows.

One `SeriesSecond` is everything known about one (metric, tags) in one whole second:
counts, exact sums/min/max, the latest gauge value and, for trends, the HdrHistogram
V2 encoding of that second's latencies (raw zlib bytes, µs) plus its p50/p95/p99.
Rows combine exactly (`combine`): counts and integer sums add, histograms add bucket
by bucket, so any set of seconds from any number of recorders merges to the same
figures as one recorder that saw every sample.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from typing import NamedTuple

from nightly_pipeline.loadgen import metrics_hdr as hdr
from nightly_pipeline.loadgen.metrics_stats import (
    COUNTER,
    GAUGE,
    RATE,
    TREND,
    Stats,
    counter_stats,
    gauge_stats,
    rate_stats,
    trend_stats,
)

Tags = Mapping[str, str]
TagsKey = tuple[tuple[str, str], ...]


class MetricKey(NamedTuple):
    """A metric name plus its sorted tag pairs; ``tags == ()`` is the whole metric."""

    name: str
    tags: TagsKey

    def selector(self) -> str:
        """k6 spelling: ``name`` or ``name{k:v,k2:v2}``."""
        if not self.tags:
            return self.name
        return self.name + "{" + ",".join(f"{k}:{v}" for k, v in self.tags) + "}"


def tags_key(tags: Tags | None) -> TagsKey:
    return tuple(sorted(tags.items())) if tags else ()


class SeriesSecond(NamedTuple):
    """One (metric, tags) in one second. Meaning of the number fields per kind:

    trend: n samples, total = Σ value in integer nanoseconds, vmin/vmax exact ms,
           hist = V2 encoding (µs), p50/p95/p99 in ms.
    counter: n samples, total = Σ values.      rate: n samples, total = passes.
    gauge: n samples, vmin/vmax, last = value of the latest sample, last_at = its time
           (seconds since run start).
    Fields that do not apply are None.
    """

    name: str
    tags: TagsKey
    kind: str
    n: int
    total: float
    vmin: float | None = None
    vmax: float | None = None
    last: float | None = None
    last_at: float | None = None
    hist: bytes | None = None
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None


class SecondSnapshot(NamedTuple):
    """Every series of one closed second; ``end_s`` is the producer's duration so far."""

    second: int
    end_s: float
    series: tuple[SeriesSecond, ...]


def _trend_row(
    name: str,
    tags: TagsKey,
    counts: Mapping[int, int],
    n: int,
    total: int,
    vmin: float,
    vmax: float,
) -> SeriesSecond:
    pct = hdr.Percentiles.from_sparse(counts, vmin, vmax)
    blob = hdr.encode_sparse(counts, hdr.to_us(vmin), hdr.to_us(vmax))
    return SeriesSecond(
        name,
        tags,
        TREND,
        n,
        total,
        vmin,
        vmax,
        hist=blob,
        p50=pct.value(50.0),
        p95=pct.value(95.0),
        p99=pct.value(99.0),
    )


def build_row(
    name: str, tags: TagsKey, kind: str, values: list, run_start: float
) -> tuple[SeriesSecond, dict[int, int] | None]:
    """Summarise one second of raw samples; trends also return their sparse counts."""
    if kind == TREND:
        if not math.isfinite(math.fsum(values)):
            values = [v for v in values if math.isfinite(v)]
            if not values:
                return SeriesSecond(name, tags, TREND, 0, 0), {}
        counts, total = hdr.sparse_counts_ms(values)
        row = _trend_row(name, tags, counts, len(values), total, min(values), max(values))
        return row, counts
    if kind == COUNTER:
        return SeriesSecond(name, tags, kind, len(values), math.fsum(values)), None
    if kind == RATE:
        return SeriesSecond(name, tags, kind, len(values), sum(map(bool, values))), None
    last_at, last = values[0]
    for at, v in values:
        if at >= last_at:
            last_at, last = at, v
    vs = [v for _, v in values]
    row = SeriesSecond(name, tags, GAUGE, len(vs), 0, min(vs), max(vs), last, last_at - run_start)
    return row, None


def sparse_of(row: SeriesSecond) -> dict[int, int]:
    return hdr.decode_sparse(row.hist) if row.hist is not None else {}


def combine(a: SeriesSecond, b: SeriesSecond) -> SeriesSecond:
    """Exact merge of two rows of the same (metric, tags, second)."""
    n, total = a.n + b.n, a.total + b.total
    if a.kind == TREND:
        counts = sparse_of(a)
        hdr.merge_sparse(counts, sparse_of(b))
        vmin, vmax = min(a.vmin, b.vmin), max(a.vmax, b.vmax)  # type: ignore[type-var]
        return _trend_row(a.name, a.tags, counts, n, total, vmin, vmax)  # type: ignore[arg-type]
    if a.kind == GAUGE:
        later = b if b.last_at >= a.last_at else a  # type: ignore[operator]
        vmin, vmax = min(a.vmin, b.vmin), max(a.vmax, b.vmax)  # type: ignore[type-var]
        return a._replace(n=n, vmin=vmin, vmax=vmax, last=later.last, last_at=later.last_at)
    return a._replace(n=n, total=total)


class Part:
    """Mutable aggregate of rows (the same metric, any tags, any seconds)."""

    __slots__ = ("counts", "kind", "last", "last_at", "n", "total", "vmax", "vmin")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.n, self.total = 0, 0
        self.vmin = self.vmax = self.last = self.last_at = None
        self.counts: dict[int, int] | None = {} if kind == TREND else None

    def absorb(self, x: SeriesSecond | Part) -> None:
        """Add the scalar figures of a row or of another Part (same field names)."""
        if not x.n:
            return
        self.n += x.n
        self.total += x.total
        if x.vmin is not None:
            self.vmin = x.vmin if self.vmin is None else min(self.vmin, x.vmin)
            self.vmax = x.vmax if self.vmax is None else max(self.vmax, x.vmax)
        if x.last_at is not None and (self.last_at is None or x.last_at >= self.last_at):
            self.last, self.last_at = x.last, x.last_at

    def add(self, row: SeriesSecond, counts: Mapping[int, int] | None = None) -> None:
        """Add a row; trends also add its histogram (`counts` if already decoded)."""
        if row.n:
            self.absorb(row)
            if self.counts is not None:
                hdr.merge_sparse(self.counts, sparse_of(row) if counts is None else counts)

    def stats(self, duration_s: float, pct: hdr.Percentiles | None = None) -> Stats:
        if self.kind == TREND:
            if pct is None and self.n:
                pct = hdr.Percentiles.from_sparse(self.counts or {}, self.vmin, self.vmax)  # type: ignore[arg-type]
            return trend_stats(self.n, self.total, self.vmin, self.vmax, pct and pct.value)  # type: ignore[arg-type]
        if self.kind == COUNTER:
            return counter_stats(self.total, duration_s)
        if self.kind == RATE:
            return rate_stats(self.n, self.total)  # type: ignore[arg-type]
        return gauge_stats(self.n, self.last, self.vmin, self.vmax)  # type: ignore[arg-type]


def iter_windows(
    kind: str, series: Sequence[Mapping[int, SeriesSecond]], width: int, start: int, end: int
) -> Iterator[tuple[int, int, Stats]]:
    """Stats of every window [s, s + width) for s = start .. end - width, step 1 s.

    `series` are the per-second rows of the tag sets that make up the (sub)metric.
    Histogram counts slide (add the entering second, subtract the leaving one); the
    other figures are recomputed from the `width` seconds in the window, so they stay
    exact. Each second's histogram is decoded once.
    """
    if width <= 0 or end - start < width:
        return
    window: deque[Part] = deque()
    counts: dict[int, int] = {}
    for s in range(start, end):
        part = Part(kind)
        for rows in series:
            row = rows.get(s)
            if row is not None:
                part.add(row)
        window.append(part)
        if part.counts:
            hdr.merge_sparse(counts, part.counts)
        if len(window) > width:
            for i, c in (window.popleft().counts or {}).items():
                left = counts[i] - c
                if left:
                    counts[i] = left
                else:
                    del counts[i]
        if len(window) == width:
            acc = Part(kind)
            for p in window:
                acc.absorb(p)
            pct = None
            if kind == TREND and acc.n:
                pct = hdr.Percentiles.from_sparse(counts, acc.vmin, acc.vmax)  # type: ignore[arg-type]
            yield s + 1 - width, s + 1, acc.stats(float(width), pct)
