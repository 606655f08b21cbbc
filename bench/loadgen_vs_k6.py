"""Our load engine vs the real k6 v1.1.0 at the same fixed arrival rates, same local nginx.

    . .venv/bin/activate && python bench/loadgen_vs_k6.py [--rates 2000,5000]
        [--duration 30 | --quick] [--no-pause] [--json out.json]      (see bench/README.md)

Why: DESIGN.md §6 wants a cheap hot path and latency from the scheduled start; k6 is
what we replace, so it is the yardstick. What: nginx (one process, ``return 200``) on
core 1; each client its own process on core 0 (k6: ``constant-arrival-rate`` script;
ours: ``run_load`` in ``--ours-child``), so CPU is measured alike: user+sys of the client
process from os.wait4. Prints achieved RPS, drops, p50/p99, CPU µs/request, RSS, nginx
CPU %, ratios ours/k6, and a 1 s SIGSTOP-of-nginx case. Prints; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

CLIENT_CORE, SERVER_CORE = 0, 1
K6 = shutil.which("k6") or str(Path(sys.executable).parent / "k6")
K6_RUN = ("run", "-q", "--no-color", "--no-usage-report", "--summary-export")
TREND_STATS = ["avg", "min", "med", "max", "p(90)", "p(95)", "p(99)"]
GOALS = (
    "Goals: ours <= 0.5x k6 CPU/request (at worst <= 1x); ours p50 within 20% of k6's; "
    "RSS flat (end ~= at 10 s)."
)
PAUSE_NOTE = (
    "Pause: nginx SIGSTOPped 1 s; latency = from the scheduled start (a stall shows in full, "
    "no coordinated omission), duration = from the write (service time); max ~1000 ms means "
    "the stall was seen, drops mean arrivals found no free VU."
)


def pinned(core: int) -> Callable[[], None]:
    return lambda: os.sched_setaffinity(0, {core})


# ---------------------------------------------------------------- target: nginx

NGINX_CONF = """\
daemon off; master_process off; worker_processes 1; worker_rlimit_nofile 65536;
pid {d}/nginx.pid; error_log {d}/error.log warn;
events {{ worker_connections 32768; multi_accept on; }}
http {{
    access_log off; keepalive_requests 100000000; keepalive_timeout 300s;
    client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
    uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
    server {{ listen 127.0.0.1:{port} backlog=4096; location = / {{ return 200 "ok"; }} }}
}}
"""


class Nginx:
    """One nginx process on a free loopback port, pinned to SERVER_CORE."""

    def __init__(self) -> None:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.path.exists(binary):
            sys.exit("nginx is not installed: apt-get update && apt-get install -y nginx")
        self.dir = tempfile.mkdtemp(prefix="bench-nginx-")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        conf = Path(self.dir, "nginx.conf")
        conf.write_text(NGINX_CONF.format(d=self.dir, port=self.port))
        cmd = [binary, "-p", self.dir, "-c", str(conf), "-e", f"{self.dir}/error.log"]
        self.proc = subprocess.Popen(cmd, preexec_fn=pinned(SERVER_CORE))
        self.ps = psutil.Process(self.proc.pid)
        self.paused = False
        try:
            self._wait_listening()
        except BaseException:
            self.stop()
            raise

    def _wait_listening(self) -> None:
        for _ in range(100):
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {Path(self.dir, 'error.log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not start listening")

    def cpu_s(self) -> float:
        t = self.ps.cpu_times()
        return t.user + t.system

    def pause(self, stop: bool = True) -> None:
        if stop != self.paused:
            self.proc.send_signal(signal.SIGSTOP if stop else signal.SIGCONT)
            self.paused = stop

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a stopped process cannot exit
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- clients


@dataclass
class Run:
    client: str
    rate: float
    duration: float
    requests: int = 0
    failed: int = 0
    dropped: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    latency_p99_ms: float | None = None  # ours: http_req_latency (from the scheduled start)
    latency_max_ms: float | None = None
    cpu_s: float = 0.0
    sys_s: float = 0.0
    fixed_cpu_s: float = 0.0
    startup_s: float = 0.0
    rss_mb: dict[str, float] = field(default_factory=dict)
    nginx_cpu_avg: float = 0.0
    nginx_cpu_max: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def achieved_rps(self) -> float:
        return self.requests / self.duration

    @property
    def cpu_us(self) -> float:
        return 1e6 * self.cpu_s / max(self.requests, 1)

    @property
    def net_cpu_us(self) -> float:
        return 1e6 * max(self.cpu_s - self.fixed_cpu_s, 0.0) / max(self.requests, 1)


def k6_script(url: str, rate: float, duration: float, pre_vus: int, max_vus: int) -> str:
    scenario = (
        f'{{executor: "constant-arrival-rate", rate: {rate}, timeUnit: "1s", '
        f'duration: "{duration}s", preAllocatedVUs: {min(pre_vus, max_vus)}, '
        f'maxVUs: {max_vus}, gracefulStop: "10s"}}'
    )
    return textwrap.dedent(f"""\
        import http from "k6/http";
        export const options = {{
          discardResponseBodies: true,
          summaryTrendStats: {json.dumps(TREND_STATS)},
          scenarios: {{ load: {scenario} }},
        }};
        export default function () {{ http.get("{url}/"); }}
        """)


def k6_command(run: Run, url: str, tmp: str, pre_vus: int, max_vus: int) -> list[str]:
    script = Path(tmp, "script.js")
    script.write_text(k6_script(url, run.rate, run.duration, pre_vus, max_vus))
    out = str(Path(tmp, "out.json"))
    return [K6, *K6_RUN, out, str(script)]


def read_k6(run: Run, tmp: str) -> None:
    m = json.loads(Path(tmp, "out.json").read_text())["metrics"]
    dur = m.get("http_req_duration", {})
    run.requests = int(m.get("http_reqs", {}).get("count", 0))
    run.failed = int(m.get("http_req_failed", {}).get("passes", 0))
    run.dropped = int(m.get("dropped_iterations", {}).get("count", 0))
    run.p50_ms, run.p99_ms, run.max_ms = dur.get("med", 0), dur.get("p(99)", 0), dur.get("max", 0)


def ours_command(run: Run, url: str, tmp: str, pre_vus: int, max_vus: int) -> list[str]:
    args = [str(run.rate), str(run.duration), str(max_vus), url, str(Path(tmp, "out.json"))]
    args.append(str(Path(tmp, "started")))
    return [sys.executable, __file__, "--ours-child", *args]


def read_ours(run: Run, tmp: str) -> None:
    data = json.loads(Path(tmp, "out.json").read_text())
    for key, value in data.items():
        setattr(run, key, value) if hasattr(run, key) else run.extra.__setitem__(key, value)


def ours_child(rate: str, duration: str, max_vus: str, url: str, out: str, marker: str) -> None:
    """Child mode: one run_load in this process; write its numbers as JSON."""
    from nightly_pipeline.loadgen import ConstantArrivalRate, GetPath, LoadTest, RunBounds, run_load

    class MarkedGet(GetPath):
        async def setup(self, worker: int, workers: int) -> None:
            Path(marker).touch()  # the run starts right after setup: the parent times from here

    executor = ConstantArrivalRate(
        rate=float(rate), bounds=RunBounds(float(duration)), max_vus=int(max_vus)
    )
    result = run_load(LoadTest(executor, MarkedGet("/"), url))
    stats = result.recorder.stats
    dur, lat = stats("http_req_duration"), stats("http_req_latency")
    data = dict(
        requests=int(stats("http_reqs").get("count", 0)),
        failed=int(stats("http_req_failed").get("passes", 0)),
        dropped=result.counts.get("dropped", 0),
        p50_ms=dur.get("med", 0.0), p99_ms=dur.get("p(99)", 0.0), max_ms=dur.get("max", 0.0),
        latency_p99_ms=lat.get("p(99)", 0.0), latency_max_ms=lat.get("max", 0.0),
        sched_lag_p99_ms=result.scheduling_lag_p99_ms, generator_bound=result.generator_bound,
    )  # fmt: skip
    Path(out).write_text(json.dumps(data))


CLIENTS = {"k6": (k6_command, read_k6), "ours": (ours_command, read_ours)}


def tree_rss_mb(pid: int) -> float:
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
        return sum(p.memory_info().rss for p in procs) / 2**20
    except psutil.Error:
        return 0.0


def measure(
    run: Run, nginx: Nginx, pre_vus: int, max_vus: int, pause_at: float | None = None
) -> Run:
    """Run one client process to completion; fill ``run`` in (CPU from os.wait4)."""
    command, read = CLIENTS[run.client]
    marks = {f"{t:g}s": t for t in (min(10.0, run.duration / 2), run.duration)}
    with tempfile.TemporaryDirectory(prefix="bench-client-") as tmp:
        cmd = command(run, nginx.url, tmp, pre_vus, max_vus)
        env = {**os.environ, "K6_NO_USAGE_REPORT": "true"}
        with open(Path(tmp, "err"), "w") as err:
            proc = subprocess.Popen(
                cmd, env=env, stdout=subprocess.DEVNULL, stderr=err, preexec_fn=pinned(CLIENT_CORE)
            )
        try:
            marker = Path(tmp, "started")
            status, rusage = monitor(proc.pid, run, nginx, marks, pause_at, marker)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            nginx.pause(False)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise RuntimeError(f"{run.client} failed: {Path(tmp, 'err').read_text()[-2000:]}")
        run.cpu_s, run.sys_s = rusage.ru_utime + rusage.ru_stime, rusage.ru_stime
        read(run, tmp)
    return run


def monitor(
    pid: int,
    run: Run,
    nginx: Nginx,
    marks: dict[str, float],
    pause_at: float | None,
    marker: Path,
) -> tuple[int, Any]:
    """Sample RSS and nginx CPU until ``pid`` exits; pause nginx at ``pause_at`` for 1 s.
    Times count from the client's start: the ``marker`` file it touches as its run starts
    (ours), else its first connection to nginx (k6: nginx's fd count rises)."""
    fds0, launched = nginx.ps.num_fds(), time.monotonic()
    t0 = last = 0.0
    cpu0 = cpu_last = nginx.cpu_s()
    pending, rss, peaks = dict(marks), 0.0, [0.0]
    while not (reaped := os.wait4(pid, os.WNOHANG))[0]:
        now = time.monotonic()
        if not t0 and (marker.exists() or nginx.ps.num_fds() > fds0):
            t0 = last = now
            run.startup_s, cpu0 = now - launched, nginx.cpu_s()
        elapsed = now - t0 if t0 else -1.0
        due = [name for name, at in pending.items() if elapsed >= at]
        if due or (t0 and now - last >= 1.0):
            rss = tree_rss_mb(pid) or rss
        for name in due:
            run.rss_mb[name] = rss
            del pending[name]
        if pause_at is not None and not nginx.paused and pause_at <= elapsed < pause_at + 1:
            nginx.pause()
        elif nginx.paused and elapsed >= pause_at + 1:  # type: ignore[operator]
            nginx.pause(False)
        if t0 and now - last >= 1.0:
            cpu = nginx.cpu_s()
            peaks.append(100 * (cpu - cpu_last) / (now - last))
            cpu_last, last = cpu, now
        time.sleep(0.05)
    run.rss_mb.update(dict.fromkeys(pending, rss))
    run.nginx_cpu_avg = 100 * (nginx.cpu_s() - cpu0) / max(time.monotonic() - t0, 1e-9)
    run.nginx_cpu_max = max(peaks)
    return reaped[1], reaped[2]


# ---------------------------------------------------------------- report


def print_main(runs: list[Run]) -> list[dict[str, float]]:
    head = (
        f"{'client':6} {'rate':>5} {'achieved':>8} {'dropped':>7} {'failed':>6} {'p50 ms':>6} "
        f"{'p99 ms':>7} {'CPU µs/req':>10} {'(net)':>6} {'CPU%':>5} {'sys%':>4} "
        f"{'RSS MB @t':>17}  nginx CPU% avg/max"
    )
    print(head, "-" * len(head), sep="\n")
    for r in runs:
        print(
            f"{r.client:6} {r.rate:>5.0f} {r.achieved_rps:>8.1f} {r.dropped:>7} {r.failed:>6} "
            f"{r.p50_ms:>6.3f} {r.p99_ms:>7.3f} {r.cpu_us:>10.1f} {r.net_cpu_us:>6.1f} "
            f"{100 * r.cpu_s / r.duration:>5.1f} {100 * r.sys_s / max(r.cpu_s, 1e-9):>4.0f} "
            f"{' '.join(f'{t}:{mb:.1f}' for t, mb in r.rss_mb.items()):>17}  "
            f"{r.nginx_cpu_avg:>5.1f} / {r.nginx_cpu_max:.1f}"
            + (f"\n{'':13}ours: {r.extra}" if r.extra else "")
        )
    ratios = []
    for rate in sorted({r.rate for r in runs}):
        by = {r.client: r for r in runs if r.rate == rate}
        if {"k6", "ours"} <= by.keys():
            k6, ours = by["k6"], by["ours"]
            cpu, net = ours.cpu_us / k6.cpu_us, ours.net_cpu_us / max(k6.net_cpu_us, 1e-9)
            p50 = ours.p50_ms / max(k6.p50_ms, 1e-9)
            ratios.append({"rate": rate, "cpu_per_req": cpu, "net_cpu_per_req": net, "p50": p50})
            print(f"ours/k6 @ {rate:.0f} RPS: CPU/req {cpu:.2f}x (net {net:.2f}x), p50 {p50:.2f}x")
    print(GOALS)
    return ratios


def print_pause(runs: list[Run]) -> None:
    print(f"\n{'client':6} {'metric':18} {'p99 ms':>8} {'max ms':>8} {'dropped':>7} {'reqs':>6}")
    for r in runs:
        rows = [("http_req_duration", r.p99_ms, r.max_ms)]
        if r.latency_p99_ms is not None:
            rows.insert(0, ("http_req_latency", r.latency_p99_ms, r.latency_max_ms))
        for metric, p99, mx in rows:
            print(f"{r.client:6} {metric:18} {p99:8.1f} {mx:8.1f} {r.dropped:>7} {r.requests:>6}")
    print(PAUSE_NOTE)


# ---------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rates", default="2000,5000", help="comma-separated RPS")
    p.add_argument("--duration", type=float, default=30.0, help="seconds per run")
    p.add_argument("--quick", action="store_true", help="10 s runs")
    p.add_argument("--clients", default="k6,ours")
    p.add_argument("--max-vus", type=int, default=1000)
    p.add_argument("--pre-vus", type=int, default=100, help="k6 preAllocatedVUs")
    p.add_argument("--no-pause", action="store_true", help="skip the paused-server case")
    p.add_argument("--pause-rate", type=float, default=1000.0)
    p.add_argument("--pause-duration", type=float, default=10.0)
    p.add_argument("--pause-at", type=float, default=4.0)
    p.add_argument("--pause-max-vus", type=int, default=2000)
    p.add_argument("--json", type=Path, help="also write the results here")
    return p.parse_args()


def pause_case(client: str, nginx: Nginx, args: argparse.Namespace) -> Run:
    print(f"... {client} paused-server case", flush=True)
    run, vus = Run(client, args.pause_rate, args.pause_duration), args.pause_max_vus
    return measure(run, nginx, vus, vus, args.pause_at)  # k6: all VUs pre-allocated


def raise_exit(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    if len(sys.argv) == 8 and sys.argv[1] == "--ours-child":
        ours_child(*sys.argv[2:])
        return
    args = parse_args()
    duration = 10.0 if args.quick else args.duration
    rates = [float(r) for r in args.rates.split(",") if r]
    clients = [c for c in args.clients.split(",") if c]
    if not os.path.exists(K6) and "k6" in clients:
        sys.exit(f"k6 binary not found ({K6})")
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, raise_exit)
    nginx = Nginx()
    try:
        print(f"nginx {nginx.url} on core {SERVER_CORE}; clients on core {CLIENT_CORE}")
        calib = {c: measure(Run(c, 1, 1), nginx, 1, 10) for c in clients}
        print("fixed cost, a 1 s run at 1 RPS: " + ", ".join(
            f"{c} {r.cpu_s * 1e3:.0f} ms CPU, {r.startup_s:.2f} s to first request"
            for c, r in calib.items()))  # fmt: skip
        runs = []
        for rate in rates:
            for client in clients:
                print(f"... {client} at {rate:.0f} RPS for {duration:.0f} s", flush=True)
                run = measure(Run(client, rate, duration), nginx, args.pre_vus, args.max_vus)
                run.fixed_cpu_s = calib[client].cpu_s
                runs.append(run)
        print()
        ratios = print_main(runs)
        pauses = [] if args.no_pause else [pause_case(c, nginx, args) for c in clients]
        if pauses:
            print_pause(pauses)
        if args.json:
            dump = {"runs": [asdict(r) | {"cpu_us": r.cpu_us} for r in runs], "ratios": ratios}
            dump["pause"] = [asdict(r) for r in pauses]
            args.json.write_text(json.dumps(dump, indent=2))
    finally:
        nginx.stop()


if __name__ == "__main__":
    main()
