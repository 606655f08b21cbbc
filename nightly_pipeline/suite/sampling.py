"""What the suite watches on the target while a test runs: its Prometheus ``/metrics``
(parsed with prometheus_client's parser) and its processes' resources (RSS, CPU, open
files), sampled on a background thread at a fixed interval, bounded in count and time.

A target whose ``/metrics`` is unreachable or malformed is not an exception: the sample
records which endpoint failed and why, so a test can fail only the checks that need the
metrics it could not read.
"""

from __future__ import annotations

import threading
import time
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import overload

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

from nightly_pipeline.suite.scrape_log import ScrapeLog, Tags

MetricKey = tuple[str, tuple[tuple[str, str], ...]]  # (sample name, sorted labels)


def parse_metrics(text: str) -> dict[MetricKey, float]:
    """Every sample of a Prometheus text exposition; ValueError when malformed."""
    out: dict[MetricKey, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return out


@dataclass(frozen=True)
class Scrape:
    """One scrape of every endpoint at ``at`` (seconds on the sampler's clock)."""

    at: float
    values: Mapping[str, Mapping[MetricKey, float]]  # endpoint name -> samples
    errors: Mapping[str, str]  # endpoint name -> why it could not be read

    def total(self, name: str, **labels: str) -> float | None:
        """Sum of ``name`` over every endpoint and every label set containing ``labels``."""
        want = set(labels.items())
        found = [
            value
            for samples in self.values.values()
            if (value := _endpoint_total(samples, name, want)) is not None
        ]
        return sum(found) if found else None

    def by_label(self, name: str, label: str) -> dict[str, float]:
        """``name`` summed over every endpoint, per value of ``label`` (samples without
        it left out): ``ws_close_total`` by close code."""
        out: dict[str, float] = {}
        for samples in self.values.values():
            for tags, value in _named(samples, name):
                key = dict(tags).get(label)
                if key is not None:
                    out[key] = out.get(key, 0.0) + value
        return out


def _endpoint_total(
    samples: Mapping[MetricKey, float], name: str, want: set[tuple[str, str]]
) -> float | None:
    """Sum of one endpoint's ``name`` samples whose labels include ``want``; None: none."""
    found = [value for tags, value in _named(samples, name) if want <= set(tags)]
    return sum(found) if found else None


def _named(samples: Mapping[MetricKey, float], name: str) -> Iterable[tuple[Tags, float]]:
    """``(labels, value)`` of the samples called ``name``, in exposition order (a scrape
    read back from a ``ScrapeLog`` looks only at that name's keys)."""
    named = getattr(samples, "named", None)
    if named is not None:
        return named(name)  # type: ignore[no-any-return]
    return [(tags, value) for (sample, tags), value in samples.items() if sample == name]


def scrape(urls: Mapping[str, str], client: httpx.Client, at: float) -> Scrape:
    values: dict[str, dict[MetricKey, float]] = {}
    errors: dict[str, str] = {}
    for name, url in urls.items():
        try:
            response = client.get(url)
            response.raise_for_status()
            values[name] = parse_metrics(response.text)
        except httpx.HTTPError as exc:
            errors[name] = f"{url}: {type(exc).__name__}: {exc}"
        except ValueError as exc:
            errors[name] = f"{url}: malformed Prometheus text: {exc}"
    return Scrape(at, values, errors)


@dataclass(frozen=True)
class ProcessSample:
    at: float
    rss_mb: float  # the process and its children
    cpu_s: float  # user + system, the process and its children
    open_files: int


class ProcessSeries(Sequence[ProcessSample]):
    """One process's samples, in the order taken, as four arrays: 32 bytes a sample
    instead of a ~180-byte ``ProcessSample`` kept each second (a list of them grew the
    generator with the run's length: 1,800 samples per watched process in 30 minutes).
    A sample read back is the one appended (floats kept as doubles, the count as int64)."""

    __slots__ = ("_at", "_cpu", "_files", "_rss")

    def __init__(self, samples: Iterable[ProcessSample] = ()) -> None:
        self._at, self._rss, self._cpu = array("d"), array("d"), array("d")
        self._files = array("q")
        for sample in samples:
            self.append(sample)

    def append(self, sample: ProcessSample) -> None:
        self._at.append(sample.at)
        self._rss.append(sample.rss_mb)
        self._cpu.append(sample.cpu_s)
        self._files.append(sample.open_files)

    def __len__(self) -> int:
        return len(self._at)

    @overload
    def __getitem__(self, index: int) -> ProcessSample: ...
    @overload
    def __getitem__(self, index: slice) -> list[ProcessSample]: ...
    def __getitem__(self, index: int | slice) -> ProcessSample | list[ProcessSample]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return ProcessSample(
            self._at[index], self._rss[index], self._cpu[index], self._files[index]
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return list(self) == list(other)

    def nbytes(self) -> int:
        """Bytes of the four arrays' buffers."""
        return sum(
            a.buffer_info()[1] * a.itemsize for a in (self._at, self._rss, self._cpu, self._files)
        )


def sample_process(pid: int, at: float) -> ProcessSample | None:
    """RSS, CPU and open file descriptors of ``pid`` and its children; None if it is gone."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
        rss = cpu = 0.0
        fds = 0
        for proc in procs:
            with proc.oneshot():
                rss += proc.memory_info().rss
                times = proc.cpu_times()
                cpu += times.user + times.system
                fds += proc.num_fds()
        return ProcessSample(at, rss / 2**20, cpu, fds)
    except psutil.Error:
        return None


@dataclass
class Samples:
    """What a sampler read: ``scrapes`` in order (a ``ScrapeLog`` when a ``Sampler`` wrote
    them: kept as changes), the process samples by process name (a ``ProcessSeries``
    when a ``Sampler`` took them)."""

    scrapes: Sequence[Scrape] = field(default_factory=list)
    processes: dict[str, Sequence[ProcessSample]] = field(default_factory=dict)


class Sampler:
    """Scrape ``metrics_urls`` and sample ``pids`` every ``interval_s`` until stopped.

    Use as a context manager around a test's load; at most ``max_samples`` rounds are
    kept (a runaway test cannot grow memory without bound).
    """

    def __init__(
        self,
        metrics_urls: Mapping[str, str],
        pids: Mapping[str, int],
        *,
        interval_s: float = 1.0,
        max_samples: int = 24 * 3600,
        clock: Callable[[], float] = time.monotonic,
        timeout_s: float = 2.0,
    ) -> None:
        self.metrics_urls = dict(metrics_urls)
        self.pids = dict(pids)
        self.interval_s = interval_s
        self.max_samples = max_samples
        self.clock = clock
        self.log = ScrapeLog()
        self.series = {name: ProcessSeries() for name in pids}
        self.samples = Samples(scrapes=self.log, processes=dict(self.series))
        self._client = httpx.Client(timeout=timeout_s, trust_env=False)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nightly-sampler", daemon=True)
        self.start_at = 0.0

    def sample_once(self) -> None:
        at = self.clock() - self.start_at
        self.log.append(scrape(self.metrics_urls, self._client, at))
        for name, pid in self.pids.items():
            sample = sample_process(pid, at)
            if sample is not None:
                self.series[name].append(sample)

    def _run(self) -> None:
        rounds = 1
        while rounds < self.max_samples and not self._stop.wait(self.interval_s):
            self.sample_once()
            rounds += 1

    def __enter__(self) -> Sampler:
        self.start_at = self.clock()
        self.sample_once()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval_s + 5.0)
        self.sample_once()
        self._client.close()


START_TIME = "process_start_time_seconds"
"""Prometheus' standard process collector: a value that changed is a process restarted."""


def counter_delta(samples: Samples, name: str, **labels: str) -> float | None:
    """How much a counter grew from the first to the last scrape that had it (None: never
    read), summed over endpoints. A process that restarted counts from zero again."""
    return _growth(samples.scrapes, name, labels, absent_is_zero=False)


def labelled_growth(samples: Samples, name: str, **labels: str) -> float | None:
    """Growth of a labelled counter over the run, counting a label set that first appears
    mid-run from zero (Prometheus exports a labelled series only once it fired: a
    breaker's first ``state="open"`` transition appears at 1).

    Only scrapes where every endpoint answered count (an absent series is then really
    zero), so an unreadable target is None rather than zero; a restarted process counts
    from zero again."""
    complete = [scrape for scrape in samples.scrapes if not scrape.errors]
    return _growth(complete, name, labels, absent_is_zero=True)


def _growth(
    scrapes: Iterable[Scrape], name: str, labels: Mapping[str, str], *, absent_is_zero: bool
) -> float | None:
    """A counter's growth, endpoint by endpoint, from each one's first reading. An
    endpoint restarted when its ``process_start_time_seconds`` changed or the counter went
    down: its value then counts from zero. The start time is what tells a restart whose
    new process got past the old value before the next scrape (Test 08's consumer
    reclaims its predecessor's pending entries at start: a value that only went down
    missed those)."""
    want = set(labels.items())
    last: dict[str, tuple[float | None, float]] = {}
    grown, seen = 0.0, False
    for scrape in scrapes:
        for endpoint, metrics in scrape.values.items():
            value = _endpoint_total(metrics, name, want)
            if value is None and not absent_is_zero:
                continue
            value, seen = value or 0.0, True
            started = next((v for _, v in _named(metrics, START_TIME)), None)
            if endpoint in last:
                was_started, was = last[endpoint]
                restarted = value < was or (
                    started != was_started and None not in (started, was_started)
                )
                grown += value if restarted else value - was
            last[endpoint] = (started, value)
    return grown if seen else None


def gauge_max(samples: Samples, name: str, **labels: str) -> float | None:
    values = [v for s in samples.scrapes if (v := s.total(name, **labels)) is not None]
    return max(values) if values else None


def unreadable(samples: Samples) -> dict[str, str]:
    """Endpoints that failed in any scrape, with the last reason."""
    out: dict[str, str] = {}
    for s in samples.scrapes:
        out.update(s.errors)
    return out
