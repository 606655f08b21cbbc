"""Run by test_interrupts.py as a script: a 60 s load against URL (argv[1]) with
WORKERS (argv[2]) workers; prints READY once the load runs, then the outcome.

SIGINT is handled the way Dagster handles it inside a step: a Python handler that raises
an exception of its own (``DagsterExecutionInterruptedError``) wherever the main thread
is. (Plain KeyboardInterrupt is not the hard case: asyncio.Runner installs its own
handler for it.)"""

import signal
import sys
import time

from nightly_pipeline.loadgen import ConstantArrivalRate, LoadTest, RunBounds, run_load
from nightly_pipeline.loadgen.scenario import GetPath

LOAD_S = 60.0


class Interrupted(Exception):
    pass


def raise_interrupted(signum, frame) -> None:
    raise Interrupted()


if __name__ == "__main__":
    url, workers = sys.argv[1], int(sys.argv[2])
    signal.signal(signal.SIGINT, raise_interrupted)
    started = time.monotonic()

    def progress(p) -> None:
        if p.iterations:
            print("READY", flush=True)

    try:
        run_load(
            LoadTest(
                ConstantArrivalRate(rate=50, bounds=RunBounds(LOAD_S)),
                GetPath("/"),
                url,
                workers=workers,
            ),
            progress,
        )
    except Interrupted:
        print(f"INTERRUPTED after {time.monotonic() - started:.1f} s", flush=True)
        sys.exit(130)
    print("COMPLETED", flush=True)
