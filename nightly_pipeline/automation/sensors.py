"""Sensors: alerts on failed runs, failed checks and new regressions; a run when the
target's reported version changes. Each comes from a small factory so tests can build
one with their own resources and names."""

import json
from datetime import UTC, datetime

import dagster as dg
import httpx

from nightly_pipeline import evaluate
from nightly_pipeline.alerts import Alert
from nightly_pipeline.assets.partitions import NIGHTS
from nightly_pipeline.automation.jobs import nightly_suite_job
from nightly_pipeline.resources import AlertsResource, MetricStoreResource, TargetVersionResource

ALERT_POLL_S = 300
VERSION_POLL_S = 300
SENT_KEYS_KEPT = 1000
"""The alert sensor's cursor remembers this many sent alerts (oldest dropped first)."""


def make_run_failure_alert_sensor(name: str = "run_failure_alert") -> dg.SensorDefinition:
    """Alert Slack/Discord when any run of this code location fails."""

    @dg.run_failure_sensor(name=name, default_status=dg.DefaultSensorStatus.RUNNING)
    def run_failure_alert(context: dg.RunFailureSensorContext, alerts: AlertsResource) -> None:
        run = context.dagster_run
        key = run.tags.get("dagster/partition")
        night = datetime.now(UTC).date() if key is None else datetime.fromisoformat(key).date()
        message = context.failure_event.message or "run failed"
        deliveries = alerts.send(
            [
                Alert(
                    kind="run_failed",
                    night=night,
                    test=run.job_name,
                    metric=None,
                    magnitude=None,
                    first_bad_night=None,
                    detail=f"run {run.run_id}: {message}",
                    report_url=None,
                )
            ]
        )
        for delivery in deliveries:
            context.log.info(f"alert via {delivery.channel}: ok={delivery.ok}")

    return run_failure_alert


def make_regression_alert_sensor(name: str = "regression_alert") -> dg.SensorDefinition:
    """Alert once per new regression and per failed test of the latest evaluated night."""

    @dg.sensor(
        name=name,
        minimum_interval_seconds=ALERT_POLL_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def regression_alert(
        context: dg.SensorEvaluationContext, store: MetricStoreResource, alerts: AlertsResource
    ) -> dg.SkipReason:
        opened = store.open()
        evaluated = opened.verdicts()
        if evaluated.is_empty():
            return dg.SkipReason("no night has been evaluated yet")
        night = evaluated["night"].max()
        sent: list[str] = json.loads(context.cursor) if context.cursor else []
        page = opened.path.parent / "reports" / f"{night}.html"
        due = evaluate.alerts_due(
            opened, night, sent=set(sent), report_url=page.as_uri() if page.exists() else None
        )
        if not due:
            return dg.SkipReason(f"nothing new to alert for {night}")
        deliveries = alerts.send(due)
        sent += [evaluate.alert_key(a) for a in due]
        context.update_cursor(json.dumps(sent[-SENT_KEYS_KEPT:]))
        summary = ", ".join(f"{d.channel} ok={d.ok}" for d in deliveries) or "no channel set"
        return dg.SkipReason(f"sent {len(due)} alert(s) for {night}: {summary}")

    return regression_alert


def make_target_version_sensor(name: str = "target_version_change") -> dg.SensorDefinition:
    """Run the suite for the latest night when the target reports a new version.

    Watches ``TargetVersionResource.url`` every ``VERSION_POLL_S`` seconds; the first
    version seen is only remembered. Skips when no URL is configured or it is unreachable.
    """

    @dg.sensor(
        name=name,
        job=nightly_suite_job,
        minimum_interval_seconds=VERSION_POLL_S,
        default_status=dg.DefaultSensorStatus.STOPPED,
    )
    def target_version_change(
        context: dg.SensorEvaluationContext, target_version: TargetVersionResource
    ) -> dg.RunRequest | dg.SkipReason:
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
        return dg.RunRequest(
            run_key=f"version-{version}",
            partition_key=NIGHTS.get_last_partition_key(),
            tags={"nightly/trigger": "version-change", "nightly/version": version},
        )

    return target_version_change
