"""The platform under test, its version endpoint and the night's profile, as Dagster
resources: thin adapters over ``suite`` and ``testbed``."""

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import httpx
from pydantic import Field, PrivateAttr

from nightly_pipeline.home import Home
from nightly_pipeline.loadgen.safety import check_target
from nightly_pipeline.suite.errors import ConfigurationError
from nightly_pipeline.suite.profiles import PROFILES, Profile, ProfileName
from nightly_pipeline.suite.target import Target, load_target
from nightly_pipeline.testbed.docker.on_demand import DockerOnDemand
from nightly_pipeline.testbed.embedded import PlatformSettings
from nightly_pipeline.testbed.on_demand import OnDemandPlatform
from nightly_pipeline.testbed.stack.parent_watch import die_with_multiprocessing_parent


class TargetResource(dg.ConfigurableResource):
    """``embedded``: the reference platform, started for the run on this machine the first
    time a step asks for it (``testbed.on_demand``) and stopped after the run; ``docker``:
    the same platform in Docker containers (``testbed.docker``); otherwise the path of an
    external target file (README: external target mode)."""

    target: str = "embedded"
    entry: str = ""
    """Which target of a file listing several (``targets``): its name."""
    users: int = 100
    home: str = ""  # default: $NIGHTLY_HOME; the platform runs in <home>/stack/<run id>
    api_port: int = 0
    """Port of the embedded platform's HTTP API; 0: a free one (set it to reach the API
    from a browser or curl while a run is going)."""
    password_hash_n: int = 2**10
    """scrypt cost of the embedded platform's passwords. 2**14 (realistic, ~51 ms a hash
    here) sustains about 25 logins/s on 2 cores; Test 06 asks 200/s, so the embedded
    default is 2**10. Raise it on bigger machines."""
    testbed_knobs: str = Field(
        default="",
        description="A JSON object of the embedded platform's fault knobs "
        '(testbed/CONTRACT.md), e.g. {"optimistic_locking": false}: a broken platform, '
        "to prove the suite's checks catch it. Empty: the healthy platform.",
    )

    _external: Target | None = PrivateAttr(default=None)
    _embedded: OnDemandPlatform | DockerOnDemand | None = PrivateAttr(default=None)

    @contextlib.contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Iterator["TargetResource"]:
        # A resource is an entry point: the environment is read here, not below.
        if self.target not in ("embedded", "docker"):
            self._external = load_target(Path(self.target), os.environ, self.entry)
            yield self
            return
        home = Home.at(self.home) if self.home else Home.from_env(os.environ)
        run_id = context.run.run_id if context.run else "adhoc"
        overrides = self.knobs()
        if self.api_port:
            overrides["http_port"] = self.api_port
        settings = PlatformSettings(
            users=self.users, password_hash_n=self.password_hash_n, overrides=overrides
        )
        # A step process of the multiprocess executor owns the stack: it must not outlive
        # a run worker killed by run monitoring (Issue 15), so it dies with it.
        followed = die_with_multiprocessing_parent()
        if followed is not None and context.log is not None:
            context.log.debug(f"this step process dies with its run worker (pid {followed})")
        platform: OnDemandPlatform | DockerOnDemand
        if self.target == "docker":
            platform = DockerOnDemand(
                home.stack / run_id, settings, os.environ.get("DOCKER_HOST"), os.environ.get("PATH")
            )
        else:
            platform = OnDemandPlatform(home.stack / run_id, settings, os.environ.get("PATH"))
        with platform:
            self._embedded = platform
            try:
                yield self
            finally:
                self._embedded = None

    def knobs(self) -> dict[str, object]:
        """``testbed_knobs`` read; their names and types are checked when the platform
        starts (in the test's step: a ``ConfigurationError``, never retried)."""
        try:
            knobs = json.loads(self.testbed_knobs or "{}")
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"testbed_knobs is not JSON: {exc}") from exc
        if not isinstance(knobs, dict):
            raise ConfigurationError(f"testbed_knobs must be a JSON object, got {knobs!r}")
        return knobs

    @property
    def current(self) -> Target:
        """The target; the embedded platform is started here the first time."""
        if self._external is not None:
            return self._external
        if self._embedded is None:
            raise RuntimeError("TargetResource used outside a run (no target started)")
        return self._embedded.target()


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
    """How long and how hard: ``ci``, ``smoke`` or ``nightly`` (never what is checked).
    A launch that does not configure it (a materialisation from the UI, the launchpad
    left as it is) runs ``smoke``, about a minute per test; the 02:10 UTC schedule and
    the target-version sensor configure the scheduled profile (``nightly`` unless
    ``$NIGHTLY_SCHEDULE_PROFILE`` names another). Dagster's config schema refuses any
    other name, in the UI and in run config."""

    name: ProfileName = Field(
        default="smoke",
        description="ci, smoke or nightly. Unconfigured launches (materialising from the UI) "
        "use smoke, about a minute per test; the nightly_suite_0210_utc schedule and the "
        "target_version_change sensor set the scheduled profile (nightly unless "
        "$NIGHTLY_SCHEDULE_PROFILE names another). Set nightly here for the plan's durations.",
    )

    @property
    def profile(self) -> Profile:
        return PROFILES[self.name]
