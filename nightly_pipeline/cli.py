"""The ``nightly`` command. The CLI and the environment are read here only; everything
below receives typed values.

    nightly run [--profile ci|smoke|nightly] [--tests 01,04] [--night YYYY-MM-DD]
                [--target embedded|docker|FILE] [--targets N] [--junit FILE]
                [--knob NAME=VALUE ...] [--executor in_process|celery]
                [--celery-broker redis://HOST:PORT/DB]
    nightly plan [--profile P] [--tests 01,04] [--target embedded|docker|FILE]
                 [--targets 1,2,4]
    nightly selfcheck [--rate 500] [--duration 10] [--workers 1] [--fleet REDIS_URL]
                      [--summary-export FILE]
    nightly history [--nights 7] [--profile P]
    nightly report [--night YYYY-MM-DD] [--open]
    nightly stack up [--run-id ID] [--postgres-port N] [--redis-port N] [--keep-data]
                     [--no-testbed] [--users 100] [--docker]
    nightly ui [--host 127.0.0.1] [--port 3000]
    nightly store compact [--keep-nights 30] [--no-rewrite]

Everything lives under $NIGHTLY_HOME (default ./.nightly, made absolute here): the
store, the Dagster instance the UI shows, the stacks' directories and the reports.
``--executor celery`` runs the suite's steps on Celery workers (README: Beyond one
machine); the broker is ``--celery-broker`` or ``$NIGHTLY_CELERY_BROKER``, the result
backend ``$NIGHTLY_CELERY_BACKEND`` (default: the broker).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import webbrowser
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from nightly_pipeline.home import HOME_ENV, Home
from nightly_pipeline.loadgen import LoadgenError, Progress
from nightly_pipeline.report.text import render_frame, render_rows
from nightly_pipeline.store import DEFAULT_KEEP_NIGHTS, MetricStore, RunRecord, StoreError
from nightly_pipeline.suite.errors import SelectionError
from nightly_pipeline.suite.profiles import profile_named
from nightly_pipeline.suite.selfcheck import SelfcheckConfig, run_selfcheck

if TYPE_CHECKING:
    from nightly_pipeline.automation.executors import CeleryBroker
    from nightly_pipeline.suite.night_plan import NightPlan, PlacedTarget
    from nightly_pipeline.suite.target import Target

EXECUTORS = ("in_process", "celery")
CELERY_BROKER_ENV = "NIGHTLY_CELERY_BROKER"
CELERY_BACKEND_ENV = "NIGHTLY_CELERY_BACKEND"


def _night(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"night must be YYYY-MM-DD, got {text!r}") from None


def _positive(kind: type) -> object:
    def parse(text: str) -> object:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nightly", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--store",
        type=Path,
        help="DuckDB metric store (default: $NIGHTLY_HOME/metrics.duckdb, $NIGHTLY_HOME "
        "defaulting to ./.nightly); the reports, stacks and Dagster instance go beside it",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the nightly suite for a night (in-process Dagster)")
    run.add_argument("--profile", default="smoke", help="ci, smoke or nightly (default smoke)")
    run.add_argument("--tests", default=None, help="comma-separated ids, e.g. 01,04 (default all)")
    run.add_argument("--night", type=_night, default=None, help="default: the latest night")
    run.add_argument(
        "--target",
        default="embedded",
        help="embedded, docker (the platform in containers), or an external target file",
    )
    run.add_argument(
        "--targets",
        type=_positive(int),
        default=None,
        help="fan the night out over N targets, one test at a time on each: N embedded "
        "platforms, or the first N of the target file's targets (a file listing several "
        "fans out over all of them by default); the plan is shown before it starts",
    )
    run.add_argument("--junit", type=Path, default=None, help="write JUnit XML here")
    run.add_argument(
        "--knob",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="break the embedded platform with a testbed fault knob (testbed/CONTRACT.md), "
        "e.g. optimistic_locking=false; VALUE is JSON (false, 3, null) or else a string",
    )
    run.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="in_process",
        help="in_process (default): the steps run in this process; celery: on the Celery "
        "workers of --celery-broker (dagster-celery; README: Beyond one machine)",
    )
    run.add_argument(
        "--celery-broker",
        default=None,
        metavar="URL",
        help=f"the workers' broker, e.g. redis://127.0.0.1:6379/0 (default ${CELERY_BROKER_ENV}); "
        f"the result backend is ${CELERY_BACKEND_ENV}, else the broker",
    )

    plan = sub.add_parser("plan", help="the plan of a night over N targets, started nowhere")
    plan.add_argument("--profile", default="nightly", help="ci, smoke or nightly (default nightly)")
    plan.add_argument("--tests", default=None, help="comma-separated ids (default all)")
    plan.add_argument("--target", default="embedded", help="embedded, docker, or a target file")
    plan.add_argument("--targets", default="1,2,4", help="target counts, e.g. 1,2,4 (default)")

    check = sub.add_parser("selfcheck", help="load the built-in loopback target, record it")
    check.add_argument("--rate", type=_positive(float), default=500.0, help="requests/s")
    check.add_argument("--duration", type=_positive(float), default=10.0, help="seconds")
    check.add_argument("--workers", type=_positive(int), default=1, help="generator processes")
    check.add_argument(
        "--fleet",
        metavar="REDIS_URL",
        default=None,
        help="generate on --workers Celery fleet workers of this broker instead of local "
        "processes (start them with: celery -A nightly_pipeline.loadgen.fleet_task -b "
        "REDIS_URL worker -Q nightly-loadgen -c 1; the echo target is on this host's loopback)",
    )
    check.add_argument("--profile", default="smoke", help="profile stored with the run")
    check.add_argument("--night", type=_night, default=None, help="YYYY-MM-DD (default: today UTC)")
    check.add_argument("--summary-export", type=Path, help="write k6-style summary JSON here")

    history = sub.add_parser("history", help="recent nights, tests and verdicts")
    history.add_argument("--nights", type=_positive(int), default=7)
    history.add_argument("--profile", default=None)

    report = sub.add_parser("report", help="evaluate a night and write its HTML report")
    report.add_argument("--night", type=_night, default=None, help="default: latest night")
    report.add_argument("--open", action="store_true", help="open the report in a browser")

    stack = sub.add_parser("stack", help="the embedded PostgreSQL + Redis stack")
    stack_sub = stack.add_subparsers(dest="stack_command", required=True)
    up = stack_sub.add_parser("up", help="start it, print the endpoints, run until Ctrl-C")
    up.add_argument("--run-id", default=None, help="default: a timestamp")
    up.add_argument("--postgres-port", type=_positive(int), default=None)
    up.add_argument("--redis-port", type=_positive(int), default=None)
    up.add_argument("--keep-data", action="store_true", help="keep PostgreSQL's data dir")
    up.add_argument("--no-testbed", action="store_true", help="only PostgreSQL and Redis")
    up.add_argument("--users", type=_positive(int), default=100, help="users to seed")
    up.add_argument(
        "--docker", action="store_true", help="the platform in Docker containers instead"
    )

    store = sub.add_parser("store", help="maintain the metric store")
    store_sub = store.add_subparsers(dest="store_command", required=True)
    compact = store_sub.add_parser(
        "compact",
        help="downsample old per-second series to per-minute and shrink the file",
        description="Series of nights older than the newest --keep-nights become per-minute "
        "rows; summary metrics, verdicts, baselines and chaos journals are kept as they are. "
        "Then the file is rewritten so that it shrinks. Writers wait meanwhile; none is lost.",
    )
    compact.add_argument(
        "--keep-nights",
        type=_positive(int),
        default=DEFAULT_KEEP_NIGHTS,
        help=f"nights whose series stay per-second (default {DEFAULT_KEEP_NIGHTS})",
    )
    compact.add_argument(
        "--no-rewrite",
        action="store_true",
        help="only downsample: DuckDB reuses the freed space but the file does not shrink",
    )

    ui = sub.add_parser("ui", help="the Dagster UI and daemon on this home's instance")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=_positive(int), default=3000)
    return parser


def _print_progress(p: Progress) -> None:
    print(
        f"  {p.elapsed_s:5.0f}/{p.duration_s:.0f} s  iterations {p.iterations:>8}"
        f"  dropped {p.dropped}  errors {p.errors}",
        file=sys.stderr,
        flush=True,
    )


def cmd_selfcheck(args: argparse.Namespace, home: Home) -> int:
    store = MetricStore(home.store)
    profile = profile_named(args.profile)
    night = args.night or datetime.now(UTC).date()
    config = SelfcheckConfig(
        rate=args.rate, duration_s=args.duration, workers=args.workers, fleet_broker=args.fleet
    )
    print(f"engine self-check: {config.rate:g} req/s for {config.duration_s:g} s", file=sys.stderr)
    run_id = f"selfcheck-{datetime.now(UTC):%Y%m%dT%H%M%S}-{os.getpid()}"
    store.write_run(RunRecord(run_id, night, profile.name, "builtin-echo", datetime.now(UTC)))
    outcome = run_selfcheck(
        config, night=night, profile=profile.name, run_id=run_id, progress=_print_progress
    )
    store.write_test_result(outcome.record)
    status = "succeeded" if outcome.result.passed else "failed"
    store.finish_run(run_id, status, datetime.now(UTC))
    if args.summary_export:
        args.summary_export.write_text(json.dumps(outcome.result.summary_export(), indent=2))
    rec = outcome.result.recorder
    lat = rec.stats("http_req_duration")
    reqs = rec.stats("http_reqs")
    print(
        render_rows(
            ["requests", "req/s", "p50 ms", "p99 ms", "failed", "sched lag p99 ms"],
            [
                [
                    int(reqs.get("count", 0)),
                    reqs.get("rate", 0.0),
                    lat.get("med"),
                    lat.get("p(99)"),
                    rec.stats("http_req_failed").get("rate"),
                    outcome.result.scheduling_lag_p99_ms,
                ]
            ],
        )
    )
    print()
    print(
        render_rows(
            ["threshold", "scope", "observed", "verdict"],
            [
                [
                    f"{t.selector} {t.expression}",
                    t.scope,
                    t.observed,
                    "pass" if t.passed else "FAIL",
                ]
                for t in outcome.result.thresholds
            ],
        )
    )
    print(f"\n{outcome.record.test}: {outcome.record.status}  (stored in {store.path})")
    return 0 if outcome.result.passed else 1


def cmd_history(args: argparse.Namespace, home: Home) -> int:
    store = MetricStore(home.store)
    frame = store.recent_results(limit_nights=args.nights, profile=args.profile)
    if frame.is_empty():
        print(f"no results in {store.path} yet: run `nightly selfcheck` first")
        return 0
    columns = ["night", "profile", "test", "status", "duration_s", "failed_thresholds", "detail"]
    print(render_frame(frame, columns))
    return 0


def cmd_report(args: argparse.Namespace, home: Home) -> int:
    from nightly_pipeline import evaluate  # analysis and plotly load only for this command

    store = MetricStore(home.store)
    nights = store.nights()
    if nights.is_empty():
        print(f"no results in {store.path} yet: run `nightly selfcheck` first")
        return 1
    night = args.night or nights["night"].max()
    evaluation = evaluate.evaluate_night(store, night)
    files = evaluate.write_report(store, night, home.reports)
    counts = ", ".join(f"{n} {kind}" for kind, n in evaluation.counts().items())
    print(f"{night}: {counts}")
    print(f"report: {files.page}\nindex:  {files.index}")
    if args.open:
        webbrowser.open(files.page.as_uri())
    return 0


def cmd_stack(args: argparse.Namespace, home: Home) -> int:
    from nightly_pipeline.testbed.embedded import PlatformProcesses, PlatformSettings
    from nightly_pipeline.testbed.stack import stack_up_main

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    run_id = args.run_id or datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    if args.docker:
        from nightly_pipeline.testbed.docker.up import docker_up_main

        return docker_up_main(
            home.stack / run_id,
            PlatformSettings(users=args.users),
            docker_host=os.environ.get("DOCKER_HOST"),
            search_path=os.environ.get("PATH"),
        )
    extra: dict = {}
    if not args.no_testbed:
        processes = PlatformProcesses(PlatformSettings(users=args.users))

        def describe(endpoints):  # what a user of the platform needs
            up = processes.platform(endpoints)
            return {
                "base_url": up.base_url,
                "ws_url": up.ws_url,
                "metrics_urls": dict(up.metrics_urls),
                "users": f"{min(up.users)} .. {max(up.users)}",
                "password": up.password,
            }

        extra = {"processes": processes, "describe": describe}
    return stack_up_main(
        home.stack / run_id,
        search_path=os.environ.get("PATH"),
        postgres_port=args.postgres_port or 0,
        redis_port=args.redis_port or 0,
        keep_data=args.keep_data,
        **extra,
    )


OWN_PLATFORMS = ("embedded", "docker")
"""Targets the project starts itself (their knobs are ours to set); any other is a file."""


def _knobs(pairs: Sequence[str]) -> dict[str, object]:
    """``--knob NAME=VALUE`` options as overrides: VALUE as JSON, else as a string."""
    from nightly_pipeline.suite.errors import ConfigurationError

    knobs: dict[str, object] = {}
    for pair in pairs:
        name, equals, text = pair.partition("=")
        if not equals or not name:
            raise ConfigurationError(f"--knob {pair!r}: expected NAME=VALUE")
        try:
            knobs[name] = json.loads(text)
        except json.JSONDecodeError:
            knobs[name] = text
    return knobs


def _check_knobs(args: argparse.Namespace) -> None:
    """Knobs name fields of the embedded platform, which a target file's is not."""
    from nightly_pipeline.suite.errors import ConfigurationError
    from nightly_pipeline.testbed.embedded import check_overrides

    knobs = _knobs(args.knob)
    if knobs and args.target not in OWN_PLATFORMS:
        raise ConfigurationError(
            "--knob breaks the embedded platform; a target file's platform is not ours to break"
        )
    check_overrides(knobs)


