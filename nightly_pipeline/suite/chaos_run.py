"""A chaos test's run: the suite's messaging load and delivery accounting, with a Chaos
Toolkit experiment injecting the test's faults while the load runs, the steady state
watched throughout, and the recovery of every fault recorded as numbers.

The experiment is data (``build_experiment``): a steady-state hypothesis (the API
ready), a method of timed ``inject_fault`` / ``revert_fault`` actions (and the test's own
probes), and a rollback that reverts whatever is still injected. It runs on a thread
beside the load (``chaos.chaostoolkit_adapter``); its journal is written beside the
run (``journal.json``). Every fault is reverted on exit, on failure and on Ctrl-C, and
recorded in the ledger before it touches anything (a killed run's are reverted at the
next start).

On a target whose file names its own experiment for the test (``chaos_experiments``),
that experiment injects the faults instead (the user's activities, the suite's
configuration added); the load, the accounting and the checks are the same, and the fault
window is the experiment's actions, first to last (``journal_windows``).

Recorded (tags ``fault``): ``time_to_detect_s``, ``time_to_recover_s`` (absent when it
never recovered: its check then fails on no data), ``faults_unrecovered``,
``fault_errors`` (``status`` tag: the failed POSTs of the window, 0 = no answer),
``experiment_deviated`` (the journal's verdict, 0/1) and ``experiment_failed_activities``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from nightly_pipeline.chaos.backend import ChaosBackend, NoHandles
from nightly_pipeline.chaos.chaostoolkit_adapter import (
    BackgroundExperiment,
    load_experiment,
    validate,
)
from nightly_pipeline.chaos.ledger import FaultLedger
from nightly_pipeline.chaos.platform_faults import FaultError
from nightly_pipeline.chaos.recovery import Recovery, Sample, SteadyStateWatcher, recovery_of
from nightly_pipeline.chaos.session import FaultWindow, open_session, process_gone
from nightly_pipeline.loadgen import LoadResult
from nightly_pipeline.loadgen.recorder import Recorder
from nightly_pipeline.suite.context import ScenarioContext
from nightly_pipeline.suite.errors import ConfigurationError
from nightly_pipeline.suite.messaging_load import MessagingKnobs, run_messaging_load
from nightly_pipeline.suite.progress import TestProgress

ACTIVITIES = "nightly_pipeline.chaos.activities"
RECOVERED_AFTER = 3
"""Steady samples in a row (0.25 s apart) that make a recovery."""
EXPERIMENT_GRACE_S = 120.0
"""How long after the load an experiment may still be running (its last revert and its
wait for /readyz); past it, the run goes on with the journal marked unfinished."""
STOPPED_GRACE_S = 5.0
"""After an interrupted load, how long the experiment may take to notice."""
READY_WAIT_S = 30.0
"""The experiment's last probe waits this long for /readyz to answer 200."""
RECOVERY_WATCH_S = 15.0
"""How long after the experiment the steady state is still watched for a recovery (the
load has ended: only /readyz can still change)."""


@dataclass(frozen=True)
class FaultStep:
    """One fault of the method: injected ``at_s`` seconds into the load, reverted
    ``hold_s`` seconds later; ``probes`` run right after the injection, ``after_revert``
    right after the revert (their outputs are in the journal under their names; their
    pauses delay what comes next)."""

    name: str
    fault_type: str
    params: Mapping[str, Any] = field(default_factory=dict)
    at_s: float = 0.0
    hold_s: float = 1.0
    probes: Sequence[Mapping[str, Any]] = ()
    after_revert: Sequence[Mapping[str, Any]] = ()
    before: Sequence[Mapping[str, Any]] = ()
    """Activities right before the injection (a probe that waits for the moment)."""


@dataclass(frozen=True)
class ChaosRun:
    result: LoadResult
    journal: Mapping[str, Any]
    windows: Sequence[FaultWindow]
    recoveries: Sequence[Recovery]

    def probe_output(self, name: str) -> Any:
        """The output of the method's activity called ``name`` (None if it did not run)."""
        for run in self.journal.get("run", ()):
            if run["activity"]["name"] == name:
                return run.get("output")
        return None


