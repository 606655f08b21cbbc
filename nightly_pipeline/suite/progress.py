"""How far a running test is, for whoever watches: the figures of one moment
(``TestProgress``), one line of text for logs, and the in-process listeners a command
line's live display subscribes to.

Scenarios report through ``ScenarioContext.watch`` about once a second while the load
runs and while deliveries drain; the test's Dagster step relays each report to the
listeners of this process (``nightly run`` executes in process) and, every few seconds,
to the Dagster log, which is what another executor's runs have.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from nightly_pipeline.loadgen import Progress


@dataclass(frozen=True)
class TestProgress:
    """One moment of one test: ``phase`` is ``load`` or ``drain`` (deliveries still
    arriving after the load); ``pending`` is None for tests that deliver nothing."""

    __test__ = False

    test: str
    phase: str
    elapsed_s: float
    planned_s: float
    rate_per_s: float  # achieved, over the last few seconds
    p95_ms: float | None  # HTTP, over the last few seconds
    errors: int
    dropped: int
    pending: int | None = None  # (message, socket) deliveries not arrived yet

    @classmethod
    def of_load(cls, test: str, progress: Progress, pending: int | None) -> TestProgress:
        return cls(
            test,
            "load",
            progress.elapsed_s,
            progress.duration_s,
            progress.rate_per_s,
            progress.p95_ms,
            progress.errors,
            progress.dropped,
            pending,
        )

    def line(self) -> str:
        """``01_message_soak load 12/60 s  498.0/s  p95 9.8 ms  errors 0  dropped 0  pending 36``"""
        parts = [
            f"{self.test} {self.phase} {self.elapsed_s:.0f}/{self.planned_s:.0f} s",
            f"{self.rate_per_s:.1f}/s",
            f"p95 {self.p95_ms:.1f} ms" if self.p95_ms is not None else "p95 -",
            f"errors {self.errors}",
            f"dropped {self.dropped}",
        ]
        if self.pending is not None:
            parts.append(f"pending {self.pending}")
        return "  ".join(parts)


Watch = Callable[[TestProgress], None]


class Listeners:
    """Callbacks of this process that want every report; a failing one is dropped so
    that a display can never stop a test."""

    def __init__(self) -> None:
        self._callbacks: list[Watch] = []
        self._lock = threading.Lock()

    def publish(self, progress: TestProgress) -> None:
        with self._lock:
            callbacks = list(self._callbacks)
        for callback in callbacks:
            try:
                callback(progress)
            except Exception:
                self._remove(callback)

    @contextlib.contextmanager
    def listening(self, callback: Watch) -> Iterator[None]:
        with self._lock:
            self._callbacks.append(callback)
        try:
            yield
        finally:
            self._remove(callback)

    def _remove(self, callback: Watch) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._callbacks.remove(callback)


LISTENERS = Listeners()
"""This process's listeners: ``nightly run``'s display subscribes, test steps publish."""


def relay(log: Callable[[str], None], every_s: float = 5.0) -> Watch:
    """A test step's ``watch``: every report to this process's listeners, and one line to
    ``log`` every ``every_s`` seconds (and when the phase changes)."""
    last: dict[str, float] = {}

    def watch(progress: TestProgress) -> None:
        LISTENERS.publish(progress)
        now = time.monotonic()
        if now - last.get(progress.phase, -every_s) >= every_s:
            last[progress.phase] = now
            log(progress.line())

    return watch
