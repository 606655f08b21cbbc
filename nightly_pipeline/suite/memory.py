"""How much the platform's memory grew during a run, from what the suite could see of it.

Where the suite knows the platform's processes (the embedded platform hands out their
pids), RSS comes from sampling them (``suite.sampling.sample_process``). A deployed
platform offers no pids: its memory comes from each ``metrics_urls`` endpoint's
``process_resident_memory_bytes``, the gauge Prometheus' standard process collector
exports. A target that offers neither cannot support a memory check: that is said, with
the reason (a visible skip), never turned into a pass or into a "metric never recorded"
failure. An endpoint that could not be read at all is another matter: the target failed
to answer, and the check fails as any check of unreadable metrics does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from nightly_pipeline.analysis import LeakVerdict, leak_verdict
from nightly_pipeline.suite.sampling import Samples

RSS_GAUGE = "process_resident_memory_bytes"
"""Prometheus' process collector's resident memory gauge (bytes)."""
RSS_WARMUP_FRACTION = 0.2
"""Memory growth is measured after the first fifth of the run (caches, pools, JIT-free
Python still allocates while warming up)."""
MIN_POINTS = 3
"""Fewer RSS readings of a process than this say nothing about its growth."""

Series = Sequence[tuple[float, float]]  # (seconds on the sampler's clock, RSS in MB)


@dataclass(frozen=True)
class MemoryGrowth:
    """The largest post-warm-up RSS growth of any watched process, in %.

    ``growth_pct`` None: nothing to judge — either ``not_measurable`` says why this target
    cannot support the check, or the readings were too few or unreadable (a failure).
    ``fits`` holds each process's fit, so a failing check can name who grew, from what to
    what (a bare "20 %" sent the last session hunting through three processes)."""

    source: str  # "pids" or "/metrics"
    series: Mapping[str, Series]  # process or endpoint name -> its RSS readings
    not_measurable: str = ""
    fits: Mapping[str, LeakVerdict] = field(default_factory=dict)

    @property
    def growth_pct(self) -> float | None:
        """The largest fitted growth; None when no series had enough readings."""
        return max((v.growth_pct for v in self.fits.values()), default=None)

    def describe(self) -> list[str]:
        """The largest grower's fit, then every other process's growth on one line."""
        if not self.fits:
            return []
        ranked = sorted(self.fits.items(), key=lambda kv: -kv[1].growth_pct)
        (name, top), rest = ranked[0], ranked[1:]
        lines = [f"{name} ({self.source}): {top.detail}"]
        if rest:
            lines.append("others: " + ", ".join(f"{n} {v.growth_pct:+.1f} %" for n, v in rest))
        return lines


def rss_from_metrics(samples: Samples) -> dict[str, list[tuple[float, float]]]:
    """Each endpoint's ``process_resident_memory_bytes`` readings in MB (summed over its
    label sets, should an exporter label them); endpoints that never had it left out."""
    out: dict[str, list[tuple[float, float]]] = {}
    for scrape in samples.scrapes:
        for endpoint, values in scrape.values.items():
            found = [v for (name, _), v in values.items() if name == RSS_GAUGE]
            if found:
                out.setdefault(endpoint, []).append((scrape.at, sum(found) / 2**20))
    return out


def rss_from_pids(samples: Samples) -> dict[str, list[tuple[float, float]]]:
    return {name: [(p.at, p.rss_mb) for p in points] for name, points in samples.processes.items()}


def growth_fits(series: Mapping[str, Series]) -> dict[str, LeakVerdict]:
    """Each series' robust (Theil–Sen) fit after warm-up, for those with enough readings."""
    fits = {}
    for name, points in series.items():
        if len(points) < MIN_POINTS:
            continue
        seconds = [at for at, _ in points]
        verdict = leak_verdict(
            seconds,
            [mb for _, mb in points],
            warmup_s=seconds[-1] * RSS_WARMUP_FRACTION,
            max_growth_pct=0,
        )
        fits[name] = verdict
    return fits


def memory_growth(samples: Samples, metrics_urls: Mapping[str, str]) -> MemoryGrowth:
    """From the pids when the suite sampled any, else from ``/metrics``; not measurable
    when the target lists no endpoint, or every endpoint answered and none exported
    ``process_resident_memory_bytes``."""
    if samples.processes:
        series = rss_from_pids(samples)
        return MemoryGrowth("pids", series, fits=growth_fits(series))
    series = rss_from_metrics(samples)
    if series:
        return MemoryGrowth("/metrics", series, fits=growth_fits(series))
    if not metrics_urls:
        return MemoryGrowth(
            "/metrics",
            series,
            "the target offers no process ids and lists no metrics_urls: add the platform's"
            f" /metrics endpoints, exporting {RSS_GAUGE}, to the target file",
        )
    answered = {name for scrape in samples.scrapes for name in scrape.values}
    if answered >= set(metrics_urls):
        return MemoryGrowth(
            "/metrics",
            series,
            f"no process ids, and the /metrics of {', '.join(sorted(metrics_urls))} export no"
            f" {RSS_GAUGE} (Prometheus' process collector): export it from each process",
        )
    return MemoryGrowth("/metrics", series)  # unreadable: fails, named as unreadable