def python_activity(kind: str, title: str, func: str, /, **arguments: Any) -> dict[str, Any]:
    """A Chaos Toolkit activity calling ``chaos.activities.<func>(**arguments)``."""
    provider: dict[str, Any] = {"type": "python", "module": ACTIVITIES, "func": func}
    if arguments:
        provider["arguments"] = arguments
    return {"type": kind, "name": title, "provider": provider}


def build_experiment(
    title: str,
    description: str,
    steps: Sequence[FaultStep],
    configuration: Mapping[str, Any],
) -> dict[str, Any]:
    """The experiment for ``steps``: inject/revert actions on one timeline (each paused
    until its time), the steps' probes beside them, then a wait (bounded) for /readyz
    before the steady state is checked again."""
    events: list[tuple[float, int, list[dict[str, Any]]]] = []
    for order, step in enumerate(steps):
        inject = python_activity(
            "action",
            f"inject-{step.name}",
            "inject_fault",
            fault=step.name,
            fault_type=step.fault_type,
            params=dict(step.params),
        )
        events.append(
            (step.at_s, order, [*map(dict, step.before), inject, *map(dict, step.probes)])
        )
        revert = python_activity("action", f"revert-{step.name}", "revert_fault", fault=step.name)
        events.append((step.at_s + step.hold_s, order, [revert, *map(dict, step.after_revert)]))
    method: list[dict[str, Any]] = []
    clock = 0.0
    for at, _, activities in sorted(events, key=lambda e: (e[0], e[1])):
        first = dict(activities[0])
        if at > clock:
            first["pauses"] = {"before": round(at - clock, 3)}
            clock = at
        method += [first, *activities[1:]]
    method.append(
        python_activity("probe", "ready-again", "wait_until_ready", timeout_s=READY_WAIT_S)
    )
    return {
        "version": "1.0.0",
        "title": title,
        "description": description,
        "tags": ["nightly_pipeline"],
        "configuration": dict(configuration),
        "steady-state-hypothesis": {
            "title": "the platform is ready",
            "probes": [
                {**python_activity("probe", "api-ready", "readyz_status"), "tolerance": 200}
            ],
        },
        "method": method,
        "rollbacks": [python_activity("action", "revert-every-fault", "revert_all")],
    }


def run_chaos_messaging(
    ctx: ScenarioContext[Any],
    load: MessagingKnobs,
    steps: Sequence[FaultStep],
    *,
    duration_s: float | None = None,
    clean_pending_s: float = 1.0,
) -> ChaosRun:
    """The messaging load with ``steps`` injected by a Chaos Toolkit experiment. A sample
    is clean when the load's last second had no new failed POST and fewer deliveries
    pending than ``clean_pending_s`` seconds of traffic."""
    backend = chaos_backend(ctx)
    own = ctx.target.experiments.get(ctx.spec.id)
    ledger = FaultLedger(ctx.chaos_ledger)
    for line in ledger.revert_leftovers():
        ctx.progress(f"{ctx.spec.key}: a dead run's fault: {line}")
    state = _LoadState(clean_pending_s * ctx.rate * _fanout(load))
    metrics_url = next(iter(ctx.target.metrics_urls.values()), "")
    with open_session(backend, ledger, ctx.spec.key) as session:
        configuration = {
            "nightly_session": session.token,
            "base_url": ctx.target.base_url,
            "metrics_url": metrics_url,
            "redis_url": backend.datastores().get("redis", ""),
        }
        if own is not None:  # the user's faults; our load, probes, accounting and checks
            ctx.progress(f"{ctx.spec.key}: faults by the target's experiment {own}")
            experiment = with_configuration(load_experiment(own), configuration)
        else:
            experiment = build_experiment(
                f"{ctx.spec.key}: {ctx.spec.description}",
                ctx.spec.description,
                steps,
                configuration,
            )
        validate(experiment)  # Chaos Toolkit's own errors, before any load
        background = BackgroundExperiment(experiment)
        watched = dataclasses.replace(ctx, watch=state.watching(ctx.watch))
        with SteadyStateWatcher(_readyz(configuration), state.clean) as watcher:
            result = run_messaging_load(
                watched,
                load,
                around_load=lambda: _running(background),
                duration_s=duration_s,
                holding=background.running,  # a consumer down on purpose loses nothing yet
            )
            if result.aborted:  # Ctrl-C, SIGTERM: no fault after this, and no waiting
                session.stop(f"the test stopped: {result.aborted}")
            journal = background.journal(STOPPED_GRACE_S if result.aborted else EXPERIMENT_GRACE_S)
            windows = list(session.windows) or journal_windows(journal)
            watcher.wait(
                lambda s: (
                    all(recovered(w, s) for w in windows) or process_gone(backend) is not None
                ),
                RECOVERY_WATCH_S,
            )
    (ctx.run_dir / "journal.json").parent.mkdir(parents=True, exist_ok=True)
    (ctx.run_dir / "journal.json").write_text(json.dumps(journal, indent=2, default=str))
    recoveries = [recovery_of(w, watcher.samples, RECOVERED_AFTER) for w in windows]
    run = ChaosRun(result, journal, windows, recoveries)
    record_recovery(result.recorder, run)
    failed = failed_actions(journal)
    if failed and not result.aborted:  # the faults were not what the test claims
        raise FaultError(
            f"{ctx.spec.key}: the experiment's faults did not all apply (its journal: "
            f"{ctx.run_dir / 'journal.json'}): " + "; ".join(failed)
        )
    return run


