"""The reference messaging platform on the embedded stack.

After PostgreSQL and Redis are ready the process factory migrates the schema, seeds the
users, and hands the stack three processes: the API (through both fault proxies), the
dispatcher (PostgreSQL through its proxy, Redis through a proxy of its own,
``redis-dispatcher``) and the consumer (Redis through ``redis-consumer``), so a test can
partition one process from a datastore. The stack starts them in order, waits for each
READY line, and stops them all on exit, on error and on signals.

Process control for the chaos tests (Tests 08–11), by the stack's own handles, never by
name (``stack.process_control`` says what each signal reaches)::

    platform.process_names()          # api, dispatcher, consumer, postgres, redis,
                                      # proxy-postgres, proxy-redis
    platform.pids()                   # name -> current pid (``endpoints.pids``: at start)
    platform.signal("consumer", signal.SIGKILL)
    platform.restart("consumer")      # -> new pid, once READY again
    platform.is_running("consumer")
    platform.link_controls()          # proxy name -> its server's control URL: postgres,
                                      # redis, redis-dispatcher, redis-consumer
    platform.datastores()             # direct PostgreSQL DSN (superuser) and Redis URL

With its stack, a Platform is the suite's ``chaos.backend.ChaosBackend`` (``target()``
hands it out as ``Target.chaos``).

Addresses survive restarts: the API's HTTP port and the workers' metrics ports are
chosen before the first start and written into their config file / argv (an
``http_port`` override is kept as given), so ``base_url``, ``ws_url`` and
``metrics_urls`` stay valid; PostgreSQL, Redis and the proxies keep theirs (the stack).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from nightly_pipeline.chaos.control import ProxyControl
from nightly_pipeline.suite.errors import ConfigurationError
from nightly_pipeline.suite.target import Target
from nightly_pipeline.testbed import migrate
from nightly_pipeline.testbed.config import TestbedConfig
from nightly_pipeline.testbed.next_migration import next_migration
from nightly_pipeline.testbed.seed import seed_users
from nightly_pipeline.testbed.stack import (
    EmbeddedStack,
    Endpoints,
    ProcessSpec,
    ReadyLine,
    StackConfig,
)
from nightly_pipeline.testbed.stack.probes import free_port

if TYPE_CHECKING:
    from nightly_pipeline.testbed.stack.process_control import ProcessControl

READY = r"READY (\d+)"
REDIS_PROXIES = ("redis", "redis-dispatcher", "redis-consumer")
WATCHED_PROCESSES = ("api", "dispatcher", "consumer")
"""Whose memory the suite watches (PostgreSQL's RSS grows as it touches shared buffers,
which is not a leak)."""
DEFAULT_PASSWORD = "nightly-load-password"
LAUNCHER_FIELDS = ("pg_dsn", "redis_url")
"""TestbedConfig fields the launcher sets from the stack's addresses: never overridden."""
KNOB_TYPES: Mapping[str, tuple[type, ...]] = {
    "bool": (bool,),
    "int": (int,),
    "float": (int, float),
    "float | None": (int, float, type(None)),
    "str": (str,),
}


def check_overrides(overrides: Mapping[str, Any]) -> None:
    """``ConfigurationError`` listing every override that is not a ``TestbedConfig``
    field the launcher leaves alone (its fault knobs: ``testbed/CONTRACT.md``), or whose
    value is not of the field's type; before anything starts, so a typo never runs a
    healthy platform in place of the broken one that was asked for."""
    fields = {f.name: f for f in dataclasses.fields(TestbedConfig) if f.name not in LAUNCHER_FIELDS}
    problems = []
    for name, value in overrides.items():
        if name not in fields:
            problems.append(f"{name!r} is not a testbed knob")
            continue
        kinds = KNOB_TYPES.get(str(fields[name].type), (object,))
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            problems.append(f"{name} must be {fields[name].type}, got {value!r}")
    if problems:
        raise ConfigurationError(
            f"testbed knobs: {'; '.join(problems)} (the knobs: {', '.join(sorted(fields))}; "
            "see nightly_pipeline/testbed/CONTRACT.md)"
        )


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
    stack: ProcessControl | None = field(default=None, repr=False, compare=False)
    """The running stack's process control (None: a Platform built without its stack)."""
    own_proxies: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    """The per-process Redis proxies created on the Redis proxy's server: name ->
    (listen, upstream); created again when that server restarts."""

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
            pids={name: pid for name, pid in self.pids().items() if name in WATCHED_PROCESSES},
            chaos=self if self.stack is not None else None,
            migration=next_migration(self.config.next_migration, self.endpoints.postgres_dsn),
        )

    # ------------------------------------------------------------ process control

    def process_names(self) -> tuple[str, ...]:
        """The processes ``signal`` and ``restart`` accept."""
        return self._control().process_names()

    def pids(self) -> dict[str, int]:
        """Name -> pid of each process's current start (changes with ``restart``)."""
        if self.stack is None:
            return dict(self.endpoints.pids)
        return self.stack.pids()

    def is_running(self, name: str) -> bool:
        return self._control().is_running(name)

    def signal(self, name: str, sig: int) -> int:
        """Send ``sig`` to ``name`` by its handle; the pid signalled. Raises
        ``ProcessNotRunningError`` (naming the fix) when it is not running."""
        return self._control().signal(name, sig)

    def restart(self, name: str) -> int:
        """Stop ``name`` if alive, start it again at the same address, wait until ready;
        the new pid. The Redis proxy's server comes back with its per-process proxies."""
        pid = self._control().restart(name)
        if name == "proxy-redis":
            with ProxyControl(self.endpoints.redis_proxy_control, proxy="redis") as control:
                for proxy, (listen, upstream) in self.own_proxies.items():
                    control.create_proxy(proxy, upstream, listen)
        return pid

    def link_controls(self) -> dict[str, str]:
        """Proxy name -> the control URL (Toxiproxy-compatible) of the server it runs on:
        ``postgres`` and ``redis`` (the API's links; the dispatcher's PostgreSQL too),
        ``redis-dispatcher`` and ``redis-consumer`` (theirs to Redis)."""
        ep = self.endpoints
        redis = {name: ep.redis_proxy_control for name in REDIS_PROXIES}
        return {"postgres": ep.postgres_proxy_control, **redis}

    def datastores(self) -> dict[str, str]:
        """Direct addresses, bypassing the proxies: a superuser DSN and a Redis URL."""
        return {"postgres": self.endpoints.postgres_dsn, "redis": self.endpoints.redis_url}

    def _control(self) -> ProcessControl:
        if self.stack is None:
            raise RuntimeError(
                "this Platform has no process control: get it from embedded_platform()"
            )
        return self.stack


