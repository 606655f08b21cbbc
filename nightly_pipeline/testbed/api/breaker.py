"""The circuit breaker in front of each storage adapter (``pg``, ``redis``, and the
probes' ``stream`` and ``cache``), and how storage failures are counted.

    closed ──(failures consecutive failures)──▶ open ──(reset_s)──▶ half_open
      ▲                                           ▲                    │ one trial call
      └───────────── trial succeeded ─────────────┴── trial failed ────┘

While ``open`` every call fails fast with :class:`BreakerOpen` (an answer in
microseconds instead of a pool or socket timeout per request). ``half_open`` lets one
trial call through at a time and fails the others fast: under load, a still-broken
dependency costs one timeout per ``reset_s``, not one per request. A trial that never
reports (its request was cancelled) is given up after ``reset_s`` and another is let
through. Transitions are counted in
``storage_circuit_breaker_transitions_total{adapter,state}``; failures in
``storage_errors_total{type}`` with ``type`` one of :data:`ERROR_TYPES`.

``enabled=False`` (the ``storage_breaker`` fault knob) never opens and counts nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import asyncpg

from nightly_pipeline.testbed.metrics import Counter

BREAKER_TRANSITIONS = Counter(
    "storage_circuit_breaker_transitions_total",
    "Circuit breaker state changes",
    ["adapter", "state"],
)
ERRORS = Counter(
    "storage_errors_total",
    "Storage operation failures: TimeoutError, ConnectionError, BreakerOpen (failed fast)",
    ["type"],
)
ERROR_TYPES = ("TimeoutError", "ConnectionError", "BreakerOpen")
_TIMEOUTS: tuple[type[BaseException], ...] = (
    TimeoutError,  # pool acquire, asyncpg command_timeout, redis socket timeout
    asyncpg.exceptions.QueryCanceledError,  # statement_timeout, pg_cancel_backend
    asyncpg.exceptions.LockNotAvailableError,  # lock_timeout
)


def error_type(exc: BaseException) -> str:
    """The ``storage_errors_total`` label of a dependency failure."""
    if isinstance(exc, BreakerOpen):
        return "BreakerOpen"
    if isinstance(exc, _TIMEOUTS) or "Timeout" in type(exc).__name__:
        return "TimeoutError"  # redis.exceptions.TimeoutError is not a builtin TimeoutError
    return "ConnectionError"


def count_error(exc: BaseException) -> str:
    kind = error_type(exc)
    ERRORS.labels(type=kind).inc()
    return kind


class BreakerOpen(Exception):
    def __init__(self, adapter: str) -> None:
        super().__init__(f"{adapter} circuit breaker open")
        self.adapter = adapter


class CircuitBreaker:
    def __init__(
        self,
        adapter: str,
        failures: int,
        reset_s: float,
        clock: Callable[[], float] = time.monotonic,
        enabled: bool = True,
    ) -> None:
        self.adapter = adapter
        self.threshold = max(1, failures)
        self.reset_s = reset_s
        self.clock = clock
        self.enabled = enabled
        self.state = "closed"
        self.consecutive = 0
        self.opened_at = 0.0
        self.trial_at = 0.0

    def _to(self, state: str) -> None:
        if state != self.state:
            self.state = state
            BREAKER_TRANSITIONS.labels(adapter=self.adapter, state=state).inc()

    def before_call(self) -> None:
        """Raise :class:`BreakerOpen` unless this call may go to the dependency."""
        if self.state == "closed" or not self.enabled:
            return
        now = self.clock()
        if self.state == "open":
            if now - self.opened_at < self.reset_s:
                raise BreakerOpen(self.adapter)
            self._to("half_open")
        elif now - self.trial_at < self.reset_s:  # half_open: a trial is in flight
            raise BreakerOpen(self.adapter)
        self.trial_at = now

    def success(self) -> None:
        self.consecutive = 0
        self._to("closed")

    def failure(self) -> None:
        if not self.enabled:
            return
        self.consecutive += 1
        if self.state == "half_open" or (
            self.state == "closed" and self.consecutive >= self.threshold
        ):
            self.opened_at = self.clock()
            self._to("open")
