"""Recovery as numbers: the platform's steady state sampled through a chaos test, and
per fault the time to detect it and the time to recover from it.

A sample is steady when ``/readyz`` answers 200 and the load's latest second is clean
(no new failed request, deliveries pending below a bound): what a user would notice.
Time to detect: injection → first unsteady sample. Time to recover: revert → the first
of ``consecutive`` steady samples in a row (None if it never came within the test).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nightly_pipeline.chaos.session import FaultWindow

SAMPLE_EVERY_S = 0.25
MAX_SAMPLES = 4 * 24 * 3600  # a day at 4 a second: bounded whatever the profile


@dataclass(frozen=True)
class Sample:
    at: float  # perf_counter
    readyz: int  # 0: unreachable
    steady: bool


@dataclass(frozen=True)
class Recovery:
    fault: str
    detected_after_s: float | None
    recovered_after_s: float | None


class SteadyStateWatcher:
    """Samples ``readyz()`` and ``clean()`` every ``SAMPLE_EVERY_S`` on its own thread."""

    def __init__(self, readyz: Callable[[], int], clean: Callable[[], bool]) -> None:
        self._readyz = readyz
        self._clean = clean
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="steady-state", daemon=True)

    def __enter__(self) -> SteadyStateWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def wait(self, done: Callable[[Sequence[Sample]], bool], bound_s: float) -> None:
        """Keep watching until ``done(samples)`` or ``bound_s`` seconds have passed."""
        deadline = time.monotonic() + bound_s
        while not done(list(self.samples)) and time.monotonic() < deadline:
            if not self._thread.is_alive():
                return
            time.sleep(SAMPLE_EVERY_S)

    def _run(self) -> None:
        while not self._stop.is_set() and len(self.samples) < MAX_SAMPLES:
            status = self._readyz()
            self.samples.append(
                Sample(time.perf_counter(), status, status == 200 and self._clean())
            )
            self._stop.wait(SAMPLE_EVERY_S)


def recovery_of(window: FaultWindow, samples: Sequence[Sample], consecutive: int = 3) -> Recovery:
    detected = next((s.at for s in samples if s.at >= window.injected_at and not s.steady), None)
    recovered = None
    if window.reverted_at is not None:
        after = [s for s in samples if s.at >= window.reverted_at]
        for i in range(len(after) - consecutive + 1):
            if all(s.steady for s in after[i : i + consecutive]):
                recovered = after[i].at
                break
    return Recovery(
        window.name,
        None if detected is None else detected - window.injected_at,
        None if recovered is None or window.reverted_at is None else recovered - window.reverted_at,
    )
