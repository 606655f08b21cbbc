"""What every executor shares: the config contract, the run bounds and the registry.

An executor is a frozen config (validated once, all errors at once) plus a runtime
that carries it out. Configs are plain dataclasses so they pickle across worker
processes; ``for_worker(k, n)`` gives worker ``k`` of ``n`` its share of the load.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Protocol

from nightly_pipeline.loadgen.errors import ConfigError

MAX_DURATION_S = 24 * 3600.0
"""No executor runs longer than a day, whatever its config says."""


@dataclass(frozen=True)
class RunBounds:
    """Limits every executor obeys so that no loop can run away."""

    duration_s: float
    max_iterations: int | None = None
    graceful_stop_s: float = 10.0

    def for_worker(self, index: int, count: int) -> RunBounds:
        """Worker ``index`` of ``count``: the same duration, its share of the iterations."""
        if self.max_iterations is None:
            return self
        return replace(self, max_iterations=split_evenly(self.max_iterations, index, count))

    def errors(self) -> list[str]:
        problems = []
        if not 0 < self.duration_s <= MAX_DURATION_S:
            problems.append(
                f"duration must be in (0, {MAX_DURATION_S:.0f}] s, got {self.duration_s}"
            )
        if self.max_iterations is not None and self.max_iterations < 1:
            problems.append(f"max_iterations must be >= 1, got {self.max_iterations}")
        if not 0 <= self.graceful_stop_s <= 600:
            problems.append(f"graceful_stop must be in [0, 600] s, got {self.graceful_stop_s}")
        return problems


class ExecutorConfig(Protocol):
    """The contract of an executor config (see the modules beside this one)."""

    type_name: ClassVar[str]
    bounds: RunBounds

    def errors(self) -> list[str]: ...

    def for_worker(self, index: int, count: int) -> ExecutorConfig: ...


def validate(config: ExecutorConfig) -> None:
    """Raise one ConfigError that lists every problem of ``config``."""
    problems = config.errors()
    if problems:
        listing = "\n  - ".join(problems)
        raise ConfigError(f"invalid {config.type_name} executor config:\n  - {listing}")


REGISTRY: dict[str, Callable[..., ExecutorConfig]] = {}


def register(cls: Any) -> Any:
    """Class decorator: make an executor config constructible by its k6 type name."""
    REGISTRY[cls.type_name] = cls
    return cls


def split_evenly(total: int, index: int, count: int) -> int:
    """Worker ``index``'s share of ``total`` units so that the shares add up exactly."""
    return total // count + (1 if index < total % count else 0)