def _run_problems(args: argparse.Namespace, home: Home) -> list[str]:
    """Every problem with what ``nightly run`` was asked, found before Dagster starts."""
    from nightly_pipeline.automation.run import check_night, latest_night
    from nightly_pipeline.suite.catalog import select_tests
    from nightly_pipeline.suite.errors import ConfigurationError
    from nightly_pipeline.suite.target import load_targets

    checks = [
        lambda: profile_named(args.profile),
        lambda: select_tests(args.tests) if args.tests else None,
        lambda: check_night(args.night or latest_night()),
        lambda: _check_knobs(args),
        lambda: _celery_broker(args),
    ]
    if args.target not in OWN_PLATFORMS:
        target_file = Path(args.target)
        checks.append(
            lambda: [
                _experiments_of_chaos_tests(t)
                for t in load_targets(target_file, os.environ).values()
            ]
        )
    if _fanned_out(args):
        checks.append(lambda: _night_plan(args))
        if args.executor != "in_process":
            checks.append(_refuse_fanned_celery)
    problems = []
    for check in checks:
        try:
            check()
        except ConfigurationError as exc:
            problems.append(str(exc))
    try:
        MetricStore(home.store)
    except StoreError as exc:
        problems.append(str(exc))
    return problems


def _refuse_fanned_celery() -> None:
    from nightly_pipeline.suite.errors import ConfigurationError

    raise ConfigurationError(
        "a night fanned out over several targets runs one worker process per target; "
        "--executor celery runs one target's night: drop --targets (or list one target)"
    )


