"""The reference platform as Docker containers on a network of its own (DESIGN.md §11):
PostgreSQL, Redis, a fault proxy in front of each (the project's Toxiproxy-compatible
proxy, as on the embedded stack, so the link faults and their control URLs are the
same), the API, the dispatcher and the consumer — one container each, from the hermetic
image (``image``), started through the docker SDK.

    with docker_platform(client, DockerPlatformConfig(run_id, run_dir, image)) as platform:
        platform.target()        # suite.target.Target, chaos=platform

Only the API, the workers' metrics, the proxies' control APIs and the datastores are
published, on 127.0.0.1 ports chosen before the first start (a restarted container keeps
them). The host migrates and seeds through the published PostgreSQL port, reusing the
embedded platform's steps (``testbed.migrate``, ``testbed.seed``). Every container and
the network carry the owner's labels (``owner``): removed on exit, on error and on
Ctrl-C, and reaped at the next start if the owner died. As the embedded platform, it is
a ``chaos.backend.ChaosBackend``: signals go to each container's main process (the
server itself: ``entry`` execs it), SIGSTOP/SIGCONT freeze and thaw the container's
cgroup (``docker pause``: every process of it, as a frozen VM), ``restart`` starts the
container again on its own filesystem (PostgreSQL runs crash recovery, Redis replays its
append-only file). Beyond the embedded platform's handles, a container can be cut off
the network, squeezed (``docker update``) and shaped (``tc`` inside it):
``chaos.backend.ContainerBackend``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import signal as signals
import tarfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors

from nightly_pipeline.chaos.control import ProxyControl
from nightly_pipeline.suite.target import Target
from nightly_pipeline.testbed import migrate
from nightly_pipeline.testbed.config import TestbedConfig
from nightly_pipeline.testbed.docker.handles import ContainerHandles
from nightly_pipeline.testbed.docker.owner import owner_labels, reap_dead_platforms
from nightly_pipeline.testbed.embedded import PlatformSettings, check_overrides
from nightly_pipeline.testbed.next_migration import next_migration
from nightly_pipeline.testbed.seed import seed_users
from nightly_pipeline.testbed.stack.errors import ProcessNotRunningError, UnknownProcessError
from nightly_pipeline.testbed.stack.launcher import _deferred_signals
from nightly_pipeline.testbed.stack.postgres import (
    SUPERUSER,
    answers_select_1,
    create_database,
)
from nightly_pipeline.testbed.stack.probes import HOST, free_port, http_ok, redis_ping

log = logging.getLogger(__name__)
PG_PORT, REDIS_PORT, CONTROL_PORT = 5432, 6379, 8474
PROXY_PORTS = {
    "postgres": 15432,
    "redis": 16379,
    "redis-dispatcher": 16380,
    "redis-consumer": 16381,
}
API_PORT, METRICS_PORT = 8080, 9100
WATCHED = ("api", "dispatcher", "consumer")
PY = "/opt/python/bin/python3"
HOME = "/home/nightly"


class DockerPlatformError(RuntimeError):
    """The Docker platform could not start; the message names the container and its log."""


@dataclass(frozen=True)
class DockerPlatformConfig:
    run_id: str
    run_dir: Path  # container logs are saved here before removal
    image: str
    settings: PlatformSettings = field(default_factory=PlatformSettings)
    database: str = "nightly"
    max_connections: int = 200
    ready_timeout_s: float = 60.0
    stop_timeout_s: int = 10


@dataclass
class Service:
    name: str
    command: list[str]
    ports: dict[int, int]  # container port -> 127.0.0.1 port
    ready: Callable[[], bool]
    files: dict[str, str] = field(default_factory=dict)  # name in HOME -> text
    container: docker.models.containers.Container | None = None


class DockerPlatform(ContainerHandles):
    """A running Docker platform (``docker_platform`` starts and stops it)."""

    def __init__(self, client: docker.DockerClient, config: DockerPlatformConfig) -> None:
        check_overrides(config.settings.overrides)
        self.client = client
        self.config = config
        self.labels = owner_labels(config.run_id)
        self.network_name = f"nightly-{config.run_id}"
        self.services: dict[str, Service] = {}
        self.users: dict[str, int] = {}
        self.testbed: TestbedConfig | None = None
        self.reaped: list[str] = []
        self.start_seconds: float | None = None
        self._network: docker.models.networks.Network | None = None
        self._ports: set[int] = set()

    # ------------------------------------------------------------ start / stop

    def start(self) -> None:
        t0 = time.monotonic()
        self.reaped = reap_dead_platforms(self.client)
        try:
            self._network = self.client.networks.create(
                self.network_name, driver="bridge", labels=self.labels
            )
            self._start_datastores()
            self._prepare_database()
            for service in self._testbed_services():
                self._run(service)
            for service in list(self.services.values())[-3:]:
                self._wait(service)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - t0
        log.info("docker platform %s up in %.1f s", self.config.run_id, self.start_seconds)

    def stop(self) -> None:
        """Remove every container (logs saved first) and the network; idempotent."""
        with _deferred_signals():
            logs = self.config.run_dir / "logs"
            for service in reversed(list(self.services.values())):
                container, service.container = service.container, None
                if container is None:
                    continue
                with contextlib.suppress(docker.errors.APIError, OSError):
                    logs.mkdir(parents=True, exist_ok=True)
                    (logs / f"{service.name}.log").write_bytes(container.logs())
                with contextlib.suppress(docker.errors.NotFound):
                    container.remove(force=True, v=True)
            if self._network is not None:
                with contextlib.suppress(docker.errors.NotFound):
                    self._network.remove()
                self._network = None

    def _start_datastores(self) -> None:
        entry = [PY, "-m", "nightly_pipeline.testbed.docker.entry"]
        pg, rd = self._port(), self._port()
        cfg = self.config
        pg_args = ["--max-connections", str(cfg.max_connections)]
        self._run(
            Service(
                "postgres",
                [*entry, "postgres", "--port", str(PG_PORT), *pg_args],
                {PG_PORT: pg},
                lambda: answers_select_1(pg),
            )
        )
        self._run(
            Service(
                "redis",
                [*entry, "redis", "--port", str(REDIS_PORT)],
                {REDIS_PORT: rd},
                lambda: redis_ping(rd),
            )
        )
        for name, upstream in (("postgres", PG_PORT), ("redis", REDIS_PORT)):
            control = self._port()
            argv = [PY, "-m", "nightly_pipeline.chaos.proxy"]
            argv += ["--listen", f"0.0.0.0:{PROXY_PORTS[name]}", "--upstream", f"{name}:{upstream}"]
            argv += ["--control-port", str(CONTROL_PORT), "--name", name]
            argv += ["--allow-host", "0.0.0.0", "--allow-host", name]
            url = f"http://{HOST}:{control}"
            self._run(
                Service(
                    f"proxy-{name}",
                    argv,
                    {CONTROL_PORT: control},
                    lambda u=url: http_ok(f"{u}/proxies"),
                )
            )
        for service in list(self.services.values()):
            self._wait(service)
        self._own_redis_proxies()

    def _own_redis_proxies(self) -> None:
        """``redis-dispatcher`` and ``redis-consumer`` on the Redis proxy's server, as on
        the embedded platform: a partition can cut one process off Redis, not all."""
        with ProxyControl(self.link_controls()["redis"], proxy="redis") as control:
            for kind in ("dispatcher", "consumer"):
                name = f"redis-{kind}"
                control.create_proxy(name, f"redis:{REDIS_PORT}", f"0.0.0.0:{PROXY_PORTS[name]}")

    def _prepare_database(self) -> None:
        s, dsn = self.config.settings, self.datastores()["postgres"]
        create_database(self._host_port("postgres", PG_PORT), self.config.database)
        migrate.apply(dsn)
        self.users = seed_users(dsn, s.users, s.password, hash_n=s.password_hash_n)
        proxy_dsn = f"postgresql://{SUPERUSER}@proxy-postgres:{PROXY_PORTS['postgres']}/{self.config.database}"
        config = TestbedConfig(
            pg_dsn=migrate.app_dsn(proxy_dsn),
            redis_url=f"redis://proxy-redis:{PROXY_PORTS['redis']}/0",
            password_hash_n=s.password_hash_n,
        )
        config = dataclasses.replace(config, **s.overrides)
        self.testbed = dataclasses.replace(config, http_host="0.0.0.0", http_port=API_PORT)
        if not (config.row_level_security and config.access_control):
            migrate.disable_row_level_security(dsn)

    def _testbed_services(self) -> list[Service]:
        assert self.testbed is not None
        api_port = self._port()
        base = f"http://{HOST}:{api_port}"
        services = [
            Service(
                "api",
                [PY, "-m", "nightly_pipeline.testbed.api", "--config", f"{HOME}/api.json"],
                {API_PORT: api_port},
                lambda: http_ok(f"{base}/healthz"),
                {"api.json": self.testbed.to_json()},
            )
        ]
        for kind in ("dispatcher", "consumer"):
            own = dataclasses.replace(
                self.testbed, redis_url=f"redis://proxy-redis:{PROXY_PORTS[f'redis-{kind}']}/0"
            )
            port = self._port()
            module = ["nightly_pipeline.testbed.docker.entry", "consumer", "--"]
            if kind == "dispatcher":
                module = ["nightly_pipeline.testbed.dispatcher"]
            argv = [PY, "-m", *module, "--config", f"{HOME}/{kind}.json"]
            argv += ["--metrics-port", str(METRICS_PORT), "--metrics-host", "0.0.0.0"]
            url = f"http://{HOST}:{port}/metrics"
            services.append(
                Service(
                    kind,
                    argv,
                    {METRICS_PORT: port},
                    lambda u=url: http_ok(u),
                    {f"{kind}.json": own.to_json()},
                )
            )
        return services

    def _run(self, service: Service) -> None:
        """Create the container (labelled, on the network under its service name), put its
        files in, start it; ``_wait`` then waits for readiness."""
        self.services[service.name] = service
        endpoint = self.client.api.create_endpoint_config(aliases=[service.name])
        service.container = self.client.containers.create(
            self.config.image,
            service.command,
            name=f"nightly-{self.config.run_id}-{service.name}",
            hostname=service.name,
            labels={**self.labels, "org.nightly-pipeline.service": service.name},
            network=self.network_name,
            networking_config={self.network_name: endpoint},
            ports={f"{c}/tcp": (HOST, h) for c, h in service.ports.items()},
            cap_add=["NET_ADMIN"],
            shm_size="128m",
        )
        if service.files:
            service.container.put_archive(HOME, _tar(service.files))
        service.container.start()

    def _wait(self, service: Service) -> None:
        deadline = time.monotonic() + self.config.ready_timeout_s
        assert service.container is not None
        while time.monotonic() < deadline:
            service.container.reload()
            if service.container.status not in ("created", "running"):
                raise self._failed(service, f"exited ({service.container.status})")
            with contextlib.suppress(OSError, ConnectionError, Exception):
                if service.ready():
                    return
            time.sleep(0.1)
        raise self._failed(service, f"not ready within {self.config.ready_timeout_s:.0f} s")

    def _failed(self, service: Service, why: str) -> DockerPlatformError:
        tail = ""
        if service.container is not None:
            with contextlib.suppress(docker.errors.APIError):
                tail = service.container.logs(tail=30).decode(errors="replace")
        return DockerPlatformError(f"container {service.name}: {why}; its last log lines:\n{tail}")

    def _port(self) -> int:
        while (port := free_port()) in self._ports:
            pass
        self._ports.add(port)
        return port

    def _host_port(self, name: str, container_port: int) -> int:
        return self.services[name].ports[container_port]

    # ------------------------------------------------------------ the suite's view

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self._host_port('api', API_PORT)}"

    def metrics_urls(self) -> dict[str, str]:
        urls = {"api": f"{self.base_url}/metrics"}
        for kind in ("dispatcher", "consumer"):
            urls[kind] = f"http://{HOST}:{self._host_port(kind, METRICS_PORT)}/metrics"
        return urls

    def versions(self) -> dict[str, str]:
        assert self.testbed is not None
        return {"testbed": self.testbed.version, "platform": "docker", "image": self.config.image}

    def target(self) -> Target:
        """What the suite needs of this platform (``suite.target.Target``)."""
        assert self.testbed is not None
        pids = {n: p for n, p in self.pids().items() if n in WATCHED}
        return Target(
            name="docker",
            base_url=self.base_url,
            ws_url=f"ws://{HOST}:{self._host_port('api', API_PORT)}/v1/ws",
            metrics_urls=self.metrics_urls(),
            users=tuple(self.users),
            password=self.config.settings.password,
            versions=self.versions(),
            pids=pids,
            chaos=self,
            migration=next_migration(self.testbed.next_migration, self.datastores()["postgres"]),
        )

    # ------------------------------------------------------------ ChaosBackend

    def process_names(self) -> tuple[str, ...]:
        return tuple(self.services)

    def pids(self) -> dict[str, int]:
        """Name -> host pid of each running container's main process (the daemon is on
        this host; a remote daemon's pids mean nothing here)."""
        out = {}
        for name, service in self.services.items():
            if service.container is not None:
                service.container.reload()
                pid = int(service.container.attrs["State"].get("Pid") or 0)
                if pid:
                    out[name] = pid
        return out

    def is_running(self, name: str) -> bool:
        container = self.container(name)
        container.reload()
        return container.status in ("running", "paused")

    def signal(self, name: str, sig: int) -> int:
        """SIGSTOP/SIGCONT pause/unpause the container; other signals go to its main
        process (``docker kill --signal``). The pid signalled."""
        container = self.container(name)
        if not self.is_running(name):
            raise ProcessNotRunningError(name, "its container is not running")
        pid = int(container.attrs["State"].get("Pid") or 0)
        if sig == signals.SIGSTOP:
            container.pause()
        elif sig == signals.SIGCONT:
            if container.status == "paused":
                container.unpause()
        else:
            container.kill(signal=int(sig))
        return pid

    def restart(self, name: str) -> int:
        """Stop the container if it runs, start it again (same addresses), wait until
        ready; the new pid. The Redis proxy comes back with its per-process proxies."""
        container = self.container(name)
        container.reload()
        if container.status == "paused":
            container.unpause()
        if container.status in ("running", "paused"):
            container.stop(timeout=self.config.stop_timeout_s)
        container.start()
        self._wait(self.services[name])
        if name == "proxy-redis":
            self._own_redis_proxies()
        return self.pids().get(name, 0)

    def link_controls(self) -> dict[str, str]:
        """Proxy name -> the control URL (Toxiproxy-compatible) of its server."""
        pg = f"http://{HOST}:{self._host_port('proxy-postgres', CONTROL_PORT)}"
        redis = f"http://{HOST}:{self._host_port('proxy-redis', CONTROL_PORT)}"
        return {"postgres": pg, "redis": redis, "redis-dispatcher": redis, "redis-consumer": redis}

    def datastores(self) -> dict[str, str]:
        pg, rd = self._host_port("postgres", PG_PORT), self._host_port("redis", REDIS_PORT)
        return {
            "postgres": f"postgresql://{SUPERUSER}@{HOST}:{pg}/{self.config.database}",
            "redis": f"redis://{HOST}:{rd}/0",
        }

    def container(self, name: str) -> docker.models.containers.Container:
        service = self.services.get(name)
        if service is None or service.container is None:
            raise UnknownProcessError(name, tuple(self.services))
        return service.container


@contextlib.contextmanager
def docker_platform(
    client: docker.DockerClient, config: DockerPlatformConfig
) -> Iterator[DockerPlatform]:
    """The platform up for the ``with`` body; every container and the network removed
    afterwards, on errors and on Ctrl-C."""
    platform = DockerPlatform(client, config)
    platform.start()
    try:
        yield platform
    finally:
        platform.stop()


def _tar(files: Mapping[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.gid = len(data), 0o644, 1000, 1000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
