"""The embedded platform for one run that may never need it: started on first use, each
attempt in its own directory, everything stopped on ``close()``.

A Dagster run builds one per run (``TargetResource``) and the test's step asks for the
target: a platform that does not start is then a failure of that step, retried per the
test's policy, and steps that never ask start nothing. ``platform()`` is the same start
with the platform's process control (``signal``, ``restart``: the chaos tests).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Generic, Protocol, Self, TypeVar

from nightly_pipeline.suite.errors import ConfigurationError, InfrastructureError
from nightly_pipeline.suite.target import Target
from nightly_pipeline.testbed.embedded import Platform, PlatformSettings, embedded_platform
from nightly_pipeline.testbed.stack import StackConfig
from nightly_pipeline.testbed.stack.owner import live_owner


class EmbeddedStartError(InfrastructureError):
    """The embedded platform did not start; the message names the attempt, the logs and
    the cause, and everything the attempt had started is stopped."""


class _HasTarget(Protocol):
    def target(self) -> Target: ...


P = TypeVar("P", bound=_HasTarget)


class StartedOnFirstUse(Generic[P]):
    """A platform started by ``_start`` the first time it is asked for (counted in
    ``attempts``), whose start enters what it must stop into ``_running``; ``close()``
    stops all of it, so the next ask starts a fresh one. The embedded platform and the
    Docker one (``testbed.docker.on_demand``) differ only in ``_start``."""

    def __init__(self) -> None:
        self.attempts = 0
        self._platform: P | None = None
        self._running = contextlib.ExitStack()

    def target(self) -> Target:
        return self.platform().target()

    def platform(self) -> P:
        """The running platform, started here the first time."""
        if self._platform is None:
            self.attempts += 1
            self._platform = self._start()
        return self._platform

    def _start(self) -> P:
        raise NotImplementedError

    def close(self) -> None:
        self._platform = None
        self._running.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class OnDemandPlatform(StartedOnFirstUse[Platform]):
    """``target()`` starts the platform in ``stack_dir`` (then ``stack_dir-attempt2``, ...
    after a failed start) and returns it; ``close()`` stops whatever was started."""

    def __init__(
        self, stack_dir: Path, settings: PlatformSettings, search_path: str | None = None
    ) -> None:
        super().__init__()
        self.stack_dir = stack_dir
        self.settings = settings
        self.search_path = search_path

    def _start(self) -> Platform:
        run_dir = self._run_dir()
        stack = StackConfig(run_dir=run_dir, search_path=self.search_path)
        try:
            platform = self._running.enter_context(embedded_platform(stack, self.settings))
        except ConfigurationError:
            raise  # a bad config or a missing binary: another attempt cannot help
        except Exception as exc:
            raise EmbeddedStartError(
                f"the embedded platform did not start (attempt {self.attempts}; logs in "
                f"{run_dir / 'logs'}; everything it had started is stopped): {exc}"
            ) from exc
        return platform

    def _run_dir(self) -> Path:
        """``stack_dir`` (``-attemptN`` after a failed start); ``-pid<N>`` beside it when
        another live process of the same run has its platform there: a step of a run whose
        executor runs steps in their own processes (Celery workers, the multiprocess
        executor) and a pool that lets two of them run at once."""
        suffix = "" if self.attempts == 1 else f"-attempt{self.attempts}"
        run_dir = self.stack_dir.with_name(self.stack_dir.name + suffix)
        if live_owner(run_dir) not in (None, os.getpid()):
            run_dir = run_dir.with_name(f"{run_dir.name}-pid{os.getpid()}")
        return run_dir
