"""The reference messaging platform on the embedded stack.

After PostgreSQL and Redis are ready the process factory migrates the schema, seeds the
users, and hands the stack three processes: the API (through both fault proxies), the
dispatcher (PostgreSQL and Redis through the proxies, so a test can partition it) and the
consumer (Redis direct). The stack starts them in order, waits for each READY line, and
stops them all on exit, on error and on signals.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from nightly_pipeline.suite.target import Target
from nightly_pipeline.testbed import migrate
from nightly_pipeline.testbed.config import TestbedConfig
from nightly_pipeline.testbed.seed import seed_users
from nightly_pipeline.testbed.stack import (
    EmbeddedStack,
    Endpoints,
    ProcessSpec,
    ReadyLine,
    StackConfig,
)
from nightly_pipeline.testbed.stack.probes import free_port

READY = r"READY (\d+)"
WATCHED_PROCESSES = ("api", "dispatcher", "consumer")
"""Whose memory the suite watches (PostgreSQL's RSS grows as it touches shared buffers,
which is not a leak)."""
DEFAULT_PASSWORD = "nightly-load-password"


@dataclass(frozen=True)
class PlatformSettings:
    users: int = 100
    password: str = DEFAULT_PASSWORD
    password_hash_n: int = 2**14
    overrides: Mapping[str, Any] = field(default_factory=dict)  # TestbedConfig fields


@dataclass(frozen=True)
class Platform:
    endpoints: Endpoints
    config: TestbedConfig
    base_url: str
    ws_url: str
    metrics_urls: Mapping[str, str]
    users: Mapping[str, int]  # username -> id
    password: str

    @property
    def versions(self) -> dict[str, str]:
        return {**self.endpoints.versions, "testbed": self.config.version}

    def target(self) -> Target:
        """What the suite needs of this platform (it implements ``suite.target.Target``)."""
        return Target(
            name="embedded",
            base_url=self.base_url,
            ws_url=self.ws_url,
            metrics_urls=dict(self.metrics_urls),
            users=tuple(self.users),
            password=self.password,
            versions=self.versions,
            pids={name: self.endpoints.pids[name] for name in WATCHED_PROCESSES},
        )


class PlatformProcesses:
    """The stack's process factory: migrate, seed, then the three testbed processes."""

    def __init__(self, settings: PlatformSettings) -> None:
        self.settings = settings
        self.config: TestbedConfig | None = None
        self.users: dict[str, int] = {}
        self.metrics_ports: dict[str, int] = {}

    def __call__(self, ep: Endpoints) -> list[ProcessSpec]:
        s = self.settings
        migrate.apply(ep.postgres_dsn)
        self.users = seed_users(ep.postgres_dsn, s.users, s.password, hash_n=s.password_hash_n)
        config = TestbedConfig(
            pg_dsn=migrate.app_dsn(ep.postgres_proxy_dsn),
            redis_url=ep.redis_proxy_url,
            password_hash_n=s.password_hash_n,
        )
        self.config = dataclasses.replace(config, **s.overrides)
        if not self.config.row_level_security:
            migrate.disable_row_level_security(ep.postgres_dsn)
        config_dir = ep.run_dir / "config"
        config_dir.mkdir(exist_ok=True)
        specs = [self._spec(config_dir, "api", self.config)]
        specs.append(self._spec(config_dir, "dispatcher", self.config))
        direct = dataclasses.replace(self.config, redis_url=ep.redis_url)
        specs.append(self._spec(config_dir, "consumer", direct))
        return specs

    def _spec(self, config_dir: Any, kind: str, config: TestbedConfig) -> ProcessSpec:
        path = config_dir / f"{kind}.json"
        path.write_text(config.to_json())
        argv = [sys.executable, "-m", f"nightly_pipeline.testbed.{kind}", "--config", str(path)]
        if kind != "api":
            self.metrics_ports[kind] = free_port()
            argv += ["--metrics-port", str(self.metrics_ports[kind])]
        return ProcessSpec(kind, argv, ready=ReadyLine(READY), ready_timeout_s=30, stop_timeout_s=6)

    def platform(self, ep: Endpoints) -> Platform:
        assert self.config is not None, "the stack did not call the process factory"
        match = re.search(READY, ep.ready_lines["api"])
        if match is None:
            raise RuntimeError(f"the API's READY line has no port: {ep.ready_lines['api']!r}")
        base = f"http://127.0.0.1:{match.group(1)}"
        metrics = {"api": f"{base}/metrics"}
        metrics |= {k: f"http://127.0.0.1:{p}/metrics" for k, p in self.metrics_ports.items()}
        return Platform(
            ep,
            self.config,
            base,
            f"ws://127.0.0.1:{match.group(1)}/v1/ws",
            metrics,
            dict(self.users),
            self.settings.password,
        )


@contextlib.contextmanager
def embedded_platform(
    stack: StackConfig, settings: PlatformSettings | None = None
) -> Iterator[Platform]:
    """The whole platform up for the ``with`` body; everything stopped afterwards."""
    processes = PlatformProcesses(settings or PlatformSettings())
    with EmbeddedStack(stack, processes=processes) as endpoints:
        yield processes.platform(endpoints)
