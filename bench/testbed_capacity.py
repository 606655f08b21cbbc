"""Capacity of the embedded testbed: the knee of 1 KiB ``POST /v1/messages`` on this machine.

    . .venv/bin/activate && python bench/testbed_capacity.py [--rates 100,200,...]
        [--duration 20 | --quick] [--no-profile]                   (see bench/README.md)

The platform starts once (50 users, 10 conversations x 5 participants, one WebSocket per
participant held by a listener thread of this process that counts frames by message_id
and checks sha256). Each step runs our engine (``run_load``, one worker) in a spawned
child process, so its CPU is measured apart from the listener's and the two event loops
do not share a GIL. A step passes when p95(http_req_duration) < 100 ms, no request
failed, >= 95 % of the target rate was achieved and every 202 message reached each of its
conversation's 5 sockets exactly once within 10 s. Stops after the first failing step;
below the goal it profiles the API (py-spy) and samples pg_stat_activity at the failing
rate. Prints; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import multiprocessing as mp
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import aiohttp
import asyncpg
import httpx
import psutil

from nightly_pipeline.testbed.embedded import PlatformSettings, embedded_platform
from nightly_pipeline.testbed.metrics import parse_text
from nightly_pipeline.testbed.stack import StackConfig

PER_CONV = 5
P95_MS, GOAL_RPS, DRAIN_S = 100.0, 500, 10.0
GROUPS = ("api", "dispatcher", "consumer", "postgres", "redis", "proxy-postgres", "proxy-redis")
TREES = ("postgres", "redis")  # CPU summed over the process and its descendants
TAGS = {"name": "post_message"}
PG_WAITS = """SELECT usename || ' ' || state || ' / ' || coalesce(wait_event_type || ':' ||
    wait_event, 'CPU') FROM pg_stat_activity WHERE usename LIKE 'testbed%'"""
BODY = b'{"conversation_id":"%s","client_msg_id":"s%d-%d","ciphertext":"%s","sha256":"%s"}'


class PostMessages:
    """Scenario: 1 KiB ciphertext (8-byte send time + random) to each (conversation, sender)
    pair in turn; keeps (message_id, conversation index) of every 202 and status counts."""

    def __init__(self, senders: list[tuple[str, int, str]], step: int) -> None:
        self.senders, self.step = senders, step  # (conversation id, index, access token)

    async def setup(self, worker: int, workers: int) -> None:
        self.n, self.sent, self.status = 0, [], Counter()
        self.headers = [
            [(b"Authorization", f"Bearer {tok}".encode()), (b"Content-Type", b"application/json")]
            for _, _, tok in self.senders
        ]

    async def iteration(self, vu) -> None:
        n, k = self.n, self.n % len(self.senders)
        self.n += 1
        conv, index, _ = self.senders[k]
        payload = struct.pack("<d", time.time()) + os.urandom(1016)
        digest = hashlib.sha256(payload).hexdigest().encode()
        body = BODY % (conv.encode(), self.step, n, base64.b64encode(payload), digest)
        r = await vu.http.post("/v1/messages", body, headers=self.headers[k], tags=TAGS)
        self.status[r.status] += 1
        if r.status == 202:
            self.sent.append((r.json()["message_id"], index))


def generator_child(conn, base_url: str, rate: int, duration: float, scenario) -> None:
    """Child process: wait for "go", run the load, send back stats and the sent ids."""
    from nightly_pipeline.loadgen import ConstantArrivalRate, LoadTest, RunBounds, run_load

    bounds = RunBounds(duration, graceful_stop_s=10.0)
    test = LoadTest(ConstantArrivalRate(rate, bounds, max_vus=2 * rate), scenario, base_url)
    conn.send("ready")
    conn.recv()
    res = run_load(test)
    rec, nan = res.recorder, float("nan")
    d = rec.stats("http_req_duration", TAGS)
    out = {
        "reqs": int(rec.stats("http_reqs", TAGS).get("count", 0)),
        **{k: d.get(s, nan) for k, s in (("p50", "med"), ("p95", "p(95)"), ("p99", "p(99)"))},
        "failed": int(rec.stats("http_req_failed", TAGS).get("passes", 0)),
        "dropped": res.counts.get("dropped", 0),
        "errors": res.counts.get("errors", 0) + res.counts.get("interrupted", 0),
        "gen_bound": res.generator_bound,
        "status": dict(scenario.status),
    }
    conn.send((out, scenario.sent))


class Listener:
    """One WebSocket per participant on an asyncio loop in a thread of this process."""

    def __init__(self, ws_url: str, tokens: list[str]) -> None:
        self.got: dict[str, list[int]] = defaultdict(list)  # message_id -> socket indices
        self.lat: list[float] = []
        self.bad_sha = self.closed = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.call(self._open(ws_url, tokens), 30)

    def call(self, coro, timeout: float):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _open(self, ws_url: str, tokens: list[str]) -> None:
        connector = aiohttp.TCPConnector(limit=0)  # the default (100) would cap the sockets
        self.session = aiohttp.ClientSession(connector=connector, trust_env=False)
        self.tasks = []
        for user, tok in enumerate(tokens):
            auth = {"Authorization": f"Bearer {tok}"}
            ws = await self.session.ws_connect(ws_url, headers=auth, heartbeat=10)
            self.tasks.append(asyncio.create_task(self._read(ws, user)))  # keep a reference

    async def _read(self, ws, user: int) -> None:
        async for msg in ws:
            frame = json.loads(msg.data) if msg.type == aiohttp.WSMsgType.TEXT else {}
            if frame.get("type") != "message":
                continue
            ct = base64.b64decode(frame["ciphertext"])
            self.bad_sha += hashlib.sha256(ct).hexdigest() != frame["sha256"]
            self.lat.append(time.time() - struct.unpack_from("<d", ct)[0])
            self.got[frame["message_id"]].append(user)
        self.closed += 1

    async def _count(self, sent: list[tuple[str, int]]) -> tuple[int, int, int]:
        """(frames for ``sent``, messages delivered exactly once to all 5 sockets, dups)."""
        frames = full = dups = 0
        for mid, conv in sent:
            users = self.got.get(mid, ())
            frames += len(users)
            dups += len(users) - len(set(users))
            want = set(range(conv * PER_CONV, (conv + 1) * PER_CONV))
            full += len(users) == PER_CONV and set(users) == want
        return frames, full, dups

    def drain(self, sent: list[tuple[str, int]]) -> tuple[int, int]:
        deadline = time.monotonic() + DRAIN_S
        while time.monotonic() < deadline:
            if self.call(self._count(sent), 30)[0] >= PER_CONV * len(sent):
                break
            time.sleep(0.2)
        time.sleep(0.5)  # a duplicate would arrive now
        return self.call(self._count(sent), 30)[1:]

    def close(self) -> None:
        try:
            self.call(self.session.close(), 10)  # ends the readers
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)


async def pg_waits(dsn: str, seconds: float) -> tuple[Counter, int]:
    """Sample the testbed's PostgreSQL sessions by state and wait event at 10 Hz."""
    conn, seen, n = await asyncpg.connect(dsn), Counter(), 0
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            seen.update(r[0] for r in await conn.fetch(PG_WAITS))
            n += 1
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    return seen, n


