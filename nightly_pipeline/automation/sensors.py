"""Sensors: alerts on failed runs, failed checks and new regressions; a run when the
target's reported version changes; when a suite run ends, its store row is closed and
the night's history run is requested. Each comes from a small factory so tests can
build one with their own resources and names."""

import json
from collections.abc import Mapping
from datetime import UTC, datetime

import dagster as dg
import httpx

from nightly_pipeline import evaluate
from nightly_pipeline.alerts import (
    RETRY_BOUND,
    Alert,
    Outbox,
    PendingInbox,
    RetryBound,
    TickOutcome,
    adopt,
    deliver,
    send_or_keep,
)
from nightly_pipeline.assets.partitions import NIGHTS
from nightly_pipeline.automation.fanout import NIGHT_PLAN_TAG, TARGET_TAG
from nightly_pipeline.automation.jobs import nightly_history_job, nightly_suite_job
from nightly_pipeline.automation.schedules import (
    DEFAULT_SCHEDULED_PROFILE,
    FannedNight,
    fanned_night_plan,
    fanned_requests,
    profile_launch,
)
from nightly_pipeline.automation.suite_runs import (
    CLI_TRIGGER,
    FANOUT_TAG,
    HISTORY_AFTER,
    PARTITION_TAG,
    PROFILE_TAG,
    SUITE_OUTCOMES,
    TRIGGER_TAG,
    close_store_run,
    history_tags,
)
from nightly_pipeline.resources import AlertsResource, MetricStoreResource, TargetVersionResource
from nightly_pipeline.store import RunStatus
from nightly_pipeline.suite.night_plan import PlacedTarget
from nightly_pipeline.suite.profiles import ProfileName

ALERT_POLL_S = 300
VERSION_POLL_S = 300


def make_run_failure_alert_sensor(
    name: str = "run_failure_alert", bound: RetryBound = RETRY_BOUND
) -> dg.SensorDefinition:
    """Alert Slack/Discord when any run of this code location fails.

    Dagster moves this sensor past the run whatever the delivery did, and a sensor cannot
    write another's cursor: a channel that did not take the alert is owed it in a file of
    the home (``alerts.PendingInbox``), which ``regression_alert`` adopts and retries.
    """

    @dg.run_failure_sensor(name=name, default_status=dg.DefaultSensorStatus.RUNNING)
    def run_failure_alert(
        context: dg.RunFailureSensorContext, alerts: AlertsResource, store: MetricStoreResource
    ) -> None:
        run = context.dagster_run
        key = run.tags.get(PARTITION_TAG)
        night = datetime.now(UTC).date() if key is None else datetime.fromisoformat(key).date()
        message = context.failure_event.message or "run failed"
        alert = Alert(
            kind="run_failed",
            night=night,
            test=run.job_name,
            metric=None,
            magnitude=None,
            first_bad_night=None,
            detail=f"run {run.run_id}: {message}",
            report_url=None,
            profile=run.tags.get(PROFILE_TAG),
        )
        try:
            outcome = send_or_keep(
                run_failure_key(run.run_id),
                alert,
                alerts.send,
                PendingInbox(store.home().pending_alerts),
                channels=alerts.channels(),
                now=datetime.now(UTC),
                bound=bound,
            )
        except OSError as exc:  # raising would not retry either: Dagster moves on
            context.log.error(f"run {run.run_id}'s alert not kept for a retry: {exc!r}")
            return
        for delivery in outcome.deliveries:
            context.log.info(f"alert via {delivery.channel}: ok={delivery.ok}")
        for pending in outcome.retrying:
            context.log.warning(
                f"run {run.run_id}'s alert pending for {', '.join(pending.channels)}: "
                "retried by regression_alert at its next tick"
            )
        for _, reason in outcome.given_up:
            context.log.error(reason)

    return run_failure_alert


def run_failure_key(run_id: str) -> str:
    """A failed run's alert is sent once per run (two failed runs of one job and night
    are two alerts)."""
    return json.dumps(["run_failed", run_id])


