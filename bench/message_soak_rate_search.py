"""The highest rate at which Test 01 (message_soak) passes on this machine.

    . .venv/bin/activate && python bench/message_soak_rate_search.py
        [--rates 400,500,600,700,800] [--duration 60]

Runs the suite's own Test 01 (the scenario, /metrics sampling, process sampling and every
check of the spec, exactly as ``nightly run`` does) at each rate for ``--duration``
seconds, each on a freshly started embedded platform, in increasing order, and stops
after the first rate that fails a blocking check. Prints one line per rate: achieved rate, POST
p95, e2e p95, deliveries, memory growth, and which checks failed (blocking or WARN).
"Passes" is stated twice: every blocking check, and every check. Asserts nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from datetime import date
from pathlib import Path

from nightly_pipeline.suite.catalog import select_tests
from nightly_pipeline.suite.profiles import PROFILES
from nightly_pipeline.suite.runner import run_suite_test
from nightly_pipeline.testbed.embedded import PlatformSettings, embedded_platform
from nightly_pipeline.testbed.stack import StackConfig

SOAK = select_tests("01")[0]


def _figure(outcome, name: str) -> float:
    """The figure over every tag set (its untagged row)."""
    found = [m.value for m in outcome.record.metrics if m.metric == name and not m.tags]
    return found[0] if found else float("nan")


def run_at(rate: float, duration_s: float, root: Path) -> tuple[bool, bool, str]:
    """(blocking checks passed, every check passed, one printable line)."""
    profile = dataclasses.replace(
        PROFILES["smoke"], max_duration_s=duration_s, load=rate / SOAK.spec.rate
    )
    stack = StackConfig(run_dir=root / f"rate-{rate:g}", search_path=os.environ.get("PATH"))
    settings = PlatformSettings(users=100, password_hash_n=2**10)
    with embedded_platform(stack, settings) as platform:
        started = time.monotonic()
        outcome = run_suite_test(
            SOAK,
            profile,
            platform.target(),
            night=date.today(),
            run_id=f"rate-{rate:g}",
            run_dir=root / f"run-{rate:g}",
        )
        wall = time.monotonic() - started
    failed = [c for c in outcome.checks if not c.passed]
    blocking_ok = not any(c.check.severity == "error" for c in failed)
    checks = {c.check.name: c.observed for c in outcome.checks}
    sent = _figure(outcome, "delivery_expected.count")
    line = (
        f"rate {rate:6.0f}/s  achieved {_figure(outcome, 'http_reqs.rate'):6.1f}/s  "
        f"POST p95 {checks['post_p95_under_100ms']:7.1f} ms  "
        f"e2e p95 {_figure(outcome, 'e2e_delivery_ms.p95'):8.1f} ms  "
        f"deliveries expected {sent:,.0f} lost {checks['zero_message_loss']:.0f}  "
        f"RSS growth {checks['memory_growth_under_10pct']:5.1f} %  wall {wall:5.1f} s  "
        + ("all checks pass" if not failed else "FAILED: ")
        + ", ".join(
            f"{c.check.name} ({c.check.threshold}: {c.observed:g}, {c.check.severity})"
            for c in failed
        )
    )
    return blocking_ok, not failed, line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="400,500,600,700,800")
    parser.add_argument("--duration", type=float, default=60.0)
    args = parser.parse_args()
    rates = sorted(float(r) for r in args.rates.split(","))
    best_blocking = best_all = None
    with tempfile.TemporaryDirectory(prefix="rate-search-") as tmp:
        for rate in rates:
            blocking_ok, all_ok, line = run_at(rate, args.duration, Path(tmp))
            print(line, flush=True)
            best_blocking = rate if blocking_ok else best_blocking
            best_all = rate if all_ok else best_all
            if not blocking_ok:
                break
    print(
        f"highest rate passing every blocking check: {best_blocking or 'none'}; "
        f"every check: {best_all or 'none'} (of {', '.join(f'{r:g}' for r in rates)})"
    )


if __name__ == "__main__":
    main()
