"""A run's scrapes kept as changes (``suite.scrape_log``) read back as the scrapes they
were, so every check judges the same: the same inputs through a plain list (how the
sampler kept them before) and through a ``ScrapeLog``, compared scrape by scrape and
through every reader of scrapes the suite has. The expositions are real Prometheus text
from prometheus_client's own registry, parsed by the sampler's parser: counters that
grow, a labelled series first seen mid-run, a restarted process (counters from zero, a
series gone), histograms, a NaN gauge, an endpoint that fails for a while."""

from __future__ import annotations

import math
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from nightly_pipeline.suite.memory import memory_growth, rss_from_metrics
from nightly_pipeline.suite.sampling import (
    Samples,
    Scrape,
    counter_delta,
    gauge_max,
    labelled_growth,
    parse_metrics,
    unreadable,
)
from nightly_pipeline.suite.scrape_log import ScrapeLog
from tests.suite.platforms import scenario_module

URLS = {"api": "http://127.0.0.1:1/metrics", "consumer": "http://127.0.0.1:2/metrics"}
LOGIN = scenario_module("06")
LONGEVITY = scenario_module("14")


class Platform:
    """Two endpoints' registries, changed second by second as a running platform's are."""

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        """A new process: new registries, every counter from zero."""
        self.api, self.consumer = CollectorRegistry(), CollectorRegistry()
        self.logins = Counter("auth_login", "logins", ["result"], registry=self.api)
        self.tokens = Histogram("auth_token_generation_seconds", "t", registry=self.api)
        self.peak = Gauge("redis_pool_in_use_peak", "p", registry=self.api)
        self.size = Gauge("redis_pool_max_connections", "s", registry=self.api)
        self.rss = Gauge("process_resident_memory_bytes", "rss", registry=self.api)
        self.frames = Counter("ws_frame_sent", "frames", registry=self.consumer)
        self.closes = Counter("ws_close", "closes", ["code"], registry=self.consumer)
        self.lag = Gauge("messaging_consumer_lag_seconds", "lag", registry=self.consumer)
        self.crss = Gauge("process_resident_memory_bytes", "rss", registry=self.consumer)
        self.size.set(20)

    def second(self, t: int) -> None:
        self.logins.labels("ok").inc(200)
        if t % 7 == 0:
            self.logins.labels("bad").inc()  # first seen mid-run
        for i in range(t % 5):
            self.tokens.observe(0.001 * (i + 1) * (t % 11))
        self.peak.set(t % 9)
        self.rss.set(100 * 2**20 + 4096 * t)
        self.frames.inc(3 * t)
        if t > 20:
            self.closes.labels(str(1000 + t % 3)).inc()
        self.lag.set(math.nan if t % 13 == 0 else 0.01 * (t % 4))
        self.crss.set(50 * 2**20)


def _scrapes(seconds: int = 120) -> list[Scrape]:
    platform, out = Platform(), []
    for t in range(seconds):
        if t == 60:
            platform.restart()
        platform.second(t)
        values = {
            "api": parse_metrics(generate_latest(platform.api).decode()),
            "consumer": parse_metrics(generate_latest(platform.consumer).decode()),
        }
        errors = {}
        if 40 <= t < 45:
            del values["consumer"]
            errors["consumer"] = "http://127.0.0.1:2/metrics: ConnectError: refused"
        out.append(Scrape(float(t) + 0.5, values, errors))
    return out


def _logged(scrapes: Sequence[Scrape]) -> ScrapeLog:
    log = ScrapeLog()
    for s in scrapes:
        log.append(s)
    return log


def _items(scrape: Scrape) -> list[tuple[str, list[tuple[Any, str]]]]:
    """Every sample of a scrape in order; values as repr (NaN equal to NaN, -0.0 not 0.0)."""
    return [
        (endpoint, [(key, repr(value)) for key, value in samples.items()])
        for endpoint, samples in scrape.values.items()
    ]


def test_every_scrape_reads_back_sample_for_sample_in_order() -> None:
    scrapes = _scrapes()
    log = _logged(scrapes)
    assert len(log) == len(scrapes)
    for before, after in zip(scrapes, log, strict=True):
        assert after.at == before.at and dict(after.errors) == before.errors
        assert _items(after) == _items(before)
        for endpoint, samples in before.values.items():
            key = next(iter(samples))
            assert after.values[endpoint][key] == samples[key]
    assert _items(log[-1]) == _items(scrapes[-1]) and _items(log[1:][0]) == _items(scrapes[1])


READERS: dict[str, Callable[[Samples], object]] = {
    "counter_delta": lambda s: counter_delta(s, "auth_login_total"),
    "counter_delta labelled": lambda s: counter_delta(s, "auth_login_total", result="bad"),
    "labelled_growth": lambda s: labelled_growth(s, "ws_close_total", code="1001"),
    "gauge_max": lambda s: gauge_max(s, "redis_pool_in_use_peak"),
    "gauge_max NaN": lambda s: repr(gauge_max(s, "messaging_consumer_lag_seconds")),
    "by_label": lambda s: [x.by_label("ws_close_total", "code") for x in s.scrapes],
    "total": lambda s: [x.total("process_resident_memory_bytes") for x in s.scrapes],
    "unreadable": unreadable,
    "rss_from_metrics": rss_from_metrics,
    "memory_growth": lambda s: memory_growth(s, URLS),
    "06 histogram_growth": lambda s: LOGIN.histogram_growth(s, "auth_token_generation_seconds"),
    "06 pool_utilization": LOGIN.pool_utilization,
    "14 frame_points": LONGEVITY.frame_points,
}


@pytest.mark.parametrize("reader", READERS)
def test_every_reader_of_scrapes_judges_the_same(reader: str) -> None:
    scrapes = _scrapes()
    before = READERS[reader](Samples(scrapes=scrapes))
    after = READERS[reader](Samples(scrapes=_logged(scrapes)))
    assert after == before
    assert before not in (None, [], {})  # the reader found something to compare


def test_the_log_holds_the_changes_not_the_expositions() -> None:
    """The same 600 scrapes (where most series move every second, a stricter case than a
    platform's exposition): the log's bytes (tracemalloc) a small share of the dicts'."""
    scrapes = _scrapes(600)
    tracemalloc.start()
    kept = [Scrape(s.at, {e: dict(v) for e, v in s.values.items()}, s.errors) for s in scrapes]
    as_dicts = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    tracemalloc.start()
    log = _logged(scrapes)
    as_log = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    print(f"600 scrapes: {as_dicts / 1024:.0f} KiB as dicts, {as_log / 1024:.0f} KiB logged")
    assert len(kept) == len(log)
    assert as_log < as_dicts / 4
