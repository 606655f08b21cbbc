"""Client CPU per request (user+sys µs) of HTTP clients at a fixed open-loop rate.

    python bench/http_client_cpu.py [--rate 2000] [--duration 10] [--clients ours,aiohttp,httpx,k6]

The target is tests/loadgen/servers.py's HTTP server in its own process pinned to core 1;
each client runs in a fresh process pinned to core 0 under uvloop, with the same
scheduler: requests fire at absolute deadlines (start + i/rate), at most --max-inflight
at once, the rest counted as dropped. CPU is getrusage(RUSAGE_SELF) of the client
process over the measured window (after a warm-up at the same rate). k6 (optional) is
measured as its whole process (os.wait4), start-up included. Prints numbers and ratios;
asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from time import perf_counter

ROOT = Path(__file__).resolve().parents[1]
CLIENT_CORE, SERVER_CORE = 0, 1


# ---------------------------------------------------------------- worker (one client)


async def drive(send, rate: float, duration: float, max_inflight: int) -> dict:
    """Open-loop: request i is due at start + i/rate; never queued behind a busy slot.

    Deadlines use perf_counter: uvloop's loop.time() has 1 ms resolution, and sleeping
    for less than that spins. The scheduler wakes at most every millisecond and fires
    everything due, so a request starts at most ~1 ms late (counted in its latency).
    """
    loop = asyncio.get_running_loop()
    period, total = 1.0 / rate, int(rate * duration)
    stats = {"sent": 0, "ok": 0, "errors": 0, "dropped": 0}
    latencies: list[float] = []
    inflight = 0
    tasks: set[asyncio.Task] = set()  # strong references until done
    drained = loop.create_future()

    async def one(due: float) -> None:
        nonlocal inflight
        try:
            ok = await send()
        except Exception:
            ok = False
        latencies.append(perf_counter() - due)
        stats["ok" if ok else "errors"] += 1
        inflight -= 1
        if inflight == 0 and stats["sent"] + stats["dropped"] == total and not drained.done():
            drained.set_result(None)

    start = perf_counter() + 0.01
    i = 0
    while i < total:
        now = perf_counter()
        while i < total and start + i * period <= now:
            if inflight >= max_inflight:
                stats["dropped"] += 1
            else:
                inflight += 1
                stats["sent"] += 1
                task = loop.create_task(one(start + i * period))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            i += 1
        if i < total:
            await asyncio.sleep(max(0.001, start + i * period - perf_counter()))
    if inflight:
        await drained
    latencies.sort()
    n = len(latencies)
    stats["p50_ms"] = latencies[n // 2] * 1000 if n else 0.0
    stats["p99_ms"] = latencies[min(n - 1, int(n * 0.99))] * 1000 if n else 0.0
    return stats


async def make_sender(name: str, url: str, max_inflight: int):
    if name == "harness":  # the scheduler alone, no request: its share of every row

        async def send() -> bool:
            return True

        async def close() -> None:
            return None

        return send, close
    if name == "ours":
        from nightly_pipeline.loadgen.http_client import HttpClient

        client = HttpClient(url, max_connections=max_inflight)

        async def send() -> bool:
            return (await client.request("GET", "/")).status == 200

        return send, client.aclose
    if name == "aiohttp":
        import aiohttp

        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=max_inflight))

        async def send() -> bool:
            async with session.get(url + "/") as resp:
                await resp.read()
                return resp.status == 200

        return send, session.close
    if name == "httpx":
        import httpx

        limits = httpx.Limits(max_connections=max_inflight)
        client = httpx.AsyncClient(limits=limits, trust_env=False)

        async def send() -> bool:
            return (await client.get(url + "/")).status_code == 200

        return send, client.aclose
    raise SystemExit(f"unknown client {name!r}")


async def worker(args: argparse.Namespace) -> dict:
    send, close = await make_sender(args.worker, args.url, args.max_inflight)
    await drive(send, args.rate, args.warmup, args.max_inflight)
    before = resource.getrusage(resource.RUSAGE_SELF)
    stats = await drive(send, args.rate, args.duration, args.max_inflight)
    after = resource.getrusage(resource.RUSAGE_SELF)
    await close()
    stats["user_s"] = after.ru_utime - before.ru_utime
    stats["sys_s"] = after.ru_stime - before.ru_stime
    return stats


# ---------------------------------------------------------------- parent


def run_python_client(name: str, url: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--worker", name, "--url", url]
    cmd += ["--rate", str(args.rate), "--duration", str(args.duration)]
    cmd += ["--warmup", str(args.warmup), "--max-inflight", str(args.max_inflight)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])


K6_SCRIPT = """
import http from 'k6/http';
export const options = {{
  discardResponseBodies: true,
  scenarios: {{ load: {{ executor: 'constant-arrival-rate', rate: {rate}, timeUnit: '1s',
    duration: '{duration}s', preAllocatedVUs: 64, maxVUs: {max_vus} }} }},
}};
export default function () {{ http.get('{url}/'); }}
"""


def run_k6(url: str, args: argparse.Namespace) -> dict | None:
    k6 = Path(sys.executable).with_name("k6")
    if not k6.exists():
        return None
    duration = args.duration + args.warmup
    with tempfile.TemporaryDirectory() as tmp:
        script, summary = Path(tmp, "load.js"), Path(tmp, "summary.json")
        script.write_text(
            textwrap.dedent(
                K6_SCRIPT.format(
                    rate=int(args.rate), duration=duration, max_vus=args.max_inflight, url=url
                )
            )
        )
        proc = subprocess.Popen(
            [str(k6), "run", "--quiet", "--summary-export", str(summary), str(script)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=lambda: os.sched_setaffinity(0, {CLIENT_CORE}),
        )
        _, status, usage = os.wait4(proc.pid, 0)
        if status != 0 or not summary.exists():
            return None
        metrics = json.loads(summary.read_text())["metrics"]
    reqs = int(metrics["http_reqs"]["count"])
    failed = metrics.get("http_req_failed", {}).get("passes", 0)
    dropped = int(metrics.get("dropped_iterations", {}).get("count", 0))
    duration_ms = metrics["http_req_duration"]
    return {
        "sent": reqs,
        "ok": reqs - int(failed),
        "errors": int(failed),
        "dropped": dropped,
        "p50_ms": duration_ms.get("med", 0.0),
        "p99_ms": duration_ms.get("p(99)", duration_ms.get("p(95)", 0.0)),
        "user_s": usage.ru_utime,
        "sys_s": usage.ru_stime,
        "note": "whole process incl. start-up; p99 column is p(95)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=2000)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=1)
    parser.add_argument("--max-inflight", type=int, default=256)
    parser.add_argument("--clients", default="harness,ours,aiohttp,httpx,k6")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        os.sched_setaffinity(0, {CLIENT_CORE})
        import uvloop

        print(json.dumps(uvloop.run(worker(args))))
        return

    sys.path.insert(0, str(ROOT))
    import psutil

    from tests.loadgen.servers import http_server

    results: dict[str, dict] = {}
    with http_server(cpu=SERVER_CORE) as srv:
        server = psutil.Process(srv.proc.pid)
        for name in args.clients.split(","):
            cpu0 = server.cpu_times()
            res = run_k6(srv.url, args) if name == "k6" else run_python_client(name, srv.url, args)
            if res is None:
                print(f"{name}: skipped (not available or failed)")
                continue
            cpu1 = server.cpu_times()
            res["server_s"] = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
            results[name] = res

    print(
        f"\n{args.rate:.0f} RPS open-loop, {args.duration:.0f} s measured, client on core "
        f"{CLIENT_CORE}, server on core {SERVER_CORE}, uvloop\n"
    )
    head = f"{'client':<8} {'µs/req':>7} {'user':>6} {'sys':>6} {'ok':>7} {'err':>5} "
    head += f"{'drop':>5} {'p50 ms':>7} {'p99 ms':>7} {'srv µs/req':>10}"
    print(head)
    per_req: dict[str, float] = {}
    for name, r in results.items():
        n = max(1, r["ok"] + r["errors"])
        per_req[name] = (r["user_s"] + r["sys_s"]) / n * 1e6
        print(
            f"{name:<8} {per_req[name]:>7.0f} {r['user_s'] / n * 1e6:>6.0f} "
            f"{r['sys_s'] / n * 1e6:>6.0f} {r['ok']:>7} {r['errors']:>5} {r['dropped']:>5} "
            f"{r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} {r['server_s'] / n * 1e6:>10.0f}"
        )
    if "k6" in results:
        print(f"(k6: {results['k6']['note']})")
    if "ours" in per_req:
        print()
        for name, value in per_req.items():
            if name not in ("ours", "harness"):
                print(f"{name} / ours = {value / per_req['ours']:.2f}x")


if __name__ == "__main__":
    main()