def failed_actions(journal: Mapping[str, Any]) -> list[str]:
    """The method's actions that failed, each with the last line of its error."""
    out = []
    for run in journal.get("run") or ():
        activity = run.get("activity", {})
        if activity.get("type") == "action" and run.get("status") == "failed":
            lines = [line.strip() for line in run.get("exception") or [] if line.strip()]
            out.append(f"{activity.get('name')}: {lines[-1] if lines else 'failed'}")
    return out


def recovered(window: FaultWindow, samples: Sequence[Sample]) -> bool:
    return recovery_of(window, samples, RECOVERED_AFTER).recovered_after_s is not None


def chaos_backend(ctx: ScenarioContext[Any]) -> ChaosBackend:
    """The target's fault handles; none on a target whose own experiment injects this
    test's faults; a ``ConfigurationError`` naming the fix for a platform without either."""
    if ctx.target.chaos is not None:
        return ctx.target.chaos
    if ctx.spec.id in ctx.target.experiments:
        return NoHandles()
    raise ConfigurationError(
        f"target {ctx.target.name!r}: test {ctx.spec.key} injects faults through the "
        "platform's own handles, which only the embedded platform offers; name your own "
        f'Chaos Toolkit experiment for it in the target file: "chaos_experiments": '
        f'{{"{ctx.spec.id}": "experiment.json"}}'
    )


def with_configuration(experiment: Mapping[str, Any], ours: Mapping[str, Any]) -> dict[str, Any]:
    """The user's experiment with the suite's configuration added (the session token, the
    target's URLs), so that it may call the suite's activities; what we do not know (an
    empty value) is left to the user's own configuration."""
    theirs = dict(experiment.get("configuration") or {})
    return {**experiment, "configuration": {**theirs, **{k: v for k, v in ours.items() if v}}}


def journal_windows(journal: Mapping[str, Any]) -> list[FaultWindow]:
    """The fault window of an experiment whose faults are not the suite's (the user's own
    activities): from its first action's start to its last action's end, rollbacks
    included; no window when it ran no action."""
    actions = [
        r
        for r in [*(journal.get("run") or ()), *(journal.get("rollbacks") or ())]
        if r.get("activity", {}).get("type") == "action" and r.get("start") and r.get("end")
    ]
    if not actions:
        return []
    first = _wall(min(r["start"] for r in actions))
    last = _wall(max(r["end"] for r in actions))
    to_perf = time.perf_counter() - time.time()
    return [
        FaultWindow(
            name="experiment",
            type="experiment",
            params={"title": str(journal.get("experiment", {}).get("title", ""))},
            injected_at=first.timestamp() + to_perf,
            injected_wall=first,
            reverted_at=last.timestamp() + to_perf,
            reverted_wall=last,
        )
    ]


