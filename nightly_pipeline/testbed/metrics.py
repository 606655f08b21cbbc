"""A tiny Prometheus text-exposition registry shared by the testbed processes.

    REGISTRY = Registry()          # module default; each process renders it at /metrics
    hits = Counter("x_total", "help", ["result"])       # registers in REGISTRY
    hits.labels(result="ok").inc()
    g = Gauge("pool_in_use", "help"); g.set(3); g.inc(); g.dec()
    h = Histogram("size_bytes", "help", buckets=(1, 10, 100)); h.observe(5)
    REGISTRY.render()              # -> Prometheus text format 0.0.4

A metric without labelnames is used directly (`.inc()`, `.set()`, `.observe()`).
Metrics are process-local and not thread-safe beyond the GIL (asyncio processes only).

Every registry also renders Prometheus' standard process collector gauges for the process
that renders it (``process_resident_memory_bytes`` ...; ``process_lines``): a deployed
platform's memory is judged from them when the suite cannot see its pids.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import psutil

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

DEFAULT_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class Registry:
    def __init__(self, *, process_metrics: bool = True) -> None:
        self._metrics: dict[str, _Metric] = {}
        self.process_metrics = process_metrics

    def register(self, metric: _Metric) -> None:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name!r} already registered")
        self._metrics[metric.name] = metric

    def get(self, name: str) -> _Metric | None:
        return self._metrics.get(name)

    def render(self) -> str:
        lines: list[str] = []
        for metric in self._metrics.values():
            lines.extend(metric.render())
        if self.process_metrics:
            lines.extend(process_lines())
        return "\n".join(lines) + "\n"


PROCESS_GAUGES = (
    # (name, type, help): the names and meanings of prometheus_client's ProcessCollector
    ("process_resident_memory_bytes", "gauge", "Resident memory size in bytes."),
    ("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes."),
    ("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds."),
    ("process_open_fds", "gauge", "Number of open file descriptors."),
    (
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
    ),
)


def process_lines(pid: int | None = None) -> list[str]:
    """The process collector's families for ``pid`` (default: this process), read when
    rendered: what ``prometheus_client.ProcessCollector`` exports on Linux, via psutil (so
    the reference platform needs no second metrics library)."""
    proc = psutil.Process(pid)
    with proc.oneshot():
        memory = proc.memory_info()
        cpu = proc.cpu_times()
        values = (
            memory.rss,
            memory.vms,
            cpu.user + cpu.system,
            proc.num_fds(),
            proc.create_time(),
        )
    lines = []
    for (name, kind, help_text), value in zip(PROCESS_GAUGES, values, strict=True):
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {_fmt(value)}"]
    return lines


REGISTRY = Registry()


def render() -> str:
    return REGISTRY.render()


def _fmt(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if math.isnan(v):
        return "NaN"
    if float(v).is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(float(v))


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labelstr(pairs: Iterable[tuple[str, str]]) -> str:
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)
    return "{" + body + "}" if body else ""


class _Metric:
    kind = "untyped"

    def __init__(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        registry: Registry | None = REGISTRY,
    ) -> None:
        self.name = name
        self.help = help
        self.labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], _Child] = {}
        if registry is not None:
            registry.register(self)

    def _new_child(self) -> _Child:
        raise NotImplementedError

    def labels(self, *values: object, **kw: object) -> _Child:
        if values and kw:
            raise ValueError("pass label values positionally or by name, not both")
        if kw:
            if set(kw) != set(self.labelnames):
                raise ValueError(f"{self.name}: expected labels {self.labelnames}, got {tuple(kw)}")
            key = tuple(str(kw[n]) for n in self.labelnames)
        else:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name}: expected labels {self.labelnames}")
            key = tuple(str(v) for v in values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._new_child()
        return child

    def _only(self) -> _Child:
        if self.labelnames:
            raise ValueError(f"{self.name} has labels {self.labelnames}; use .labels()")
        return self.labels()

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]
        children = self._children
        if not self.labelnames and not children:
            self._only()  # an unlabelled metric shows 0 before first use
        for key, child in sorted(children.items()):
            out.extend(child.render(self.name, list(zip(self.labelnames, key, strict=True))))
        return out


class _Child:
    def render(self, name: str, labels: list[tuple[str, str]]) -> list[str]:
        raise NotImplementedError


class _Value(_Child):
    def __init__(self) -> None:
        self.value = 0.0

    def render(self, name: str, labels: list[tuple[str, str]]) -> list[str]:
        return [f"{name}{_labelstr(labels)} {_fmt(self.value)}"]


class _CounterChild(_Value):
    def inc(self, n: float = 1.0) -> None:
        if n < 0:
            raise ValueError("counters only go up")
        self.value += n


class _GaugeChild(_Value):
    def set(self, v: float) -> None:
        self.value = float(v)

    def inc(self, n: float = 1.0) -> None:
        self.value += n

    def dec(self, n: float = 1.0) -> None:
        self.value -= n


class _HistogramChild(_Child):
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, v: float) -> None:
        self.sum += v
        self.count += 1
        for i, upper in enumerate(self.buckets):
            if v <= upper:
                self.counts[i] += 1
                break

    def render(self, name: str, labels: list[tuple[str, str]]) -> list[str]:
        out = []
        cumulative = 0
        for upper, c in zip(self.buckets, self.counts, strict=True):
            cumulative += c
            le = _labelstr([*labels, ("le", _fmt(upper))])
            out.append(f"{name}_bucket{le} {cumulative}")
        inf = _labelstr([*labels, ("le", "+Inf")])
        out.append(f"{name}_bucket{inf} {self.count}")
        out.append(f"{name}_sum{_labelstr(labels)} {_fmt(self.sum)}")
        out.append(f"{name}_count{_labelstr(labels)} {self.count}")
        return out


class Counter(_Metric):
    kind = "counter"

    def _new_child(self) -> _CounterChild:
        return _CounterChild()

    def labels(self, *values: object, **kw: object) -> _CounterChild:
        return super().labels(*values, **kw)  # type: ignore[return-value]

    def inc(self, n: float = 1.0) -> None:
        self._only().inc(n)  # type: ignore[attr-defined]

    @property
    def value(self) -> float:
        return self._only().value  # type: ignore[attr-defined]


class Gauge(_Metric):
    kind = "gauge"

    def _new_child(self) -> _GaugeChild:
        return _GaugeChild()

    def labels(self, *values: object, **kw: object) -> _GaugeChild:
        return super().labels(*values, **kw)  # type: ignore[return-value]

    def set(self, v: float) -> None:
        self._only().set(v)  # type: ignore[attr-defined]

    def inc(self, n: float = 1.0) -> None:
        self._only().inc(n)  # type: ignore[attr-defined]

    def dec(self, n: float = 1.0) -> None:
        self._only().dec(n)  # type: ignore[attr-defined]

    @property
    def value(self) -> float:
        return self._only().value  # type: ignore[attr-defined]


class Histogram(_Metric):
    kind = "histogram"

    def __init__(
        self,
        name: str,
        help: str,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
        labelnames: Sequence[str] = (),
        registry: Registry | None = REGISTRY,
    ) -> None:
        self.buckets = tuple(sorted(float(b) for b in buckets if not math.isinf(b)))
        super().__init__(name, help, labelnames, registry)

    def _new_child(self) -> _HistogramChild:
        return _HistogramChild(self.buckets)

    def labels(self, *values: object, **kw: object) -> _HistogramChild:
        return super().labels(*values, **kw)  # type: ignore[return-value]

    def observe(self, v: float) -> None:
        self._only().observe(v)  # type: ignore[attr-defined]


def parse_text(text: str) -> dict[str, float]:
    """Parse exposition text into {'name{labels}': value} (for tests and scrapers)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, val = line.rpartition(" ")
        out[key] = float(val)
    return out
