"""How many WebSockets the platform itself says are open, once a second: its
``ws_connect_total`` less its ``ws_close_total`` (summed over every metrics endpoint),
counted from a baseline read before the test's sockets opened (Test 12)."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx

from nightly_pipeline.suite.sampling import scrape


def open_sockets(urls: Mapping[str, str], client: httpx.Client) -> float | None:
    """connects - closes now; None when an endpoint could not be read."""
    now = scrape(urls, client, time.monotonic())
    connects, closes = now.total("ws_connect_total"), now.total("ws_close_total")
    if now.errors or connects is None:
        return None
    return connects - (closes or 0.0)


@dataclass
class SocketCensus:
    """Reads the open-socket count every ``interval_s`` on a thread, from ``__enter__``
    (after the test's sockets opened) to ``__exit__``; bounded by ``max_reads``."""

    urls: Mapping[str, str]
    baseline: float  # open sockets before the test's own
    interval_s: float = 1.0
    max_reads: int = 24 * 3600
    counts: list[float] = field(default_factory=list)  # test's sockets open, per read
    unreadable: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @classmethod
    def before_sockets(cls, urls: Mapping[str, str]) -> SocketCensus:
        """A census whose baseline is the count now, before the test opens anything."""
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            baseline = open_sockets(urls, client)
        return cls(urls, baseline or 0.0)

    def __enter__(self) -> SocketCensus:
        self._thread = threading.Thread(target=self._run, name="socket-census", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 5.0)

    def _run(self) -> None:
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while len(self.counts) + self.unreadable < self.max_reads:
                count = open_sockets(self.urls, client)
                if count is None:
                    self.unreadable += 1
                else:
                    self.counts.append(count - self.baseline)
                if self._stop.wait(self.interval_s):
                    return

    def fewest(self) -> float | None:
        """The fewest of the test's sockets the platform had open at any read."""
        return min(self.counts) if self.counts else None
