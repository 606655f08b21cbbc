"""Speed figures the tests no longer assert: rate accuracy, the stall under the two load
models, and the fault proxy's round trip. Ours beside a peer in the same run; prints
numbers and ratios; asserts nothing.

    python bench/timing_figures.py [--rate 400] [--duration 5] [--rounds 2000]

- **rate**: our open-model engine (``ConstantArrivalRate``, 1 and 2 workers) and a peer
  that starts a request, then ``asyncio.sleep(1/rate)`` (the drift k6 avoids by computing
  each deadline from the start), both at ``--rate`` for ``--duration`` s against
  tests/loadgen/servers.py's HTTP server: achieved req/s, ratio to the target, drops.
- **stall**: the server SIGSTOPped for 1 s at t = 4 s of a 10 s run, open model
  (300/s) and closed model (10 VUs, 10 ms think time): p99 and max. The tests assert only
  the mechanism (latencies at least the pause; at most ~one stalled sample per VU).
- **proxy**: ``--rounds`` 1-byte round trips on one connection to an asyncio echo server,
  direct and through our FaultProxy (noop toxic, then a 150 ms latency toxic): p50/p99
  in ms and the ratio to direct.

Run it on an otherwise idle machine; a loaded one shows in every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nightly_pipeline.chaos import FaultProxy, FaultSlot, ProxyConfig, build_fault  # noqa: E402
from nightly_pipeline.loadgen import (  # noqa: E402
    ConstantArrivalRate,
    ConstantVus,
    LoadTest,
    RunBounds,
    run_load,
)
from nightly_pipeline.loadgen.scenario import GetPath  # noqa: E402
from tests.loadgen.scenarios import GetThenSleep  # noqa: E402
from tests.loadgen.servers import http_server, pause  # noqa: E402

# ---------------------------------------------------------------- rate


async def _sleep_loop_peer(url: str, rate: float, duration: float) -> dict[str, float]:
    """The naive client: start a request, sleep one period, repeat until the duration."""
    import httpx

    ok = errors = 0
    tasks: set[asyncio.Task[None]] = set()

    async with httpx.AsyncClient(base_url=url, trust_env=False) as client:

        async def one() -> None:
            nonlocal ok, errors
            try:
                good = (await client.get("/")).status_code == 200
            except httpx.HTTPError:
                good = False
            ok, errors = ok + good, errors + (not good)

        start = time.perf_counter()
        while time.perf_counter() - start < duration:
            task = asyncio.create_task(one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            await asyncio.sleep(1.0 / rate)
        await asyncio.gather(*tasks)
    return {"requests": ok + errors, "errors": errors, "dropped": 0}


def rate_figures(url: str, rate: float, duration: float) -> None:
    print(f"\n== rate: {rate:.0f}/s for {duration:g} s (due: {rate * duration:.0f})")
    print(f"{'client':<22} {'req/s':>8} {'of target':>9} {'dropped':>8} {'errors':>7}")
    rows: dict[str, float] = {}
    for workers in (1, 2):
        config = ConstantArrivalRate(rate=rate, bounds=RunBounds(duration), max_vus=100)
        result = run_load(LoadTest(config, GetPath("/"), url, workers=workers))
        reqs = result.recorder.stats("http_reqs")["count"]
        errors = result.recorder.stats("http_req_failed").get("passes", 0)  # true: failed
        name = f"ours, {workers} worker(s)"
        rows[name] = reqs / duration
        print(
            f"{name:<22} {rows[name]:>8.1f} {rows[name] / rate:>9.3f} "
            f"{result.counts['dropped']:>8} {errors:>7.0f}"
        )
    peer = asyncio.run(_sleep_loop_peer(url, rate, duration))
    rows["peer: sleep(period)"] = peer["requests"] / duration
    print(
        f"{'peer: sleep(period)':<22} {rows['peer: sleep(period)']:>8.1f} "
        f"{rows['peer: sleep(period)'] / rate:>9.3f} {'-':>8} {peer['errors']:>7.0f}"
    )


# ---------------------------------------------------------------- stall


def stall_figures(server) -> None:
    pause_s = 1.0

    def with_pause(test: LoadTest):
        timer = threading.Timer(4.0, pause, (server.proc, pause_s))
        timer.start()
        try:
            return run_load(test)
        finally:
            timer.join()

    open_model = with_pause(
        LoadTest(
            ConstantArrivalRate(rate=300, bounds=RunBounds(10), max_vus=1000),
            GetPath("/"),
            server.url,
        )
    )
    closed_model = with_pause(
        LoadTest(ConstantVus(vus=10, bounds=RunBounds(10)), GetThenSleep(0.01), server.url)
    )
    open_lat = open_model.recorder.stats("http_req_latency")
    closed_lat = closed_model.recorder.stats("http_req_duration")
    print(f"\n== stall: server paused {pause_s:g} s at t = 4 s of 10 s")
    print(f"{'model':<28} {'samples':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, lat in (
        ("open (300/s), latency", open_lat),
        ("closed (10 VUs), duration", closed_lat),
    ):
        print(f"{name:<28} {lat['count']:>8.0f} {lat['p(99)']:>8.1f} {lat['max']:>8.0f}")
    print(f"closed p99 / open p99: {closed_lat['p(99)'] / open_lat['p(99)']:.3f}")


# ---------------------------------------------------------------- proxy


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def _via_proxy(upstream_port: int) -> AsyncIterator[FaultProxy]:
    proxy = FaultProxy(ProxyConfig(upstream_host="127.0.0.1", upstream_port=upstream_port))
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


async def _rtts(port: int, rounds: int) -> list[float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        writer.write(b"p")
        await reader.readexactly(1)
        out.append((time.perf_counter() - t0) * 1000)
    writer.close()
    return out


async def proxy_figures(rounds: int) -> None:
    upstream = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = upstream.sockets[0].getsockname()[1]
    rows = {"direct": await _rtts(port, rounds)}
    async with _via_proxy(port) as proxy:
        proxy.add_fault(FaultSlot("ctl", build_fault("noop")))
        rows["FaultProxy, noop"] = await _rtts(proxy.port, rounds)
        proxy.add_fault(FaultSlot("lat", build_fault("latency", {"latency": 150})))
        rows["FaultProxy, latency 150"] = await _rtts(proxy.port, max(5, rounds // 200))
    upstream.close()
    print(f"\n== proxy: 1-byte round trips on one connection ({rounds} rounds)")
    print(f"{'path':<24} {'p50 ms':>8} {'p99 ms':>8} {'p50 / direct':>12}")
    base = statistics.median(rows["direct"])
    for name, values in rows.items():
        values.sort()
        p50, p99 = statistics.median(values), values[min(len(values) - 1, int(len(values) * 0.99))]
        print(f"{name:<24} {p50:>8.3f} {p99:>8.3f} {p50 / base:>12.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=400)
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--only", choices=("rate", "stall", "proxy"))
    args = parser.parse_args()
    with http_server() as server:
        if args.only in (None, "rate"):
            rate_figures(server.url, args.rate, args.duration)
        if args.only in (None, "stall"):
            stall_figures(server)
    if args.only in (None, "proxy"):
        asyncio.run(proxy_figures(args.rounds))


if __name__ == "__main__":
    main()