def _wall(iso: str) -> datetime:
    """A journal time (chaoslib writes naive UTC) as an aware datetime."""
    stamp = datetime.fromisoformat(iso)
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def record_crashes(
    ctx: ScenarioContext[Any],
    run: ChaosRun,
    backend: ChaosBackend,
    before: Mapping[str, int],
    names: Sequence[str],
) -> None:
    """``processes_crashed``: how many of ``names`` crashed under the faults, by the
    platform's handles, else the output of the experiment's probe ``processes-crashed``
    (a deployed platform's own count: restarted pods, ...). Neither: not recorded, and
    the check says so (never a pass by default)."""
    if backend.process_names():
        down = crashed(backend, before, names)
        if down:
            ctx.progress(f"{ctx.spec.key}: crashed under the faults: {', '.join(down)}")
        count: float | None = float(len(down))
    else:
        told = run.probe_output("processes-crashed")
        number = isinstance(told, int | float) and not isinstance(told, bool)
        count = float(told) if number else None
        if count is None:
            ctx.progress(
                f"{ctx.spec.key}: crashes not measured: this target has no process handles "
                "and its experiment no probe named 'processes-crashed'"
            )
    if count is not None:
        run.result.recorder.counter("processes_crashed", time.perf_counter(), value=count)


def crashed(backend: ChaosBackend, before: Mapping[str, int], names: Sequence[str]) -> list[str]:
    """The processes among ``names`` that are not running, or run with another pid than
    ``before`` (something restarted them): a platform that crashed under the fault."""
    now = backend.pids()
    return [n for n in names if not backend.is_running(n) or now.get(n) != before.get(n)]


def record_recovery(rec: Recorder, run: ChaosRun) -> None:
    at = time.perf_counter()
    for window, recovery in zip(run.windows, run.recoveries, strict=True):
        tags = {"fault": window.name}
        if recovery.detected_after_s is not None:
            rec.gauge("time_to_detect_s", recovery.detected_after_s, at, tags)
        if recovery.recovered_after_s is not None:
            rec.gauge("time_to_recover_s", recovery.recovered_after_s, at, tags)
        rec.counter("faults_unrecovered", at, float(recovery.recovered_after_s is None), tags)
        for status, count in window_failures(rec, window, recovery).items():
            rec.counter("fault_errors", at, float(count), {**tags, "status": status})
    rec.gauge("experiment_deviated", float(bool(run.journal.get("deviated"))), at)
    failed = [r for r in run.journal.get("run", ()) if r.get("status") == "failed"]
    rec.counter("experiment_failed_activities", at, float(len(failed)))


def window_failures(rec: Recorder, window: FaultWindow, recovery: Recovery) -> dict[str, int]:
    """Failed POSTs by status from the injection to the recovery (or the end)."""
    start = math.floor(window.injected_at - rec.run_start)
    end_at = window.reverted_at if window.reverted_at is not None else time.perf_counter()
    end_at += recovery.recovered_after_s or 0.0
    end = max(start + 1, math.ceil(end_at - rec.run_start))
    out: dict[str, int] = {}
    for key in rec.metric_keys():
        tags = dict(key.tags)
        if key.name != "post_failures_by_status" or "status" not in tags:
            continue
        count = rec.window_stats(key.name, tags, max(0, start), end).get("count", 0)
        if count:
            out[tags["status"]] = out.get(tags["status"], 0) + int(count)
    return out


class _LoadState:
    """The load's latest second, as the steady-state watcher reads it."""

    def __init__(self, pending_bound: float) -> None:
        self.pending_bound = max(1.0, pending_bound)
        self._errors = 0
        self._clean = True
        self._lock = threading.Lock()

    def watching(self, downstream: Any) -> Any:
        def watch(progress: TestProgress) -> None:
            with self._lock:
                new_errors = progress.errors > self._errors
                self._errors = progress.errors
                pending = progress.pending or 0
                self._clean = not new_errors and pending < self.pending_bound
            downstream(progress)

        return watch

    def clean(self) -> bool:
        with self._lock:
            return self._clean


def _fanout(load: MessagingKnobs) -> float:
    """Deliveries per message: its participants times their sockets (devices) each."""
    if load.sockets is None:
        return float(load.participants)
    users = max(1, min(load.pool, load.conversations + load.participants - 1))
    return load.participants * max(1.0, load.sockets / users)


def _readyz(configuration: Mapping[str, Any]):
    from nightly_pipeline.chaos.activities import readyz_status

    return lambda: readyz_status(configuration)


@contextlib.contextmanager
def _running(background: BackgroundExperiment) -> Iterator[None]:
    background.start()
    yield
