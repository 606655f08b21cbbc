"""How long, and how often, the store waits for a database another process holds.

One budget covers one store operation (file lock wait plus DuckDB open retries), so an
operation gives up after a bounded time and a bounded number of attempts, whichever
comes first, instead of hanging a nightly run behind a stuck process.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Limits for waiting on a busy store; the defaults suit a nightly batch."""

    timeout_s: float = 30.0
    max_attempts: int = 60
    initial_backoff_s: float = 0.01
    max_backoff_s: float = 0.5

    def __post_init__(self) -> None:
        errors = []
        if self.timeout_s < 0:
            errors.append(f"timeout_s must be >= 0, got {self.timeout_s}")
        if self.max_attempts < 1:
            errors.append(f"max_attempts must be >= 1, got {self.max_attempts}")
        if not 0 < self.initial_backoff_s <= self.max_backoff_s:
            errors.append(
                "need 0 < initial_backoff_s <= max_backoff_s, got "
                f"{self.initial_backoff_s} and {self.max_backoff_s}"
            )
        if errors:
            raise ValueError("; ".join(errors))

    def start(self, clock: Callable[[], float] = time.monotonic) -> Budget:
        """A fresh budget for one operation."""
        return Budget(self, clock)


class Budget:
    """The time and attempts left to one operation."""

    def __init__(self, policy: RetryPolicy, clock: Callable[[], float]) -> None:
        self._policy = policy
        self._clock = clock
        self._started = clock()
        self._retries = 0

    def elapsed(self) -> float:
        return self._clock() - self._started

    def remaining(self) -> float:
        return max(0.0, self._policy.timeout_s - self.elapsed())

    def next_delay(self) -> float | None:
        """Seconds to sleep before the next attempt, or None when the budget is spent."""
        self._retries += 1
        remaining = self.remaining()
        if self._retries >= self._policy.max_attempts or remaining <= 0:
            return None
        ceiling = min(
            self._policy.max_backoff_s,
            self._policy.initial_backoff_s * 2 ** min(self._retries - 1, 30),
        )
        # Full jitter keeps two waiting processes from retrying in lockstep.
        return min(remaining, random.uniform(ceiling / 2, ceiling))