def _celery_broker(args: argparse.Namespace) -> CeleryBroker | None:
    """The broker ``--executor celery`` submits to (None: in process); a
    ``ConfigurationError`` naming the fix when it has none."""
    from nightly_pipeline.automation.executors import CeleryBroker
    from nightly_pipeline.suite.errors import ConfigurationError

    if args.executor != "celery":
        return None
    broker = args.celery_broker or os.environ.get(CELERY_BROKER_ENV, "")
    if not broker:
        raise ConfigurationError(
            f"--executor celery needs the workers' broker: --celery-broker URL or "
            f"${CELERY_BROKER_ENV} (e.g. redis://127.0.0.1:6379/0)"
        )
    return CeleryBroker(broker, os.environ.get(CELERY_BACKEND_ENV, ""))


def _experiments_of_chaos_tests(target: Target) -> None:
    """The target file's ``chaos_experiments`` name chaos tests only."""
    from nightly_pipeline.suite.catalog import BY_ID
    from nightly_pipeline.suite.errors import ConfigurationError

    chaos = sorted(i for i, test in BY_ID.items() if test.spec.injects_faults)
    wrong = sorted(set(target.experiments) - set(chaos))
    if wrong:
        raise ConfigurationError(
            f"target {target.name!r}: chaos_experiments names test(s) {', '.join(wrong)}, "
            f"which inject no faults; the chaos tests are {', '.join(chaos)}"
        )


