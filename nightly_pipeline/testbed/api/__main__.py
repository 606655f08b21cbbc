"""``python -m nightly_pipeline.testbed.api --config FILE``: serve the API under uvloop,
print ``READY <port>`` once listening, shut down gracefully on SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

import uvloop
from aiohttp import web

from nightly_pipeline import heap
from nightly_pipeline.testbed.api.app import build_app
from nightly_pipeline.testbed.config import TestbedConfig
from nightly_pipeline.testbed.seed import scrypt_memory_bytes

SHUTDOWN_TIMEOUT_S = 4.0


async def serve(cfg: TestbedConfig) -> None:
    runner = web.AppRunner(build_app(cfg), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    site = web.TCPSite(runner, cfg.http_host, cfg.http_port, backlog=4096, reuse_address=True)
    try:
        await site.start()
    except OSError:
        # Stop the startup's background tasks (Pub/Sub, pools) first: left to the loop's
        # final cancellation, they keep the process alive and the error unseen.
        await runner.cleanup()
        raise
    port = runner.addresses[0][1]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"READY {port}", flush=True)
    try:
        await stop.wait()
    finally:
        logging.getLogger(__name__).info("shutting down")
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    cfg = TestbedConfig.load(args.config)
    # scrypt's block stays in each hashing thread's arena, bigger ones are unmapped when
    # freed (nightly_pipeline/heap.py, api/passwords.py)
    heap.fix_mmap_threshold(heap.threshold_above(scrypt_memory_bytes(cfg.password_hash_n)))
    uvloop.run(serve(cfg))


if __name__ == "__main__":
    main()
