"""The embedded stack: PostgreSQL and Redis on free loopback ports in a per-run
directory, a fault proxy process in front of each, then the caller's extra processes.

    with EmbeddedStack(StackConfig(run_dir=home / "stack" / run_id)) as ep:
        ep.postgres_proxy_dsn, ep.redis_proxy_url, ep.postgres_proxy_control, ...

Teardown runs on exit, when the body raises (also KeyboardInterrupt) and when a start
fails half-way: extra processes in reverse order, proxies, Redis, PostgreSQL
(``pg_ctl stop -m fast``, SIGKILL fallback); every pid is then verified gone. SIGINT and
SIGTERM arriving during teardown are deferred until it is done, then re-raised.
Signal handlers for a long-running stack are the entry point's job (``up.py``).

A killed owner leaves nothing running: every process is spawned to die with this one
(``spawn``: PDEATHSIG) and recorded in ``owner.json`` (``owner``); each start first reaps
the stacks of dead owners beside its run dir (``reaper``), so what PDEATHSIG could not
reach (another OS, a server that forked off) and their data go at the next start.

A running stack signals and restarts its processes by their handles (``process_names()``,
``pids()``, ``is_running()``, ``signal()``, ``restart()``; see ``process_control``);
teardown stops whatever runs then, restarted or paused. ``Endpoints.pids`` are the pids
of the first start; ``stack.endpoints`` and ``endpoints.json`` follow restarts.

Run directory: ``logs/`` (one log per process), ``postgres/`` (data + socket, unless it
must live under ``system_dir``; see ``privileges``), ``redis/`` (config and append-only
file, see ``redis``), ``endpoints.json``. PostgreSQL's data and Redis's append-only file
are removed after a clean teardown unless ``keep_data``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from nightly_pipeline.testbed.stack.binaries import find_postgres, find_redis
from nightly_pipeline.testbed.stack.config import (
    ProcessSpec,
    ReadyLine,
    ReadyUrl,
    StackConfig,
)
from nightly_pipeline.testbed.stack.errors import (
    PortInUseError,
    StackConfigError,
    TeardownError,
)
from nightly_pipeline.testbed.stack.owner import StackOwner, postmaster_pid
from nightly_pipeline.testbed.stack.postgres import SUPERUSER, PostgresServer, PostgresSettings
from nightly_pipeline.testbed.stack.privileges import (
    RunAs,
    can_traverse,
    ensure_user,
    is_root,
    make_public_dir,
    readable_install,
)
from nightly_pipeline.testbed.stack.probes import HOST, free_port, http_ok, port_in_use
from nightly_pipeline.testbed.stack.process_control import Handle, ProcessControl
from nightly_pipeline.testbed.stack.procs import ManagedProcess
from nightly_pipeline.testbed.stack.reaper import reap_dead_stacks
from nightly_pipeline.testbed.stack.redis import RedisServer, RedisSettings

log = logging.getLogger(__name__)
_PROXY_READY = r"READY listen=\S+:(\d+) control=(\S+)"
_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes; ".s.PGSQL.NNNNN" is appended


@dataclass(frozen=True)
class Endpoints:
    run_dir: Path
    database: str
    postgres_dsn: str  # direct
    postgres_proxy_dsn: str  # through the fault proxy
    postgres_proxy_control: str  # http://127.0.0.1:P (ProxyControl)
    postgres_socket_dir: Path
    postgres_data_dir: Path
    redis_url: str
    redis_proxy_url: str
    redis_proxy_control: str
    versions: Mapping[str, str]  # {"postgres": "16.2", "redis": "6.2.14"}
    pids: Mapping[str, int]  # postgres, redis, proxy-postgres, proxy-redis, extra processes
    logs: Mapping[str, Path]
    ready_lines: Mapping[str, str] = field(default_factory=dict)  # ReadyLine matches

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["run_dir"] = str(self.run_dir)
        out["postgres_socket_dir"] = str(self.postgres_socket_dir)
        out["postgres_data_dir"] = str(self.postgres_data_dir)
        out["logs"] = {k: str(v) for k, v in self.logs.items()}
        return out


ProcessFactory = Callable[[Endpoints], Sequence[ProcessSpec]]


class EmbeddedStack(ProcessControl):
    """Context manager: ``__enter__`` starts everything and returns :class:`Endpoints`;
    while it runs, ``signal()`` / ``restart()`` its processes (``process_control``)."""

    def __init__(
        self, config: StackConfig, processes: Sequence[ProcessSpec] | ProcessFactory = ()
    ) -> None:
        errors = config.validate()
        if not callable(processes):
            errors += [e for spec in processes for e in spec.validate()]
        if errors:
            raise StackConfigError(errors)
        self.config = config
        self._processes = processes
        self._postgres: PostgresServer | None = None
        self._redis: RedisServer | None = None
        self._proxies: dict[str, ManagedProcess] = {}
        self._proxy_ports: dict[str, tuple[int, int]] = {}  # name -> (listen, control)
        self._extras: list[tuple[ProcessSpec, ManagedProcess]] = []
        self._control_lock = threading.RLock()
        self._up = False  # started and not torn down: process control allowed
        self._pg_home_external = False
        self.endpoints: Endpoints | None = None
        self.start_seconds: float | None = None
        self._owner = StackOwner(config.run_dir)
        self.reaped: list[str] = []  # what the start reaped of dead runs' stacks

    def __enter__(self) -> Endpoints:
        return self.start()

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.stop(raise_on_survivors=exc_type is None)

    # ------------------------------------------------------------ start

    def start(self) -> Endpoints:
        t0 = time.monotonic()
        self.reaped = reap_dead_stacks(self.config.run_dir.parent)
        try:
            redis_data = [] if self.config.keep_data else [self.config.run_dir / "redis"]
            self._owner.claim(remove=redis_data)
            self.endpoints = self._start()
            self._up = True
        except BaseException:
            self.stop(raise_on_survivors=False)
            raise
        self.start_seconds = time.monotonic() - t0
        log.info("embedded stack up in %.2f s: %s", self.start_seconds, self.config.run_dir)
        return self.endpoints

    def _start(self) -> Endpoints:
        cfg = self.config
        for what, port in (("postgres", cfg.postgres_port), ("redis", cfg.redis_port)):
            if port and (holder := port_in_use(port)):
                raise PortInUseError(what, port, holder)
        pg_bins = find_postgres(cfg.postgres_bin_dir, cfg.search_path)
        redis_bin = find_redis(cfg.redis_server, cfg.search_path)
        logs = cfg.run_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        run_as = ensure_user(cfg.pg_user) if is_root() else None
        if run_as is not None:
            pg_bins = readable_install(pg_bins, run_as, cfg.system_dir)
        pg_port = cfg.postgres_port or free_port()
        redis_port = cfg.redis_port or _free_port_except(pg_port)

        # Spawn what does not depend on PostgreSQL first, so it starts in parallel.
        self._redis = RedisServer(
            redis_bin,
            cfg.run_dir / "redis",
            RedisSettings(
                redis_port,
                appendfsync=cfg.redis_appendfsync,
                ready_timeout_s=cfg.ready_timeout_s,
                stop_timeout_s=cfg.stop_timeout_s,
            ),
            logs,
            on_spawn=self._spawned,
        )
        self._redis.start(fresh=True)
        for name, upstream in (("postgres", pg_port), ("redis", redis_port)):
            self._proxies[name] = self._spawn_proxy(name, upstream, logs)

        settings = PostgresSettings(
            pg_port,
            database=cfg.database,
            max_connections=cfg.max_connections,
            shared_buffers=cfg.shared_buffers,
            ready_timeout_s=cfg.ready_timeout_s,
            stop_timeout_s=cfg.stop_timeout_s,
        )
        pg_home = self._pg_home(run_as)
        if not cfg.keep_data:
            self._owner.add_removal(pg_home if self._pg_home_external else pg_home / "data")
        self._postgres = PostgresServer(
            pg_bins, pg_home, settings, logs, run_as, on_spawn=self._spawned
        )
        self._postgres.prepare()
        self._postgres.start()
        self._record_postmaster()
        self._redis.wait_ready()
        proxy_ports = {}
        for name, proc in self._proxies.items():
            match = proc.wait_line(_PROXY_READY, cfg.ready_timeout_s)
            proxy_ports[name] = (int(match.group(1)), match.group(2))
            self._proxy_ports[name] = (int(match.group(1)), urlsplit(match.group(2)).port or 0)

        pg, rd = self._postgres, self._redis
        assert pg.process is not None and rd.process is not None
        endpoints = Endpoints(
            run_dir=cfg.run_dir,
            database=cfg.database,
            postgres_dsn=pg.dsn,
            postgres_proxy_dsn=f"postgresql://{SUPERUSER}@{HOST}:{proxy_ports['postgres'][0]}"
            f"/{cfg.database}",
            postgres_proxy_control=proxy_ports["postgres"][1],
            postgres_socket_dir=pg.sock,
            postgres_data_dir=pg.data,
            redis_url=rd.url,
            redis_proxy_url=f"redis://{HOST}:{proxy_ports['redis'][0]}/0",
            redis_proxy_control=proxy_ports["redis"][1],
            versions={"postgres": pg_bins.version, "redis": redis_bin.version},
            pids={
                "postgres": pg.process.pid,
                "redis": rd.process.pid,
                **{f"proxy-{n}": p.pid for n, p in self._proxies.items()},
            },
            logs={
                "postgres": pg.process.log_path,
                "redis": rd.process.log_path,
                **{f"proxy-{n}": p.log_path for n, p in self._proxies.items()},
            },
        )
        endpoints = self._start_extras(endpoints, logs)
        (cfg.run_dir / "endpoints.json").write_text(json.dumps(endpoints.to_json(), indent=2))
        return endpoints

    def _spawn_proxy(
        self, name: str, upstream: int, logs: Path, listen: int = 0, control: int = 0
    ) -> ManagedProcess:
        cfg = self.config
        argv = [cfg.python, "-m", "nightly_pipeline.chaos.proxy", "--listen", f"{HOST}:{listen}"]
        argv += ["--upstream", f"{HOST}:{upstream}", "--control-port", str(control)]
        argv += ["--name", name]
        argv += ["--max-connections", str(cfg.proxy_max_connections)]
        argv += ["--idle-timeout", str(cfg.proxy_idle_timeout_s), "--exit-on-stdin-eof"]
        proc = ManagedProcess(
            f"proxy-{name}",
            argv,
            logs / f"proxy-{name}.log",
            stdin_pipe=True,
            on_spawn=self._spawned,
        )
        proc.start()
        return proc

    def _pg_home(self, run_as: RunAs | None) -> Path:
        home = self.config.run_dir / "postgres"
        socket_path = home / "sock" / ".s.PGSQL.65535"
        reachable = run_as is None or can_traverse(self.config.run_dir, run_as)
        if reachable and len(str(socket_path)) <= _MAX_SOCKET_PATH:
            return home
        key = hashlib.sha1(str(self.config.run_dir.resolve()).encode()).hexdigest()[:12]
        if run_as is not None:
            base = self.config.system_dir / "pgdata"
            make_public_dir(base)
            home = base / key
        else:
            home = Path("/tmp") / f"nightly-pg-{key}"
            home.mkdir(mode=0o700, exist_ok=True)
        self._pg_home_external = True
        (self.config.run_dir / "postgres.location").write_text(f"{home}\n")
        log.info("PostgreSQL data for %s lives in %s", self.config.run_dir, home)
        return home

    def _start_extras(self, endpoints: Endpoints, logs: Path) -> Endpoints:
        specs = self._processes(endpoints) if callable(self._processes) else self._processes
        errors = [e for spec in specs for e in spec.validate()]
        if errors:
            raise StackConfigError(errors)
        pids, log_paths, lines = dict(endpoints.pids), dict(endpoints.logs), {}
        for spec in specs:
            proc = ManagedProcess(
                spec.name,
                spec.argv,
                logs / f"{spec.name}.log",
                env=spec.env,
                cwd=spec.cwd,
                on_spawn=self._spawned,
            )
            self._extras.append((spec, proc))
            if (line := _start_extra(spec, proc)) is not None:
                lines[spec.name] = line
            pids[spec.name], log_paths[spec.name] = proc.pid, proc.log_path
        return dataclasses.replace(endpoints, pids=pids, logs=log_paths, ready_lines=lines)

    # ------------------------------------------------------------ process control

    def _handles(self) -> dict[str, Handle]:
        """Every process the stack runs, in start order (``process_control``)."""
        handles: dict[str, Handle] = {}
        if not self._up:
            return handles  # not started, or torn down
        pg, rd = self._postgres, self._redis
        if pg is not None:
            handles["postgres"] = Handle(lambda: pg.process, pg.stop, pg.start)
        if rd is not None:
            handles["redis"] = Handle(lambda: rd.process, rd.stop, rd.restart)
        for name in self._proxies:
            handles[f"proxy-{name}"] = Handle(
                lambda n=name: self._proxies[n],
                lambda n=name: self._proxies[n].stop(self.config.stop_timeout_s),
                lambda n=name: self._respawn_proxy(n),
            )
        for spec, proc in self._extras:
            handles[spec.name] = Handle(
                lambda p=proc: p,
                lambda p=proc, s=spec: p.stop(s.stop_timeout_s),
                lambda p=proc, s=spec: _start_extra(s, p),
            )
        return handles

    def _respawn_proxy(self, name: str) -> str:
        """Start a proxy again on the listen and control ports of its first start."""
        listen, control = self._proxy_ports[name]
        server = self._postgres if name == "postgres" else self._redis
        assert server is not None
        old = self._proxies[name]
        proc = self._spawn_proxy(name, server.settings.port, old.log_path.parent, listen, control)
        self._proxies[name] = proc  # tracked before the wait: teardown stops it either way
        match = proc.wait_line(_PROXY_READY, self.config.ready_timeout_s)
        return match.group(0)

    def _spawned(self, proc: ManagedProcess) -> None:
        """Every process the stack spawns, restarts included, goes into ``owner.json``."""
        self._owner.add_process(proc.name, proc.pid)

    def _record_postmaster(self) -> None:
        """The postmaster as PostgreSQL names it, should it not be the process started."""
        pg = self._postgres
        assert pg is not None and pg.process is not None
        pid = postmaster_pid(pg.data)
        if pid is not None and pid != pg.process.pid:
            self._owner.add_process("postmaster", pid)

    def _restarted(self, name: str, pid: int, ready_line: str | None) -> None:
        assert self.endpoints is not None
        if name == "postgres":
            self._record_postmaster()
        changes: dict[str, Any] = {"pids": {**self.endpoints.pids, name: pid}}
        if ready_line is not None and name in self.endpoints.ready_lines:
            changes["ready_lines"] = {**self.endpoints.ready_lines, name: ready_line}
        self.endpoints = dataclasses.replace(self.endpoints, **changes)
        path = self.config.run_dir / "endpoints.json"
        path.write_text(json.dumps(self.endpoints.to_json(), indent=2))

    # ------------------------------------------------------------ stop

    def stop(self, *, raise_on_survivors: bool = True) -> None:
        """Tear everything down (idempotent); verify every pid is gone."""
        survivors: list[tuple[str, int]] = []

        def step(name: str, action: Callable[[], list[int]]) -> None:
            try:
                survivors.extend((name, pid) for pid in action())
            except Exception:
                log.exception("teardown of %s failed", name)

        with _deferred_signals(), self._control_lock:
            for spec, proc in reversed(self._extras):
                step(spec.name, lambda p=proc, s=spec: p.stop(s.stop_timeout_s))
            for name, proc in self._proxies.items():
                step(f"proxy-{name}", lambda p=proc: p.stop(self.config.stop_timeout_s))
            if self._redis is not None:
                step("redis", self._redis.stop)
                if not self.config.keep_data and not any(n == "redis" for n, _ in survivors):
                    self._redis.remove_data()
            if self._postgres is not None:
                step("postgres", self._postgres.stop)
                if not self.config.keep_data and not any(n == "postgres" for n, _ in survivors):
                    self._postgres.remove_data()
                    if self._pg_home_external:
                        shutil.rmtree(self._postgres.home, ignore_errors=True)
            self._extras, self._proxies, self._proxy_ports = [], {}, {}
            self._redis = self._postgres = None
            self._up = False
            if not survivors:  # else the record stays: the next start reaps them
                self._owner.release()
        if survivors:
            log.error("processes survived teardown: %s", survivors)
            if raise_on_survivors:
                raise TeardownError(survivors)


def _start_extra(spec: ProcessSpec, proc: ManagedProcess) -> str | None:
    """Start an extra process and wait until it is ready; its READY line, if it has one."""
    proc.start()
    if isinstance(spec.ready, ReadyUrl):
        url = spec.ready.url
        proc.wait_ready(lambda u=url: http_ok(u), spec.ready_timeout_s, f"GET {url} 200")
    elif isinstance(spec.ready, ReadyLine):
        return proc.wait_line(spec.ready.pattern, spec.ready_timeout_s).group(0)
    return None


def _free_port_except(taken: int) -> int:
    while (port := free_port()) == taken:
        pass
    return port


@contextlib.contextmanager
def _deferred_signals() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while tearing down (main thread only), then re-deliver them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, lambda signum, _frame: pending.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        for sig in dict.fromkeys(pending):
            log.warning("signal %d arrived during teardown; delivering it now", sig)
            signal.raise_signal(sig)
