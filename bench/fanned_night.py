"""A night on one target vs the same night fanned out over N (embedded platforms), with
where the time went. Prints numbers and the ratio; asserts nothing.

    python bench/fanned_night.py [--profile ci] [--tests 02,03,06] [--targets 2]

Per night: its wall time (``nightly run``'s work: reaping, the suite run(s), history,
compaction), then per Dagster suite run its wall time, how long after the night's start
it began (a fanned-out night's worker process starting Python and Dagster), and per
step (one test: its platform's start included for the target's first) its time. Then
the plan's expected end beside what happened.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


from nightly_pipeline.automation.fanned_night import run_fanned_night  # noqa: E402
from nightly_pipeline.automation.instance import open_instance  # noqa: E402
from nightly_pipeline.automation.run import NightRun, run_night  # noqa: E402
from nightly_pipeline.home import Home  # noqa: E402
from nightly_pipeline.suite.catalog import select_tests  # noqa: E402
from nightly_pipeline.suite.night_plan import night_places, plan_night  # noqa: E402
from nightly_pipeline.suite.profiles import profile_named  # noqa: E402

NIGHT = date(2026, 11, 18)


def breakdown(home: Home, run: NightRun, started: float) -> None:
    """Each suite run's and step's time, from the Dagster instance."""
    with open_instance(home) as instance:
        for run_id in run.run_ids:
            record = instance.get_run_record_by_id(run_id)
            tags = record.dagster_run.tags
            print(
                f"  run {run_id[:8]} target {tags.get('nightly/target', 'embedded')}: "
                f"{record.end_time - record.start_time:6.1f} s, began "
                f"{record.start_time - started:5.1f} s into the night"
            )
            stats = instance.get_run_step_stats(run_id)
            for step in sorted(stats, key=lambda s: s.start_time or 0):
                if step.start_time and step.end_time:
                    print(f"    {step.step_key:32} {step.end_time - step.start_time:6.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="ci")
    parser.add_argument("--tests", default="02,03,06")
    parser.add_argument("--targets", type=int, default=2)
    args = parser.parse_args()
    profile, tests = profile_named(args.profile), select_tests(args.tests)
    with tempfile.TemporaryDirectory(prefix="fanned-night-") as tmp:
        home = Home.at(Path(tmp) / "one")
        started = time.time()
        one = run_night(tests, profile, NIGHT, target="embedded", home=home)
        one_s = time.time() - started
        print(f"one target: {one_s:.1f} s (success {one.success})")
        breakdown(home, one, started)

        home = Home.at(Path(tmp) / "many")
        places = night_places("embedded", args.targets)
        plan = plan_night(tests, profile, list(places))
        started = time.time()
        many = run_fanned_night(plan, profile, NIGHT, places=places, home=home)
        many_s = time.time() - started
        print(f"{args.targets} targets: {many_s:.1f} s (success {many.success})")
        breakdown(home, many, started)
    print(
        f"\n{args.profile} {args.tests}: {args.targets} targets / one = {many_s / one_s:.2f}; "
        f"plan expected {plan.end_s:.0f} s on {args.targets} targets, "
        f"{plan_night(tests, profile, ['one']).end_s:.0f} s on one"
    )


if __name__ == "__main__":
    main()