def _fanned_out(args: argparse.Namespace) -> bool:
    """Whether ``nightly run`` fans the night out: ``--targets``, or a file of several."""
    return args.targets is not None or (
        args.target not in OWN_PLATFORMS and _lists_targets(Path(args.target))
    )


def _lists_targets(path: Path) -> bool:
    """Whether a target file lists several targets (``suite.target``); an unreadable one
    is reported by ``_run_problems``."""
    try:
        return "targets" in json.loads(path.read_text())
    except (OSError, ValueError):
        return False


def _night_plan(
    args: argparse.Namespace, count: int | None = None
) -> tuple[NightPlan, dict[str, PlacedTarget]]:
    """The plan of ``nightly run``'s night and where its targets are."""
    from nightly_pipeline.suite.catalog import TESTS, select_tests
    from nightly_pipeline.suite.night_plan import night_places, plan_night

    places = night_places(args.target, count if count is not None else args.targets)
    tests = select_tests(args.tests) if args.tests else list(TESTS)
    return plan_night(tests, profile_named(args.profile), list(places)), places


def cmd_plan(args: argparse.Namespace, home: Home) -> int:
    """``nightly plan``: the night's plan for each target count; nothing starts."""
    try:
        counts = [int(c) for c in args.targets.split(",")]
    except ValueError:
        print(f"nightly plan: --targets {args.targets!r}: counts such as 1,2,4", file=sys.stderr)
        return 2
    from nightly_pipeline.suite.errors import ConfigurationError

    for count in counts:
        try:
            plan, _ = _night_plan(args, count)
        except ConfigurationError as exc:
            print(f"nightly plan: {exc}", file=sys.stderr)
            return 2
        print(f"## {count} target(s), profile {args.profile}")
        print("\n".join(plan.lines()))
        print()
    return 0