class PlatformProcesses:
    """The stack's process factory: migrate, seed, then the three testbed processes."""

    def __init__(self, settings: PlatformSettings) -> None:
        self.settings = settings
        self.config: TestbedConfig | None = None
        self.users: dict[str, int] = {}
        self.metrics_ports: dict[str, int] = {}
        self.own_proxies: dict[str, tuple[str, str]] = {}
        self._ports: set[int] = set()  # chosen for this platform, kept distinct

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
        if not self.config.http_port:  # pinned, so a restarted API answers at the same URL
            self.config = dataclasses.replace(self.config, http_port=self._free_port())
        if not (self.config.row_level_security and self.config.access_control):
            migrate.disable_row_level_security(ep.postgres_dsn)
        config_dir = ep.run_dir / "config"
        config_dir.mkdir(exist_ok=True)
        specs = [self._spec(config_dir, "api", self.config)]
        for kind in ("dispatcher", "consumer"):  # each through a Redis proxy of its own
            own = dataclasses.replace(self.config, redis_url=self._redis_proxy(ep, kind))
            specs.append(self._spec(config_dir, kind, own))
        return specs

    def _redis_proxy(self, ep: Endpoints, kind: str) -> str:
        """A proxy named ``redis-<kind>`` on the Redis proxy's server (Toxiproxy's
        ``POST /proxies``): a partition can then cut one process off Redis, not all."""
        upstream = urlsplit(ep.redis_url)
        name, target = f"redis-{kind}", f"{upstream.hostname}:{upstream.port}"
        with ProxyControl(ep.redis_proxy_control, proxy="redis") as control:
            created = control.create_proxy(name, target)
        self.own_proxies[name] = (created["listen"], target)
        return urlunsplit(upstream._replace(netloc=created["listen"]))

    def _spec(self, config_dir: Any, kind: str, config: TestbedConfig) -> ProcessSpec:
        path = config_dir / f"{kind}.json"
        path.write_text(config.to_json())
        argv = [sys.executable, "-m", f"nightly_pipeline.testbed.{kind}", "--config", str(path)]
        if kind != "api":
            self.metrics_ports[kind] = self._free_port()
            argv += ["--metrics-port", str(self.metrics_ports[kind])]
        return ProcessSpec(kind, argv, ready=ReadyLine(READY), ready_timeout_s=30, stop_timeout_s=6)

    def _free_port(self) -> int:
        """A free loopback port not chosen before for this platform (the ports chosen are
        bound only when their processes start: two picks must not coincide)."""
        while (port := free_port()) in self._ports:
            pass
        self._ports.add(port)
        return port

    def platform(self, ep: Endpoints, stack: ProcessControl | None = None) -> Platform:
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
            stack,
            dict(self.own_proxies),
        )


@contextlib.contextmanager
def embedded_platform(
    stack: StackConfig, settings: PlatformSettings | None = None
) -> Iterator[Platform]:
    """The whole platform up for the ``with`` body; everything stopped afterwards.
    Unknown or ill-typed overrides raise ``ConfigurationError`` before anything starts."""
    settings = settings or PlatformSettings()
    check_overrides(settings.overrides)
    processes = PlatformProcesses(settings)
    running = EmbeddedStack(stack, processes=processes)
    with running as endpoints:
        yield processes.platform(endpoints, running)
