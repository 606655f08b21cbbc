"""An asyncio TCP fault proxy: listens on loopback, forwards each connection (a "link")
to one upstream in both directions, and applies the installed faults per link.

Control surface (in process: :class:`FaultProxy`; across processes: the HTTP/JSON
endpoint in ``control_http`` and its client :class:`~nightly_pipeline.chaos.control.ProxyControl`):
``cut()`` closes every link and refuses new ones (the listener is closed, so clients get
ECONNREFUSED), ``restore()`` listens again on the same port, ``add_fault`` /
``remove_fault`` install faults live (e.g. ``latency``).

Bounded: at most ``max_connections`` links (more are accepted and closed at once, and
counted), links idle for ``idle_timeout_s`` are closed, upstream connects time out.

As its own process::

    python -m nightly_pipeline.chaos.proxy --listen 127.0.0.1:0 \\
        --upstream 127.0.0.1:5432 --control-port 0 [--exit-on-stdin-eof]

prints ``READY listen=127.0.0.1:P control=http://127.0.0.1:C upstream=127.0.0.1:5432``
and runs until SIGTERM/SIGINT (or EOF on stdin with ``--exit-on-stdin-eof``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nightly_pipeline.chaos.faults import FaultSlot
from nightly_pipeline.chaos.link import Link

READY = "READY"


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

    def validate(self) -> list[str]:
        """Every problem with this config (empty when valid)."""
        errors = []
        for what, host in (("listen", self.listen_host), ("upstream", self.upstream_host)):
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


class FaultProxy:
    """The proxy. ``await start()``, then ``cut()``/``restore()``/faults; ``await stop()``."""

    def __init__(self, config: ProxyConfig) -> None:
        errors = config.validate()
        if errors:
            raise ValueError(f"proxy {config.name}: " + "; ".join(errors))
        self.config = config
        self.port = config.listen_port
        self._server: asyncio.Server | None = None
        self._links: dict[int, Link] = {}
        self._link_tasks: set[asyncio.Task[None]] = set()
        self._faults: dict[str, FaultSlot] = {}
        self._fault_list: tuple[FaultSlot, ...] = ()
        self._next_id = 0
        self._watchdog: asyncio.Task[None] | None = None
        self.cut_active = False
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

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self._listen()
        self._watchdog = asyncio.create_task(self._idle_watchdog(), name="proxy-idle-watchdog")

    async def stop(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
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
            link.close(abort=True)
        if server is not None:
            await server.wait_closed()

    # ------------------------------------------------------------ control

    async def cut(self) -> None:
        """Close every link (RST) and refuse new connections until ``restore()``."""
        self.cut_active = True
        self.counters["cuts"] += 1
        await self._close_listener_and_links()

    async def restore(self) -> None:
        """Accept connections again, on the same port."""
        if self._server is None:
            try:
                await self._listen()
            except OSError as exc:
                raise ProxyStateError(f"cannot listen again on port {self.port}: {exc}") from exc
        self.cut_active = False

    def add_fault(self, slot: FaultSlot) -> None:
        """Install (or replace, by name) a fault; live links see it from their next chunk."""
        self._faults[slot.name] = slot
        self._fault_list = tuple(self._faults.values())

    def remove_fault(self, name: str) -> bool:
        removed = self._faults.pop(name, None) is not None
        self._fault_list = tuple(self._faults.values())
        return removed

    def faults(self) -> tuple[FaultSlot, ...]:
        return self._fault_list

    def status(self) -> dict[str, Any]:
        live_up = sum(link.bytes["upstream"] for link in self._links.values())
        live_down = sum(link.bytes["downstream"] for link in self._links.values())
        return {
            "name": self.config.name,
            "listen": f"{self.config.listen_host}:{self.port}",
            "upstream": f"{self.config.upstream_host}:{self.config.upstream_port}",
            "cut": self.cut_active,
            "links_open": len(self._links),
            **self.counters,
            "bytes_upstream": self.counters["bytes_upstream"] + live_up,
            "bytes_downstream": self.counters["bytes_downstream"] + live_down,
            "max_connections": self.config.max_connections,
            "idle_timeout_s": self.config.idle_timeout_s,
            "faults": [slot.describe() for slot in self._fault_list],
        }

    # ------------------------------------------------------------ links

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_active or len(self._links) >= self.config.max_connections:
            self.counters["links_refused_cut" if self.cut_active else "links_rejected"] += 1
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
        self._next_id += 1
        link = Link(self._next_id, (reader, writer), upstream, self.faults, cfg.chunk_size)
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
                    link.close(abort=False)


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
    parser.add_argument("--name", default="proxy")
    parser.add_argument("--max-connections", type=int, default=1024)
    parser.add_argument("--idle-timeout", type=float, default=1800.0, help="seconds")
    parser.add_argument("--connect-timeout", type=float, default=5.0, help="seconds")
    parser.add_argument(
        "--exit-on-stdin-eof", action="store_true", help="exit when the parent closes stdin"
    )
    return parser


async def _serve(args: argparse.Namespace) -> int:
    from nightly_pipeline.chaos.control_http import ControlServer

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
    control = ControlServer(proxy, config.listen_host, args.control_port)
    await control.start()
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
        await proxy.stop()
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