def make_regression_alert_sensor(
    name: str = "regression_alert", bound: RetryBound = RETRY_BOUND
) -> dg.SensorDefinition:
    """Alert once per new regression and per failed test of the latest evaluated night,
    and resend the run-failure alerts ``run_failure_alert`` could not deliver.

    The cursor is an ``alerts.Outbox``: an alert a channel did not take (a webhook
    outage) stays pending for that channel and is sent again at the next tick, until
    ``bound`` gives it up with the reason logged as an error. Each tick first adopts the
    home's pending run-failure alerts (``alerts.adopt``) into it.
    """

    @dg.sensor(
        name=name,
        minimum_interval_seconds=ALERT_POLL_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def regression_alert(
        context: dg.SensorEvaluationContext, store: MetricStoreResource, alerts: AlertsResource
    ) -> dg.SkipReason:
        home = store.home()
        adopted = adopt(Outbox.from_json(context.cursor), PendingInbox(home.pending_alerts))
        for problem in adopted.unreadable:
            context.log.error(f"pending alert file set aside, unreadable: {problem}")
        outbox = adopted.outbox
        opened = store.open()
        evaluated = opened.verdicts()
        night = None if evaluated.is_empty() else evaluated["night"].max()
        due: list[Alert] = []
        if night is not None:
            page = home.reports / f"{night}.html"
            due = evaluate.alerts_due(
                opened,
                night,
                sent=outbox.known(),
                report_url=page.as_uri() if page.exists() else None,
            )
        if not due and not outbox.pending:
            if night is None:
                return dg.SkipReason("no night has been evaluated yet")
            return dg.SkipReason(f"nothing new to alert for {night}")
        outcome = deliver(
            outbox,
            [(evaluate.alert_key(a), a) for a in due],
            alerts.send,
            channels=alerts.channels(),
            now=datetime.now(UTC),
            bound=bound,
        )
        for _, reason in outcome.given_up:
            context.log.error(reason)
        context.update_cursor(outcome.outbox.to_json())
        return dg.SkipReason(_tick_summary(night or "no evaluated night", outcome))

    return regression_alert


def _tick_summary(night: object, outcome: TickOutcome) -> str:
    """What one tick of the alert sensor did, for the tick's log line."""
    channels = ", ".join(f"{d.channel} ok={d.ok}" for d in outcome.deliveries)
    return (
        f"sent {len(outcome.delivered)} alert(s) for {night}: {channels or 'no channel set'}; "
        f"{len(outcome.retrying)} pending (retried next tick), {len(outcome.given_up)} given up"
    )


def make_target_version_sensor(
    name: str = "target_version_change",
    profile: ProfileName = DEFAULT_SCHEDULED_PROFILE,
    places: Mapping[str, PlacedTarget] | None = None,
) -> dg.SensorDefinition:
    """Run the suite for the latest night when the target reports a new version, at
    ``profile`` (run config and tag as the schedule's: the same kind of night), over
    ``places`` as the schedule fans it out (``$NIGHTLY_SCHEDULE_TARGETS``) when given.

    Watches ``TargetVersionResource.url`` every ``VERSION_POLL_S`` seconds; the first
    version seen is only remembered. Skips when no URL is configured or it is unreachable.
    """
    run_config, profile_tags = profile_launch(profile)
    fanned = (
        None
        if places is None
        else FannedNight(fanned_night_plan(profile, places), places, run_config, profile_tags)
    )

    @dg.sensor(
        name=name,
        job=nightly_suite_job,
        minimum_interval_seconds=VERSION_POLL_S,
        default_status=dg.DefaultSensorStatus.STOPPED,
    )
    def target_version_change(
        context: dg.SensorEvaluationContext, target_version: TargetVersionResource
    ) -> dg.RunRequest | dg.SkipReason | list[dg.RunRequest]:
        target = target_version
        if not target.url:
            return dg.SkipReason("no target version URL configured (TargetVersionResource.url)")
        try:
            version = target.current_version()
        except httpx.HTTPError as exc:
            return dg.SkipReason(f"target version endpoint {target.url} unreachable: {exc}")
        previous = context.cursor
        context.update_cursor(version)
        if previous is None:
            return dg.SkipReason(f"first version seen: {version}")
        if version == previous:
            return dg.SkipReason(f"version unchanged: {version}")
        night = NIGHTS.get_last_partition_key()
        trigger = {TRIGGER_TAG: "version-change", "nightly/version": version}
        if fanned is not None and night is not None:
            now = datetime.now(UTC)
            key = f"version-{version}"
            return fanned_requests(context.instance, context.log, fanned, night, now, key, trigger)
        return dg.RunRequest(
            run_key=f"version-{version}",
            partition_key=night,
            run_config=run_config,
            tags={**profile_tags, **trigger},
        )

    return target_version_change


def make_suite_finished_sensor(
    run_status: dg.DagsterRunStatus, name: str | None = None
) -> dg.SensorDefinition:
    """When a ``nightly_suite`` run ends with ``run_status``, close its row in the store
    and, after a success or a failure, request ``nightly_history`` for the same night
    (``automation.suite_runs``). Runs of ``nightly run`` are left to it.

    A failed blocking check fails the suite run, and the history assets run apart so
    that such a night still gets its verdicts and report; ``run_key`` is
    ``history-<suite run id>``, so each suite run gets one. (A run over
    ``dagster/max_runtime`` is marked failed, not canceled, so a hung night still gets
    its report.)

    A scheduled night fanned out over targets (tagged ``nightly/fanout``) gets one
    history run, after all its runs ended (``night_ended``): the evaluation of the run
    that ended last requests it, whichever of these sensors sees that run, so two runs
    ending between two ticks still make one request (as ``nightly run --targets`` runs
    history once, after every target).

    Store errors are logged, never raised: Dagster moves a run-status sensor past a run
    whose evaluation raised, so raising would lose the history run as well.
    """
    outcome = SUITE_OUTCOMES[run_status]
    requests_history = outcome in HISTORY_AFTER

    @dg.run_status_sensor(
        run_status=run_status,
        name=name or f"nightly_suite_{outcome}",
        monitored_jobs=[nightly_suite_job],
        request_job=nightly_history_job if requests_history else None,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def suite_finished(
        context: dg.RunStatusSensorContext, store: MetricStoreResource
    ) -> dg.RunRequest | dg.SkipReason:
        run = context.dagster_run
        if run.tags.get(TRIGGER_TAG) == CLI_TRIGGER:
            return dg.SkipReason(f"run {run.run_id} is nightly run's: it closes it itself")
        ok, message = close_store_run(store.open(), context.instance, run.run_id, outcome)
        (context.log.info if ok else context.log.error)(message)
        if not requests_history:
            return dg.SkipReason(f"run {run.run_id} was {outcome}: no history run")
        night = run.tags.get(PARTITION_TAG)
        if night is None:
            return dg.SkipReason(f"run {run.run_id} has no night (partition) to evaluate")
        suite_runs, worst = run.run_id, outcome
        if FANOUT_TAG in run.tags:
            ended = night_ended(context.instance, run)
            if isinstance(ended, str):
                return dg.SkipReason(ended)
            suite_runs = ",".join(sorted(ended))
            worst = "failed" if "failed" in ended.values() else "succeeded"
        return dg.RunRequest(
            run_key=f"history-{run.run_id}",
            partition_key=night,
            tags=history_tags(suite_runs, worst, "suite-finished"),
        )

    return suite_finished


def night_ended(instance: dg.DagsterInstance, run: dg.DagsterRun) -> dict[str, RunStatus] | str:
    """The outcomes of a fanned-out night's runs by run id when ``run`` is the last of them
    to end and all ended succeeded or failed; otherwise why its history does not follow
    now (a target still running, a later run, a canceled one).

    The night's runs are the ``nightly_suite`` runs tagged with ``run``'s
    ``nightly/fanout``; each target of the plan (``nightly/night_plan``) counts with its
    latest run (a re-execution replaces the run it re-executes)."""
    records = instance.get_run_records(
        dg.RunsFilter(job_name=nightly_suite_job.name, tags={FANOUT_TAG: run.tags[FANOUT_TAG]}),
        ascending=True,  # oldest first: a target's later run replaces its earlier one
    )
    latest = {r.dagster_run.tags.get(TARGET_TAG): r for r in records}
    planned = [t for t, tests in json.loads(run.tags[NIGHT_PLAN_TAG])["targets"].items() if tests]
    waiting = [t for t in planned if t not in latest or not latest[t].dagster_run.is_finished]
    if waiting:
        return f"run {run.run_id} ended; the night waits for target(s) {', '.join(waiting)}"
    ends = [latest[t] for t in planned]
    last = max(ends, key=lambda r: (r.end_time or 0.0, r.dagster_run.run_id))
    if last.dagster_run.run_id != run.run_id:
        return f"run {run.run_id} ended; the night's history follows its last run"
    outcomes = {r.dagster_run.run_id: SUITE_OUTCOMES[r.dagster_run.status] for r in ends}
    if not set(outcomes.values()) <= HISTORY_AFTER:
        canceled = [i for i, o in outcomes.items() if o not in HISTORY_AFTER]
        return f"the night ended with run(s) {', '.join(canceled)} canceled: no history run"
    return outcomes
