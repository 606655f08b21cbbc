"""The process shell shared by the testbed's background workers (dispatcher, consumer):
command line, ``/metrics`` + ``/healthz`` over aiohttp, ``READY <port>`` on stdout,
SIGTERM/SIGINT → the worker drains (bounded), then the process exits.

    python -m nightly_pipeline.testbed.dispatcher --config FILE --metrics-port N

A worker is an async context manager (opens and closes its connections) yielding an
object with ``run(stop)`` — its loop, which returns once ``stop`` is set and the batch in
hand is finished — and ``health()``. A loop that returns or raises on its own is a crash:
the process exits 1 rather than staying half-alive.

"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from nightly_pipeline import heap
from nightly_pipeline.testbed.config import TestbedConfig
from nightly_pipeline.testbed.metrics import CONTENT_TYPE, Registry
from nightly_pipeline.testbed.migrate import worker_dsn

log = logging.getLogger(__name__)
READY = "READY"
DRAIN_TIMEOUT_S = 3.0  # the rest of the 5 s budget closes connections and the HTTP server


class Worker(Protocol):
    async def run(self, stop: asyncio.Event) -> None: ...

    def health(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class WorkerArgs:
    config: TestbedConfig
    metrics_port: int
    metrics_host: str
    pg_dsn: str  # --pg-dsn, else config.pg_dsn as the worker role (BYPASSRLS)
    name: str | None  # --name (consumer name in the group)


def parse_args(prog: str, argv: Sequence[str] | None = None) -> WorkerArgs:
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--config", type=Path, required=True, help="TestbedConfig JSON file")
    parser.add_argument("--metrics-port", type=int, default=0, help="0: any free port")
    parser.add_argument("--metrics-host", default="127.0.0.1")
    parser.add_argument(
        "--pg-dsn",
        help="DSN of a role that reads every conversation (BYPASSRLS); default: the "
        "config's pg_dsn with its user replaced by the migrations' worker role",
    )
    parser.add_argument("--name", help="worker name (consumer: name in the group)")
    parser.add_argument("--log-level", default="INFO")
    ns = parser.parse_args(argv)
    logging.basicConfig(
        level=ns.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    config = TestbedConfig.load(ns.config)
    pg_dsn = ns.pg_dsn or worker_dsn(config.pg_dsn)
    return WorkerArgs(config, ns.metrics_port, ns.metrics_host, pg_dsn, ns.name)


def run_worker(
    open_worker: Callable[[], AbstractAsyncContextManager[Worker]],
    registry: Registry,
    args: WorkerArgs,
) -> int:
    """Run on uvloop when installed; return the process exit code."""
    heap.fix_mmap_threshold()  # big blocks go back when freed (nightly_pipeline/heap.py)
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    with contextlib.suppress(ImportError):
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(serve(open_worker, registry, args.metrics_host, args.metrics_port))


async def serve(
    open_worker: Callable[[], AbstractAsyncContextManager[Worker]],
    registry: Registry,
    host: str,
    port: int,
    drain_timeout_s: float = DRAIN_TIMEOUT_S,
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    worker: Worker | None = None

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=registry.render().encode(), headers={"Content-Type": CONTENT_TYPE})

    async def healthz(_request: web.Request) -> web.Response:
        body = {"status": "ok"} | (worker.health() if worker is not None else {"starting": True})
        return web.json_response(body)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]
        async with open_worker() as worker:
            print(f"{READY} {bound}", flush=True)
            return await _run_until_stopped(worker, stop, drain_timeout_s)
    except Exception:
        log.exception("worker failed")
        return 1
    finally:
        await runner.cleanup()


async def _run_until_stopped(worker: Worker, stop: asyncio.Event, drain_timeout_s: float) -> int:
    task = asyncio.create_task(worker.run(stop), name="worker-loop")
    stopped = asyncio.create_task(stop.wait(), name="stop-signal")
    await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if not stop.is_set():
        stopped.cancel()
        exc = task.exception()
        log.error("worker loop ended without a stop signal: %r", exc)
        return 1
    log.info("stop signal: draining (at most %.1f s)", drain_timeout_s)
    done, _ = await asyncio.wait({task}, timeout=drain_timeout_s)
    if not done:
        log.warning("drain did not finish in %.1f s; cancelling", drain_timeout_s)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return 0
    if task.exception() is not None:
        log.error("worker loop failed while draining", exc_info=task.exception())
        return 1
    return 0


async def interruptible_sleep(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds`` or until ``stop`` is set, whichever comes first."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def redis_client(url: str, *, timeout_s: float = 2.0) -> Any:
    """A redis.asyncio client that fails fast (no hidden retries: the loops own retrying)."""
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=min(timeout_s, 1.0),
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )


async def close_pool(pool: Any, timeout_s: float = 1.0) -> None:
    """Close an asyncpg pool, terminating it if a connection does not come back in time."""
    try:
        await asyncio.wait_for(pool.close(), timeout_s)
    except (TimeoutError, OSError):
        pool.terminate()
