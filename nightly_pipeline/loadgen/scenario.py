"""The scenario contract: what the engine runs on each iteration.

A scenario is a picklable object (it crosses into worker processes) with an async
``iteration(vu)``; ``setup``/``teardown`` run once per worker process. Keep state
that must be per worker (clients, tokens) in ``setup``, not in ``__init__``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from nightly_pipeline.loadgen.vu import Vu


@runtime_checkable
class Scenario(Protocol):
    async def iteration(self, vu: Vu) -> None: ...


async def call_setup(scenario: object, worker: int, workers: int) -> None:
    setup = getattr(scenario, "setup", None)
    if setup is not None:
        await setup(worker, workers)


async def call_teardown(scenario: object) -> None:
    teardown = getattr(scenario, "teardown", None)
    if teardown is not None:
        await teardown()


class GetPath:
    """The simplest scenario: one GET per iteration (used by benchmarks and tests)."""

    def __init__(self, path: str = "/", tags: dict[str, str] | None = None) -> None:
        self.path = path
        self.tags = tags

    async def iteration(self, vu: Vu) -> None:
        await vu.http.get(self.path, tags=self.tags)