def cmd_run(args: argparse.Namespace, home: Home) -> int:
    from nightly_pipeline.automation.run import latest_night, run_night, write_junit
    from nightly_pipeline.report.live import LiveProgress
    from nightly_pipeline.report.night_summary import render_checks, render_tests
    from nightly_pipeline.suite.catalog import select_tests
    from nightly_pipeline.suite.progress import LISTENERS

    problems = _run_problems(args, home)
    if problems:
        listing = "\n  - ".join(problems)
        print(f"nightly run: nothing started:\n  - {listing}", file=sys.stderr)
        return 2
    profile = profile_named(args.profile)
    tests = select_tests(args.tests) if args.tests else None
    night = args.night or latest_night()
    knobs = _knobs(args.knob)
    tests_named = ", ".join(t.spec.key for t in tests) if tests else "the whole nightly_suite"
    broken = f" (testbed knobs: {json.dumps(knobs)})" if knobs else ""
    celery = _celery_broker(args)
    where = ""
    if celery:
        from kombu.utils.url import maybe_sanitize_url  # Celery's: the password masked

        where = f", steps on the Celery workers of {maybe_sanitize_url(celery.broker)}"
    print(
        f"night {night}, profile {profile.name}, target {args.target}{broken}{where}: "
        f"{tests_named}",
        file=sys.stderr,
    )

    def say(line: str) -> None:
        print(f"nightly run: {line}", file=sys.stderr, flush=True)

    # On a terminal: a live table, and Dagster's log from warnings up (the UI has the
    # rest); otherwise (CI logs) Dagster's log, which carries the figures every 5 s.
    live = sys.stdout.isatty()
    with contextlib.ExitStack() as showing:
        if live:
            terminal = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
            showing.callback(terminal.close)
            display = showing.enter_context(LiveProgress(terminal))
            showing.enter_context(LISTENERS.listening(display.update))
        if _fanned_out(args):
            from nightly_pipeline.automation.fanned_night import run_fanned_night

            plan, places = _night_plan(args)
            run = run_fanned_night(
                plan,
                profile,
                night,
                places=places,
                knobs=knobs,
                home=home,
                say=say,
                log_level="INFO",
            )
        else:
            run = run_night(
                tests,
                profile,
                night,
                target=args.target,
                knobs=knobs,
                home=home,
                say=say,
                log_level="WARNING" if live else "INFO",
                celery=celery,
            )
    store = MetricStore(home.store)
    results = store.recent_results(limit_nights=10_000).iter_rows(named=True)
    rows = [r for r in results if r["run_id"] in run.run_ids]
    figures: dict[str, dict[str, float]] = {}
    for m in store.metrics(since=night).iter_rows(named=True):
        if m["run_id"] in run.run_ids and m["tags"] == "{}":
            figures.setdefault(m["test"], {})[m["metric"]] = m["value"]
    print(render_tests(rows, figures))
    print()
    print(render_checks(run.checks))
    if args.junit:
        write_junit(run, args.junit)
    if run.interrupted:
        print(f"\nnightly run: {run.error}", file=sys.stderr)
        return 130
    if not run.success:
        print(f"\nrun failed: {run.error}", file=sys.stderr)
        return 1
    if run.blocking_failed:
        print("\na blocking check failed", file=sys.stderr)
        return 1
    skipped = [f"{c.test} {c.name}" for c in run.checks if c.not_measurable]
    if skipped:
        print(f"\nnot measurable on this target (skipped): {', '.join(skipped)}")
    print(
        f"\nnight {night}: every blocking check passed (stored in {store.path}; "
        f"Dagster run(s) {', '.join(run.run_ids)} in {home.dagster}: `nightly ui` shows it)"
    )
    return 0


