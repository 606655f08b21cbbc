"""Targets as Dagster resources: the platform under test, and its version endpoint."""

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import httpx
from pydantic import Field, PrivateAttr

from nightly_pipeline.loadgen.safety import check_target
from nightly_pipeline.store import default_store_path
from nightly_pipeline.testbed.stack.errors import BinaryNotFoundError, StackConfigError
from nightly_pipeline.testbed.target import Target, load_target

PLATFORM_PROCESSES = ("api", "dispatcher", "consumer")
"""Whose memory the suite watches on the embedded platform (PostgreSQL's RSS grows as it
touches shared buffers, which is not a leak)."""


class EmbeddedStartError(RuntimeError):
    """The embedded platform did not start: an infrastructure failure, retried per the
    test's RetryPolicy. The message names the attempt, the logs and the cause."""


class TargetResource(dg.ConfigurableResource):
    """``embedded``: the reference platform started for the run on this machine (stopped
    after it); otherwise the path of an external target file (README: external target mode).

    The embedded platform starts on first use inside a step, not when the resource is
    initialised: a stack that fails to start is then a step failure, which the test's
    RetryPolicy retries (Dagster never retries a failed resource initialisation), and
    steps that never ask for the target start nothing.
    """

    target: str = "embedded"
    users: int = 100
    run_root: str = ""  # default: $NIGHTLY_HOME/stack
    api_port: int = 0
    """Port of the embedded platform's HTTP API; 0: a free one (set it to reach the API
    from a browser or curl while a run is going)."""
    password_hash_n: int = 2**10
    """scrypt cost of the embedded platform's passwords. 2**14 (realistic, ~51 ms a hash
    here) sustains about 25 logins/s on 2 cores; Test 06 asks 200/s, so the embedded
    default is 2**10. Raise it on bigger machines."""

    _target: Target | None = PrivateAttr(default=None)
    _pids: dict[str, int] = PrivateAttr(default_factory=dict)
    _running: contextlib.ExitStack | None = PrivateAttr(default=None)
    _stack_dir: Path | None = PrivateAttr(default=None)
    _attempts: int = PrivateAttr(default=0)

    @contextlib.contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Iterator["TargetResource"]:
        if self.target != "embedded":
            # A resource is an entry point: the environment is read here, not below.
            self._target = load_target(Path(self.target), os.environ)
            yield self
            return
        root = Path(self.run_root) if self.run_root else default_store_path(os.environ).parent
        run_id = context.run.run_id if context.run else "adhoc"
        self._stack_dir = root / "stack" / run_id
        with contextlib.ExitStack() as running:
            self._running = running
            try:
                yield self
            finally:
                self._running = None

    def _start_embedded(self) -> None:
        from nightly_pipeline.testbed.embedded import PlatformSettings, embedded_platform
        from nightly_pipeline.testbed.stack import StackConfig

        if self._running is None or self._stack_dir is None:
            raise RuntimeError("TargetResource used outside a run (no target started)")
        self._attempts += 1
        suffix = "" if self._attempts == 1 else f"-attempt{self._attempts}"
        run_dir = self._stack_dir.with_name(self._stack_dir.name + suffix)
        stack = StackConfig(run_dir=run_dir, search_path=os.environ.get("PATH"))
        settings = PlatformSettings(
            users=self.users,
            password_hash_n=self.password_hash_n,
            overrides={"http_port": self.api_port} if self.api_port else {},
        )
        try:
            platform = self._running.enter_context(embedded_platform(stack, settings))
        except (StackConfigError, BinaryNotFoundError):
            raise  # configuration: another attempt cannot help
        except Exception as exc:
            raise EmbeddedStartError(
                f"the embedded platform did not start (attempt {self._attempts}; logs in "
                f"{run_dir / 'logs'}; everything it had started is stopped): {exc}"
            ) from exc
        self._target = platform.target()
        self._pids = {n: platform.endpoints.pids[n] for n in PLATFORM_PROCESSES}

    @property
    def current(self) -> Target:
        """The target; the embedded platform is started here the first time."""
        if self._target is None:
            self._start_embedded()
        assert self._target is not None
        return self._target

    @property
    def pids(self) -> dict[str, int]:
        return dict(self._pids)


class TargetVersionResource(dg.ConfigurableResource):
    """``url`` answers GET with the deployed version: JSON with a ``version`` key, or text.

    Empty ``url``: nothing to watch (the embedded stack's version only changes with this
    package). Only loopback URLs unless the host is in ``allow_hosts``.
    """

    url: str = ""
    allow_hosts: list[str] = Field(default_factory=list)
    timeout_s: float = 5.0

    def current_version(self) -> str:
        """The version the target reports now; raises httpx.HTTPError when unreachable."""
        check_target(self.url, tuple(self.allow_hosts))
        response = httpx.get(self.url, timeout=self.timeout_s)
        response.raise_for_status()
        if response.headers.get("content-type", "").startswith("application/json"):
            return str(response.json()["version"])
        return response.text.strip()


class ProfileResource(dg.ConfigurableResource):
    """How long and how hard: ``ci``, ``smoke`` or ``nightly`` (never what is checked)."""

    name: str = "smoke"
