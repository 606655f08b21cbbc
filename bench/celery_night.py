"""The same ci night in process (the default executor) and on dagster-celery with two
workers (Redis broker and backend), each in a fresh home: the wall time of each, the
ratio, and whether both nights passed. Prints numbers; asserts nothing.

    python bench/celery_night.py [--tests 02,06] [--rounds 1]

The tests hold one target at a time (the ``target`` pool), so Celery cannot overlap them:
what it adds is each step's own platform start (per test, not per run), the submission
and the 1 s polling of dagster-celery's loop. Workers are started before the clock.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nightly_pipeline.automation.executors import CeleryBroker  # noqa: E402
from nightly_pipeline.automation.run import run_night  # noqa: E402
from nightly_pipeline.home import Home  # noqa: E402
from nightly_pipeline.suite.catalog import select_tests  # noqa: E402
from nightly_pipeline.suite.profiles import PROFILES  # noqa: E402
from tests.dagster.celery_workers import celery_cluster  # noqa: E402

NIGHT = date(2026, 11, 18)


def timed(root: Path, tests: str, broker: CeleryBroker | None) -> tuple[float, str]:
    """Wall seconds of the night, and ``passed`` or why not."""
    t0 = time.monotonic()
    run = run_night(
        select_tests(tests),
        PROFILES["ci"],
        NIGHT,
        target="embedded",
        home=Home.at(root),
        celery=broker,
    )
    seconds = time.monotonic() - t0
    failed = [f"{c.test} {c.name}" for c in run.checks if c.failed and c.blocking]
    if not run.success:
        return seconds, f"run failed: {run.error}"
    return seconds, f"blocking check(s) failed: {', '.join(failed)}" if failed else "passed"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", default="02,06")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="celery-bench-") as tmp:
        root = Path(tmp)
        with celery_cluster(root / "celery") as cluster:
            for i in range(args.rounds):
                rows.append(("in_process", *timed(root / f"in-{i}", args.tests, None)))
                rows.append(("celery x2", *timed(root / f"cel-{i}", args.tests, cluster.broker)))
    print(f"ci night, tests {args.tests}, {args.rounds} round(s); load {os.getloadavg()[0]:.1f}")
    print(f"{'executor':<12}{'wall s':>8}  outcome")
    for name, seconds, outcome in rows:
        print(f"{name:<12}{seconds:>8.1f}  {outcome}")
    base = [s for n, s, _ in rows if n == "in_process"]
    cel = [s for n, s, _ in rows if n != "in_process"]
    print(f"celery / in_process: {sum(cel) / sum(base):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