def cmd_store(args: argparse.Namespace, home: Home) -> int:
    """``nightly store compact``: progress on stderr, the summary on stdout."""
    if not home.store.exists():  # MetricStore would create an empty one
        print(
            f"nightly store compact: no metric store at {home.store}; pass --store FILE or "
            f"set {HOME_ENV}",
            file=sys.stderr,
        )
        return 2

    def say(line: str) -> None:
        print(f"nightly store compact: {line}", file=sys.stderr, flush=True)

    store = MetricStore(home.store)
    say(f"compacting {store.path} (per-second series kept for {args.keep_nights} nights)")
    result = store.compact(
        args.keep_nights, rewrite_min_free=None if args.no_rewrite else 0.0, progress=say
    )
    print(result.summary())
    return 0


def cmd_ui(args: argparse.Namespace, home: Home) -> int:
    """``dagster dev`` on the home's instance, in place of this process."""
    from nightly_pipeline.automation.instance import prepare_instance_dir, write_workspace

    instance_dir = prepare_instance_dir(home)
    env = {**os.environ, "DAGSTER_HOME": str(instance_dir), HOME_ENV: str(home.root)}
    argv = [sys.executable, "-m", "dagster", "dev", "-w", str(write_workspace(home))]
    argv += ["--host", args.host, "--port", str(args.port)]
    print(f"Dagster UI on http://{args.host}:{args.port} (instance {instance_dir})", flush=True)
    os.execve(sys.executable, argv, env)
    return 0  # not reached


COMMANDS = {
    "run": cmd_run,
    "plan": cmd_plan,
    "selfcheck": cmd_selfcheck,
    "history": cmd_history,
    "report": cmd_report,
    "stack": cmd_stack,
    "store": cmd_store,
    "ui": cmd_ui,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        home = Home.of_store(args.store) if args.store else Home.from_env(os.environ)
        return COMMANDS[args.command](args, home)
    except (StoreError, LoadgenError, SelectionError) as exc:
        print(f"nightly: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nightly: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
