"""The generator fleet's rate: what one fleet worker sustains, and what two reach together.

    python bench/generator_fleet.py [--rates 250,500,750,...,4000] [--duration 5]

Starts the embedded Redis (broker, result backend and the fleet's channel), the loopback
HTTP server (testbed/echo.py) and 1, then 2, Celery fleet workers (tests/loadgen/fleet_procs.py);
for each fleet size it runs ``GetPath("/")`` at each rate in turn (constant-arrival-rate,
``--duration`` s) and stops at the first rate it cannot sustain. Sustained: no dropped
iteration, no failed request, at least 98 % of the rate achieved and scheduling lag p99
under 25 ms (not generator-bound). Also the same search on this host without a fleet
(run_load, one process) for the fleet's own overhead. Prints the highest sustained
rate of each and the ratio two / one. Asserts nothing.

On one machine the "hosts" share its cores with the target, Redis and each other: the
second worker gets only the CPU the first left idle, so the ratio is a floor of what two
separate hosts reach (the output says so), and "this host, no fleet" beside "one fleet
worker" shows the fleet's own overhead.
Everything started is stopped by its pid on success, failure and Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nightly_pipeline.loadgen import ConstantArrivalRate, LoadTest, RunBounds, run_load  # noqa: E402
from nightly_pipeline.loadgen.fleet_wire import FleetSettings  # noqa: E402
from nightly_pipeline.loadgen.scenario import GetPath  # noqa: E402
from nightly_pipeline.testbed.echo import http_server  # noqa: E402
from tests.loadgen.fleet_procs import fleet_redis, fleet_workers  # noqa: E402


def one_run(
    url: str, rate: float, duration: float, workers: int, fleet: FleetSettings | None
) -> dict:
    config = ConstantArrivalRate(rate=rate, bounds=RunBounds(duration), max_vus=2000)
    result = run_load(LoadTest(config, GetPath("/"), url, workers=workers, fleet=fleet))
    rec = result.recorder
    achieved = rec.stats("http_reqs").get("count", 0) / duration
    failed = rec.stats("http_req_failed").get("passes", 0)
    row = {
        "rate": rate,
        "achieved": achieved,
        "dropped": result.counts.get("dropped", 0),
        "failed": failed,
        "lag_p99_ms": result.scheduling_lag_p99_ms,
        "p99_ms": rec.stats("http_req_duration").get("p(99)"),
    }
    row["sustained"] = (
        row["dropped"] == 0
        and not failed
        and achieved >= 0.98 * rate
        and not result.generator_bound
    )
    return row


def search(label: str, url: str, rates: list[float], duration: float, workers: int, fleet) -> float:
    """The highest rate of ``rates`` sustained (stops at the first that is not)."""
    best = 0.0
    for rate in rates:
        row = one_run(url, rate, duration, workers, fleet)
        p99 = "-" if row["p99_ms"] is None else f"{row['p99_ms']:.1f}"
        print(
            f"  {label:<22} {rate:>7.0f}/s  achieved {row['achieved']:>8.1f}/s"
            f"  dropped {row['dropped']:>6}  failed {row['failed']:>5.0f}"
            f"  lag p99 {row['lag_p99_ms']:>7.1f} ms  p99 {p99:>7} ms"
            f"  {'ok' if row['sustained'] else 'NOT sustained'}",
            flush=True,
        )
        if not row["sustained"]:
            break
        best = rate
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="250,500,750,1000,1250,1500,1750,2000,2500,3000,4000")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--no-local", action="store_true", help="skip the no-fleet search")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    cores = os.cpu_count() or 1
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"generator fleet rate search, {args.duration:g} s per step, {cores} cores here")
    print(f"load average before: {load} (other work on this machine shows in every figure)")
    found: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp, http_server() as server:
        if not args.no_local:
            found["local"] = search(
                "this host, no fleet", server.url, rates, args.duration, 1, None
            )
        with fleet_redis(Path(tmp) / "redis") as broker:
            fleet = FleetSettings(broker)
            for n in (1, 2):
                with fleet_workers(broker, n, Path(tmp)):
                    found[str(n)] = search(
                        f"fleet, {n} worker(s)", server.url, rates, args.duration, n, fleet
                    )
    print()
    if "local" in found:
        print(f"this host without a fleet sustains  {found['local']:>7.0f}/s")
    print(f"one fleet worker sustains            {found['1']:>7.0f}/s")
    print(f"two fleet workers together sustain   {found['2']:>7.0f}/s")
    if found["1"]:
        print(f"ratio two / one                      {found['2'] / found['1']:>7.2f}x")
    print(f"load average after: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(
        f"NOTE: both workers ran on this machine ({cores} cores), sharing them with the"
        " HTTP target, Redis and whatever else runs here: the second worker only gets the"
        " CPU the first left idle, so this ratio is a floor of what two hosts reach (each"
        " with its own cores)."
    )


if __name__ == "__main__":
    main()
