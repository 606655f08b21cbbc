"""An asyncio TCP fault proxy: listens on loopback, forwards each connection (a "link")
to one upstream in both directions, and applies the installed toxics per link.

Control surface (in process: :class:`FaultProxy`; across processes: Toxiproxy's HTTP API
in ``control_http`` and its client :class:`~nightly_pipeline.chaos.control.ProxyControl`).
"Down" is a state, not a toxic (Toxiproxy's ``enabled``): ``cut()`` closes every link and
refuses new ones (the listener is closed, so clients get ECONNREFUSED), ``restore()``
listens again on the same port. ``add_fault`` / ``update_fault`` / ``remove_fault`` change
toxics live; a removed toxic passes on what it holds.

Bounded: at most ``max_connections`` links (more are accepted and closed at once, and
counted), links idle for ``idle_timeout_s`` are closed, upstream connects time out.

As its own process::

    python -m nightly_pipeline.chaos.proxy --listen 127.0.0.1:0 \\
        --upstream 127.0.0.1:5432 --control-port 0 [--name NAME] [--exit-on-stdin-eof]

prints ``READY listen=127.0.0.1:P control=http://127.0.0.1:C upstream=127.0.0.1:5432``,
serves Toxiproxy's API on the control port with this proxy under ``NAME`` (default
``proxy``), and runs until SIGTERM/SIGINT (or EOF on stdin with ``--exit-on-stdin-eof``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import ipaddress
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nightly_pipeline.chaos.faults import FaultSlot
from nightly_pipeline.chaos.link import Link

READY = "READY"


EXTRA_HOSTS: set[str] = set()
"""Hosts besides loopback this proxy process may listen on or forward to: empty unless
its entry point is given ``--allow-host`` (the Docker platform, where the proxy runs in a
container of its own, listens on 0.0.0.0 and forwards to ``postgres`` on the platform's
private network). Set once, from argv, before anything is configured."""


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) on loopback; ``localhost`` is 127.0.0.1.
    Raises ``ValueError`` for anything else: this proxy never leaves the machine."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    if host == "localhost":
        host = "127.0.0.1"
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and host not in EXTRA_HOSTS:
        raise ValueError(f"{host or 'an empty host'} is not a loopback address in {text!r}")
    return host, int(port)


@dataclass(frozen=True)
class ProxyConfig:
    upstream_host: str
    upstream_port: int
    listen_host: str = "127.0.0.1"
    listen_port: int = 0
    name: str = "proxy"
    max_connections: int = 1024
    idle_timeout_s: float = 1800.0
    connect_timeout_s: float = 5.0
    chunk_size: int = 64 * 1024

    @property
    def listen(self) -> str:
        return format_address(self.listen_host, self.listen_port)

    @property
    def upstream(self) -> str:
        return format_address(self.upstream_host, self.upstream_port)

    def validate(self) -> list[str]:
        """Every problem with this config (empty when valid)."""
        errors = []
        if not self.name or "/" in self.name:
            errors.append(f"name must be non-empty without '/', got {self.name!r}")
        for what, host in (("listen", self.listen_host), ("upstream", self.upstream_host)):
            if host in EXTRA_HOSTS:
                continue
            try:
                if not ipaddress.ip_address(host).is_loopback:
                    errors.append(f"{what} host {host} is not a loopback address")
            except ValueError:
                errors.append(f"{what} host must be a loopback IP address, got {host!r}")
        if not 0 <= self.listen_port <= 65535:
            errors.append(f"listen port out of range: {self.listen_port}")
        if not 0 < self.upstream_port <= 65535:
            errors.append(f"upstream port out of range: {self.upstream_port}")
        for what, value in (
            ("max_connections", self.max_connections),
            ("idle_timeout_s", self.idle_timeout_s),
            ("connect_timeout_s", self.connect_timeout_s),
            ("chunk_size", self.chunk_size),
        ):
            if value <= 0:
                errors.append(f"{what} must be > 0, got {value}")
        return errors


class ProxyStateError(RuntimeError):
    """A control action that does not fit the proxy's state (e.g. restore can't bind)."""


class FaultExistsError(ProxyStateError):
    """A toxic of that name is already installed (Toxiproxy's 409)."""


class FaultProxy:
    """The proxy. ``await start()``, then ``cut()``/``restore()``/toxics; ``await stop()``."""

    def __init__(self, config: ProxyConfig) -> None:
        errors = config.validate()
        if errors:
            raise ValueError(f"proxy {config.name}: " + "; ".join(errors))
        self.config = config
        self.port = config.listen_port
        self.enabled = False
        self._server: asyncio.Server | None = None
        self._links: dict[int, Link] = {}
        self._link_tasks: set[asyncio.Task[None]] = set()
        self._faults: dict[str, FaultSlot] = {}
        self._next_id = 0
        self._watchdog: asyncio.Task[None] | None = None
        self.counters = {
            "links_total": 0,
            "links_rejected": 0,
            "links_refused_cut": 0,
            "links_idle_closed": 0,
            "upstream_errors": 0,
            "bytes_upstream": 0,
            "bytes_downstream": 0,
            "cuts": 0,
        }

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def listen(self) -> str:
        """The address listened on (the actual port once bound, kept while disabled)."""
        return format_address(self.config.listen_host, self.port)

    # ------------------------------------------------------------ lifecycle

    async def start(self, *, enabled: bool = True) -> None:
        if enabled:
            await self._listen()
        self.enabled = enabled
        self._watchdog = asyncio.create_task(self._idle_watchdog(), name="proxy-idle-watchdog")

    async def stop(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        self.enabled = False
        await self._close_listener_and_links()
        if self._link_tasks:
            await asyncio.gather(*self._link_tasks, return_exceptions=True)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._on_client, self.config.listen_host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close_listener_and_links(self) -> None:
        # Links are closed before waiting: from Python 3.12 ``wait_closed`` also waits
        # for the connections the server handed out.
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for link in list(self._links.values()):
            link.close("abort")
        if server is not None:
            await server.wait_closed()

    # ------------------------------------------------------------ control

    async def cut(self) -> None:
        """Disable: close every link and refuse new connections until ``restore()``."""
        self.enabled = False
        self.counters["cuts"] += 1
        await self._close_listener_and_links()

    async def restore(self) -> None:
        """Enable: accept connections again, on the same port."""
        if self._server is None:
            try:
                await self._listen()
            except OSError as exc:
                raise ProxyStateError(f"listen tcp {self.listen}: {exc.strerror or exc}") from exc
        self.enabled = True

    async def reconfigure(self, listen: tuple[str, int], upstream: tuple[str, int]) -> None:
        """New addresses: every link is dropped and, if enabled, the proxy listens again
        on ``listen`` (port 0: a new ephemeral port)."""
        config = dataclasses.replace(
            self.config,
            listen_host=listen[0],
            listen_port=listen[1],
            upstream_host=upstream[0],
            upstream_port=upstream[1],
        )
        errors = config.validate()
        if errors:
            raise ValueError("; ".join(errors))
        was_enabled = self.enabled
        self.enabled = False
        await self._close_listener_and_links()
        self.config, self.port = config, config.listen_port
        if was_enabled:
            await self.restore()

    def add_fault(self, slot: FaultSlot) -> None:
        """Install a toxic; live links see it from their next chunk (timers start now)."""
        if slot.name in self._faults:
            raise FaultExistsError("toxic already exists")
        self._faults[slot.name] = slot
        for link in list(self._links.values()):
            link.attach(slot)

    def update_fault(self, slot: FaultSlot) -> bool:
        """Replace the toxic of that name in place (same position and stream)."""
        old = self._faults.get(slot.name)
        if old is None or old.stream != slot.stream:
            return False
        self._faults[slot.name] = slot
        for link in list(self._links.values()):
            link.update(slot)
        return True

    def remove_fault(self, name: str) -> bool:
        """Remove a toxic; what it holds on live links goes on (never dropped)."""
        slot = self._faults.pop(name, None)
        if slot is None:
            return False
        for link in list(self._links.values()):
            link.detach(slot)
        return True

    def clear_faults(self) -> None:
        for name in list(self._faults):
            self.remove_fault(name)

    def faults(self) -> tuple[FaultSlot, ...]:
        return tuple(self._faults.values())

    def to_json(self) -> dict[str, Any]:
        """Toxiproxy's proxy JSON."""
        return {
            "name": self.name,
            "listen": self.listen,
            "upstream": self.config.upstream,
            "enabled": self.enabled,
            "toxics": [slot.describe() for slot in self._faults.values()],
        }

    def status(self) -> dict[str, Any]:
        """The proxy JSON plus link and byte counters (not part of Toxiproxy's API)."""
        live_up = sum(link.bytes["upstream"] for link in self._links.values())
        live_down = sum(link.bytes["downstream"] for link in self._links.values())
        return {
            **self.to_json(),
            "cut": not self.enabled,
            "links_open": len(self._links),
            **self.counters,
            "bytes_upstream": self.counters["bytes_upstream"] + live_up,
            "bytes_downstream": self.counters["bytes_downstream"] + live_down,
            "max_connections": self.config.max_connections,
            "idle_timeout_s": self.config.idle_timeout_s,
        }

    # ------------------------------------------------------------ links

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.enabled or len(self._links) >= self.config.max_connections:
            self.counters["links_rejected" if self.enabled else "links_refused_cut"] += 1
            writer.transport.abort()
            return
        cfg = self.config
        try:
            upstream = await asyncio.wait_for(
                asyncio.open_connection(cfg.upstream_host, cfg.upstream_port),
                cfg.connect_timeout_s,
            )
        except (OSError, TimeoutError):
            self.counters["upstream_errors"] += 1
            writer.transport.abort()
            return
        if not self.enabled:  # disabled while connecting
            upstream[1].transport.abort()
            writer.transport.abort()
            return
        self._next_id += 1
        link = Link(self._next_id, (reader, writer), upstream, self.faults(), cfg.chunk_size)
        self._links[link.link_id] = link
        self.counters["links_total"] += 1
        task = asyncio.current_task()
        if task is not None:
            self._link_tasks.add(task)
        try:
            await link.run()
        finally:
            self._links.pop(link.link_id, None)
            self.counters["bytes_upstream"] += link.bytes["upstream"]
            self.counters["bytes_downstream"] += link.bytes["downstream"]
            if task is not None:
                self._link_tasks.discard(task)

    async def _idle_watchdog(self) -> None:
        period = min(5.0, self.config.idle_timeout_s / 4)
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(period)
            horizon = loop.time() - self.config.idle_timeout_s
            for link in list(self._links.values()):
                if link.last_activity < horizon:
                    self.counters["links_idle_closed"] += 1
                    link.close("fin")


# ---------------------------------------------------------------- process entry point


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nightly_pipeline.chaos.proxy")
    parser.add_argument("--listen", type=_host_port, default=("127.0.0.1", 0))
    parser.add_argument("--upstream", type=_host_port, required=True)
    parser.add_argument("--control-port", type=int, default=0)
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        help="a non-loopback host (name or address) allowed for listen/upstream (repeatable)",
    )
    parser.add_argument("--name", default="proxy")
    parser.add_argument("--max-connections", type=int, default=1024)
    parser.add_argument("--idle-timeout", type=float, default=1800.0, help="seconds")
    parser.add_argument("--connect-timeout", type=float, default=5.0, help="seconds")
    parser.add_argument(
        "--exit-on-stdin-eof", action="store_true", help="exit when the parent closes stdin"
    )
    return parser


async def _serve(args: argparse.Namespace) -> int:
    from nightly_pipeline.chaos.control_http import ControlServer, ProxyCollection

    config = ProxyConfig(
        upstream_host=args.upstream[0],
        upstream_port=args.upstream[1],
        listen_host=args.listen[0],
        listen_port=args.listen[1],
        name=args.name,
        max_connections=args.max_connections,
        idle_timeout_s=args.idle_timeout,
        connect_timeout_s=args.connect_timeout,
    )
    proxy = FaultProxy(config)
    await proxy.start()
    proxies = ProxyCollection({proxy.name: proxy})
    control = ControlServer(proxies, config.listen_host, args.control_port)
    try:
        await control.start()
    except BaseException:
        await proxies.stop_all()
        raise
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    if args.exit_on_stdin_eof:
        _watch_stdin(loop, done)
    print(
        f"{READY} listen={config.listen_host}:{proxy.port} control={control.url} "
        f"upstream={config.upstream_host}:{config.upstream_port}",
        flush=True,
    )
    try:
        await done.wait()
    finally:
        await control.stop()
        await proxies.stop_all()  # with any the API created
    return 0


def _watch_stdin(loop: asyncio.AbstractEventLoop, done: asyncio.Event) -> None:
    fd = sys.stdin.fileno()

    def on_readable() -> None:
        try:
            data = sys.stdin.buffer.raw.read(4096)  # type: ignore[attr-defined]
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
            done.set()

    loop.add_reader(fd, on_readable)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    EXTRA_HOSTS.update(args.allow_host)
    try:
        import uvloop

        run = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency
        run = asyncio.run
    try:
        return run(_serve(args))
    except ValueError as exc:
        print(f"proxy: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    # Run the package's copy of this module, so that its classes are the ones that
    # control_http imports (``-m`` would otherwise execute a second copy as __main__).
    from nightly_pipeline.chaos import proxy as _proxy

    sys.exit(_proxy.main())