def busy() -> float:
    """CPU seconds the whole machine has been busy (all cores, every process)."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "guest", 0.0)


class Sampler(threading.Thread):
    """Every second: CPU seconds per process group, max of the platform's lag gauges."""

    def __init__(self, pids: dict[str, int], metrics: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.pids, self.metrics, self.last = pids, metrics, {}
        self.cpu = dict.fromkeys(pids, 0.0)
        self.lag = dict.fromkeys(metrics, 0.0)
        self.stop = threading.Event()
        self._sample()  # the baseline
        self.cpu, self.t0, self.host = dict.fromkeys(pids, 0.0), time.monotonic(), busy()

    def _sample(self) -> None:
        for group, pid in self.pids.items():
            try:
                root = psutil.Process(pid)
                procs = [root, *root.children(recursive=True)] if group in TREES else [root]
                for p in procs:
                    t = p.cpu_times()
                    self.cpu[group] += t.user + t.system - self.last.get(p.pid, 0.0)
                    self.last[p.pid] = t.user + t.system
            except psutil.Error:
                continue

    def run(self) -> None:
        with httpx.Client(trust_env=False, timeout=2) as http:
            while not self.stop.wait(1.0):
                self._sample()
                for kind, url in self.metrics.items():
                    try:
                        vals = parse_text(http.get(url).text)
                    except (httpx.HTTPError, ValueError):
                        continue
                    lag = vals.get(f"messaging_{kind}_lag_seconds", 0.0)
                    self.lag[kind] = max(self.lag[kind], lag)

    def finish(self) -> dict[str, float]:
        self.stop.set()
        self.join(5)
        self._sample()
        self.cpu["machine"] = busy() - self.host
        return {g: 100.0 * s / (time.monotonic() - self.t0) for g, s in self.cpu.items()}


def prepare(up, convs: int) -> tuple[list[tuple[str, int, str]], list[str]]:
    """Log the users in, create the conversations; (senders, one token per socket)."""
    names = sorted(up.users, key=up.users.get)
    with httpx.Client(base_url=up.base_url, trust_env=False, timeout=10) as c:
        tokens = []
        for name in names:
            r = c.post("/v1/auth/login", json={"username": name, "password": up.password})
            tokens.append(r.raise_for_status().json()["access_token"])
        senders = []
        for i in range(convs):
            members, owner = names[i * PER_CONV : (i + 1) * PER_CONV], tokens[i * PER_CONV]
            r = c.post(
                "/v1/conversations",
                json={"title": f"bench-{i}", "participants": members[1:]},
                headers={"Authorization": f"Bearer {owner}"},
            )
            conv = r.raise_for_status().json()["id"]
            senders += [(conv, i, tokens[i * PER_CONV + j]) for j in range(PER_CONV)]
    return senders, tokens


def run_step(up, listener, senders, rate: int, duration: float, step: int, on_go=None) -> dict:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    args = (child, up.base_url, rate, duration, PostMessages(senders, step))
    proc = ctx.Process(target=generator_child, args=args, daemon=True)
    proc.start()
    child.close()
    try:
        if not parent.poll(60):
            raise RuntimeError("generator not ready after 60 s")
        parent.recv()
        listener.lat = []
        pids = {g: up.endpoints.pids[g] for g in GROUPS}
        pids |= {"generator": proc.pid, "listener": os.getpid()}
        urls = {"dispatch": up.metrics_urls["dispatcher"], "consumer": up.metrics_urls["consumer"]}
        sampler = Sampler(pids, urls)
        sampler.start()
        parent.send("go")
        if on_go is not None:
            on_go()
        if not parent.poll(duration + 60):
            raise RuntimeError("generator did not finish in time")
        out, sent = parent.recv()
        cpu = sampler.finish()
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
    delivered, dups = listener.drain(sent)
    lat = sorted(listener.lat) or [float("nan")]
    out |= {"rate": rate, "achieved": out["reqs"] / duration, "sent": len(sent), "cpu": cpu}
    out |= {"delivered": delivered, "dups": dups, "lag": sampler.lag, "e2e_max": 1e3 * lat[-1]}
    out["e2e_p95"] = 1e3 * lat[int(0.95 * (len(lat) - 1))]
    ok = out["p95"] < P95_MS and out["failed"] == out["errors"] == 0 and dups == 0
    out["ok"] = ok and out["achieved"] >= 0.95 * rate and delivered == len(sent)
    out["ok"] = out["ok"] and listener.bad_sha == listener.closed == 0
    return out


HEAD = (
    " rate   achv    p50    p95     p99  fail  drop  delivered/sent  dup   e2e95  e2eMax"
    "  dLag  cLag ok   (ms; lags = max of the gauges, s)"
)


def row(r: dict) -> str:
    codes = {k: v for k, v in r["status"].items() if k != 202}
    return (
        f"{r['rate']:>5} {r['achieved']:>6.0f} {r['p50']:>6.1f} {r['p95']:>6.1f} {r['p99']:>7.1f} "
        f"{r['failed'] + r['errors']:>5} {r['dropped']:>5} {r['delivered']:>7}/{r['sent']:<7} "
        f"{r['dups']:>4} {r['e2e_p95']:>7.0f} {r['e2e_max']:>7.0f} {r['lag']['dispatch']:>5.2f} "
        f"{r['lag']['consumer']:>5.2f} {'yes' if r['ok'] else 'NO '}"
        + (f" statuses {codes}" if codes else "")
        + (" generator-bound" if r["gen_bound"] else "")
    )


def print_cpu(results: list[dict]) -> None:
    names = [*GROUPS, "generator", "listener"]
    print("\nCPU % of one core per process, averaged over the step (2 cores = 200 %):")
    print(" rate " + " ".join(f"{n[:10]:>10}" for n in names) + "   total  ms/msg  others")
    for r in results:
        total = sum(r["cpu"][n] for n in names)
        cells = " ".join(f"{r['cpu'][n]:>10.0f}" for n in names)
        per_msg = 10 * total / max(r["achieved"], 1)
        other = r["cpu"]["machine"] - total  # anything else on the machine (other jobs)
        print(f"{r['rate']:>5} {cells} {total:>7.0f} {per_msg:>7.2f} {other:>7.0f}")


def profile(up, listener, senders, rate: int, tmp: Path) -> None:
    """One 15 s step at ``rate``; py-spy on the API and pg_stat_activity for 10 s of it."""
    raw, found = tmp / "api.raw", {}
    spy = shutil.which(
        "py-spy", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    )
    if spy is None:
        print("\nno profile: py-spy is not installed (.venv/bin/pip install py-spy)")
        return
    cmd = [spy, "record", "--pid", str(up.endpoints.pids["api"]), "--duration", "10"]
    cmd += ["--rate", "100", "--format", "raw", "--nonblocking", "-o", str(raw)]

    def on_go() -> None:
        time.sleep(3)
        api = psutil.Process(up.endpoints.pids["api"])
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        before = api.cpu_times()
        found["waits"] = listener.call(pg_waits(up.endpoints.postgres_dsn, 10.0), 30)
        after = api.cpu_times()
        found["err"] = proc.communicate(timeout=30)[1].decode()[-300:]
        found["cpu"] = (after.user - before.user, after.system - before.system)

    print(f"\nprofiling at {rate} RPS (py-spy on the API, pg_stat_activity at 10 Hz) ...")
    print(row(run_step(up, listener, senders, rate, 15.0, 99, on_go)))
    seen, n = found["waits"]
    print("PostgreSQL sessions by state / wait (average count over the samples):")
    for what, count in seen.most_common(8):
        print(f"  {count / n:6.1f}  {what}")
    if not raw.exists():
        print(f"py-spy failed: {found['err']}")
        return
    own, incl, total = Counter(), Counter(), 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [
            (name or "?") + " (" + os.path.basename(loc.split(":")[0])
            for name, _, loc in (f.rpartition(" (") for f in stack.split(";"))
        ]
        if "Runner.run (runners.py" in frames:  # drop the frames above the event loop
            frames = frames[frames.index("Runner.run (runners.py") :]
        frames[0] = frames[0].replace("Runner.run (runners.py", "event loop, C (uvloop")
        total += int(count)
        own[frames[-1] + ")"] += int(count)
        incl.update(dict.fromkeys({f + ")" for f in frames[1:]}, int(count)))
    user, system = found["cpu"]
    print(f"API CPU in those 10 s: user {10 * user:.0f} %, system {10 * system:.0f} % of a core")
    print(f"API profile: {total} non-idle samples in 10 s at 100 Hz (1000 = one core busy)")
    for title, counter in (("own", own), ("inclusive", incl)):
        print(f"  top by {title} samples:")
        for name, count in counter.most_common(12):
            print(f"    {100 * count / max(total, 1):5.1f} %  {name}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="100,200,300,400,500,600,800")
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--quick", action="store_true", help="10 s steps")
    ap.add_argument("--conversations", type=int, default=10, help=f"x {PER_CONV} participants")
    ap.add_argument("--no-profile", action="store_true")
    args = ap.parse_args()
    convs, rates = args.conversations, [int(r) for r in args.rates.split(",")]
    duration = 10.0 if args.quick else args.duration
    tmp = Path(tempfile.mkdtemp(prefix="bench-capacity-"))
    (tmp / "sys").mkdir(mode=0o755)
    tmp.chmod(0o755)
    path = os.environ.get("PATH")
    stack = StackConfig(tmp / "run", system_dir=tmp / "sys", stop_timeout_s=5, search_path=path)
    results, listener = [], None
    try:
        settings = PlatformSettings(convs * PER_CONV, password_hash_n=2**10)
        with embedded_platform(stack, settings) as up:
            senders, tokens = prepare(up, convs)
            listener = Listener(up.ws_url, tokens)
            print(f"platform up; {convs} conversations x {PER_CONV} sockets; {duration:g} s steps")
            warm = run_step(up, listener, senders, rates[0], 5.0, 0)
            print(f"warm-up (5 s, pool and caches; not counted): p95 {warm['p95']:.1f} ms")
            print(HEAD)
            for step, rate in enumerate(rates):
                results.append(run_step(up, listener, senders, rate, duration, step + 1))
                print(row(results[-1]), flush=True)
                if not results[-1]["ok"]:
                    break
            knee = max((r["rate"] for r in results if r["ok"]), default=0)
            verdict = "met" if knee >= GOAL_RPS else "NOT met"
            print(f"\nknee: {knee} RPS (p95 < {P95_MS:.0f} ms and delivered == sent)")
            print(f"goal: >= {GOAL_RPS} RPS (Test 1) -> {verdict}")
            print_cpu(results)
            if knee < GOAL_RPS and not args.no_profile:
                profile(up, listener, senders, results[-1]["rate"], tmp)
    finally:
        if listener is not None:
            listener.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
