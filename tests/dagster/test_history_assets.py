"""History assets and alert sensors through real Dagster, on a seeded store."""

from __future__ import annotations

import json
from datetime import date

import dagster as dg
import pytest

from nightly_pipeline import evaluate
from nightly_pipeline.alerts import Alert, PendingInbox, RetryBound
from nightly_pipeline.assets.history import baseline_snapshot, nightly_report, regressions
from nightly_pipeline.automation.sensors import (
    make_regression_alert_sensor,
    make_run_failure_alert_sensor,
)
from nightly_pipeline.automation.suite_runs import PARTITION_TAG, PROFILE_TAG
from nightly_pipeline.resources import AlertsResource, MetricStoreResource
from tests.alerts.receiver import Receiver, Reply
from tests.dagster.history_fixture import FIRST_NIGHT, STEP_NIGHT, seed_history
from tests.real_rows import SOAK, two_profile_history

LAST_NIGHT = "2026-11-22"


@pytest.fixture
def store_path(tmp_path):
    path = tmp_path / "home" / "metrics.duckdb"
    seed_history(path)
    return path


@pytest.fixture
def slack():
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


def _resources(store_path, slack=None) -> dict:
    alerts = AlertsResource(slack_webhook_url=slack.url if slack else "", dry_run=slack is None)
    return {"store": MetricStoreResource(path=str(store_path)), "alerts": alerts}


def test_regressions_and_report_materialise_for_a_night(store_path) -> None:
    result = dg.materialize(
        [regressions, nightly_report], partition_key=LAST_NIGHT, resources=_resources(store_path)
    )
    assert result.success
    (evaluated,) = result.asset_materializations_for_node("regressions")
    assert evaluated.metadata["regression"].value == 1
    (report,) = result.asset_materializations_for_node("nightly_report")
    page = report.metadata["path"].value
    assert page.endswith(f"{LAST_NIGHT}.html")
    with open(page) as html:
        assert "01_message_soak" in html.read()
    assert "regression" in report.metadata["summary"].value

    store = MetricStoreResource(path=str(store_path)).open()
    verdicts = store.verdicts(date.fromisoformat(LAST_NIGHT))
    (bad,) = [r for r in verdicts.iter_rows(named=True) if r["verdict"] == "regression"]
    assert (bad["test"], bad["metric"]) == ("01_message_soak", "http_req_duration.p95")
    assert 0 <= (bad["first_bad_night"] - STEP_NIGHT).days <= 3
    assert bad["magnitude"] > 0.15


def test_weekly_snapshot_check_fails_on_a_regression_and_passes_without(store_path) -> None:
    def snapshot(week: str):
        return dg.materialize(
            [baseline_snapshot],
            partition_key=week,
            resources=_resources(store_path),
            raise_on_error=False,
        )

    (before,) = snapshot("2026-11-08").get_asset_check_evaluations()  # week to Nov 14
    assert before.passed
    (after,) = snapshot("2026-11-15").get_asset_check_evaluations()  # week to Nov 21
    assert not after.passed
    assert "01_message_soak http_req_duration.p95" in after.description


def test_a_new_regression_is_alerted_once(store_path, slack) -> None:
    dg.materialize([regressions], partition_key=LAST_NIGHT, resources=_resources(store_path))
    sensor = make_regression_alert_sensor()
    resources = _resources(store_path, slack)
    first = sensor.evaluate_tick(dg.build_sensor_context(resources=resources))
    assert "sent 1 alert(s)" in first.skip_message
    (request,) = slack.requests
    text = request.body.decode()
    assert "01_message_soak" in text and "http_req_duration.p95" in text
    assert STEP_NIGHT.isoformat()[:8] in text  # the first bad night is named
    again = sensor.evaluate_tick(dg.build_sensor_context(cursor=first.cursor, resources=resources))
    assert "nothing new" in again.skip_message
    assert len(slack.requests) == 1


@dg.op
def _always_fails() -> None:
    raise RuntimeError("the target did not start")


@dg.job
def _failing_job() -> None:
    _always_fails()


def _fail_a_run(instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    return _failing_job.execute_in_process(
        instance=instance,
        raise_on_error=False,
        tags={PROFILE_TAG: "smoke", PARTITION_TAG: LAST_NIGHT},
    )


def _alert_run_failure(instance, result, resources: dict) -> None:
    """``run_failure_alert`` on ``result``'s failure, in Dagster's own context."""
    with dg.build_run_status_sensor_context(
        sensor_name="run_failure_alert",
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event(),
        resources=resources,
    ) as context:
        make_run_failure_alert_sensor()(context.for_run_failure())


def test_a_failed_run_is_alerted(slack, tmp_path) -> None:
    store = MetricStoreResource(path=str(tmp_path / "home" / "metrics.duckdb"))
    with dg.instance_for_test() as instance:
        result = _fail_a_run(instance)
        alerts = AlertsResource(slack_webhook_url=slack.url)
        _alert_run_failure(instance, result, {"alerts": alerts, "store": store})
    (request,) = slack.requests
    text = request.json()["text"] + json.dumps(request.json()["blocks"])
    assert "Run failed: _failing_job (smoke)" in text  # the job and the run's profile
    assert "Steps failed: ['_always_fails']" in text  # the failure's message
    assert f"night {LAST_NIGHT}" in text  # the run's night, not today's
    assert result.dagster_run.run_id in text
    assert PendingInbox(store.home().pending_alerts).files() == []  # nothing owed


def _tick(sensor: dg.SensorDefinition, cursor: str | None, resources: dict):
    with dg.build_sensor_context(cursor=cursor, resources=resources) as context:
        return sensor.evaluate_tick(context)


def test_a_failed_run_not_alerted_in_an_outage_is_sent_once_by_the_next_ticks(
    slack, tmp_path, capfd
) -> None:
    """Dagster moves run_failure_alert past the run whatever the delivery did: the alert
    the webhook refused (HTTP 500) is kept in the home, the sensor's log says so, and
    regression_alert sends it once, at its first tick after the webhook is back, even
    before any night is evaluated."""
    store = MetricStoreResource(path=str(tmp_path / "home" / "metrics.duckdb"))
    resources = {
        "store": store,
        "alerts": AlertsResource(slack_webhook_url=slack.url, max_attempts=1),
    }
    slack.default = Reply(500, body=b"outage")
    with dg.instance_for_test() as instance:
        result = _fail_a_run(instance)
        capfd.readouterr()
        _alert_run_failure(instance, result, resources)
    assert len(PendingInbox(store.home().pending_alerts).files()) == 1
    said = capfd.readouterr().err  # the sensor's log, as the daemon's log shows it
    assert "dagster - INFO - alert via slack: ok=False" in said
    run_id = result.dagster_run.run_id
    assert f"dagster - WARNING - run {run_id}'s alert pending for slack: retried" in said
    sensor = make_regression_alert_sensor()
    tick = _tick(sensor, None, resources)  # still down
    assert "sent 0 alert(s)" in tick.skip_message and "1 pending" in tick.skip_message
    slack.default = Reply()  # the webhook recovers
    tick = _tick(sensor, tick.cursor, resources)
    assert "sent 1 alert(s)" in tick.skip_message and "0 pending" in tick.skip_message
    after = _tick(sensor, tick.cursor, resources)
    assert "no night has been evaluated yet" in after.skip_message
    assert PendingInbox(store.home().pending_alerts).files() == []
    assert slack.answered == [500, 500, 200]
    text = slack.requests[-1].body.decode()
    assert "Run failed: _failing_job (smoke)" in text and result.dagster_run.run_id in text


def test_a_pending_run_failure_alert_goes_out_with_the_nights_alerts(
    two_profile_store, slack
) -> None:
    """Adopted into the same outbox: the night's alerts and the failed run's, one message,
    each sent once."""
    store = MetricStoreResource(path=str(two_profile_store))
    resources = _alert_resources(two_profile_store, slack)
    slack.default = Reply(500, body=b"outage")
    with dg.instance_for_test() as instance:
        result = _fail_a_run(instance)
        _alert_run_failure(instance, result, resources)
    slack.default = Reply()
    sensor = make_regression_alert_sensor()
    tick = _tick(sensor, None, resources)
    assert f"sent {len(_due(two_profile_store)) + 1} alert(s)" in tick.skip_message
    again = _tick(sensor, tick.cursor, resources)
    assert "nothing new" in again.skip_message
    assert slack.answered == [500, 200]
    text = slack.requests[-1].json()["text"]
    assert "Run failed: _failing_job (smoke)" in text and f"Check failed: {SOAK} (ci)" in text
    assert PendingInbox(store.home().pending_alerts).files() == []


@pytest.fixture
def two_profile_store(tmp_path):
    """The soak at ci and smoke; ci regressed from STEP_NIGHT, both failed LAST_NIGHT."""
    path = tmp_path / "home" / "metrics.duckdb"
    store = MetricStoreResource(path=str(path)).open()
    last = date.fromisoformat(LAST_NIGHT)
    nights = (last - FIRST_NIGHT).days + 1
    two_profile_history(store, FIRST_NIGHT, nights, ci_step=STEP_NIGHT, failed_on=last)
    dg.materialize([regressions], partition_key=LAST_NIGHT, resources=_resources(path))
    return path


def _due(store_path) -> list[Alert]:
    """What the night owes: every ci regression (one per latency stat) and both failures."""
    store = MetricStoreResource(path=str(store_path)).open()
    return evaluate.alerts_due(store, date.fromisoformat(LAST_NIGHT))


def _alert_resources(store_path, slack) -> dict:
    """One attempt per tick: each tick is one request per message, no waits."""
    alerts = AlertsResource(slack_webhook_url=slack.url, max_attempts=1)
    return {"store": MetricStoreResource(path=str(store_path)), "alerts": alerts}


def test_a_test_failing_at_two_profiles_is_alerted_for_each(two_profile_store, slack) -> None:
    """The failed-test path: each profile's failed run is its own alert, named."""
    sensor = make_regression_alert_sensor()
    resources = _alert_resources(two_profile_store, slack)
    due = _due(two_profile_store)
    regressions = [a for a in due if a.kind == "regression"]
    assert {a.profile for a in regressions} == {"ci"}
    first = sensor.evaluate_tick(dg.build_sensor_context(resources=resources))
    assert f"sent {len(due)} alert(s)" in first.skip_message, first.skip_message
    (request,) = slack.requests  # one message for the night
    text = request.json()["text"]
    assert f"2 failed checks, {len(regressions)} regressions" in text
    assert f"Check failed: {SOAK} (ci)" in text and f"Check failed: {SOAK} (smoke)" in text
    assert f"Regression: {SOAK} (ci) · http_req_duration.p95" in text
    assert f"Regression: {SOAK} (smoke)" not in text
    again = sensor.evaluate_tick(dg.build_sensor_context(cursor=first.cursor, resources=resources))
    assert "nothing new" in again.skip_message
    assert len(slack.requests) == 1


def test_an_alert_not_delivered_is_retried_at_the_next_tick(two_profile_store, slack) -> None:
    """A webhook outage (HTTP 500) loses nothing: the alerts stay pending and go out
    once, at the first tick after the webhook is back."""
    sensor = make_regression_alert_sensor()
    resources = _alert_resources(two_profile_store, slack)
    due = len(_due(two_profile_store))
    slack.default = Reply(500, body=b"outage")
    cursor = None
    for _ in range(2):
        tick = sensor.evaluate_tick(dg.build_sensor_context(cursor=cursor, resources=resources))
        assert "sent 0 alert(s)" in tick.skip_message
        assert f"{due} pending" in tick.skip_message
        cursor = tick.cursor
    slack.default = Reply()  # the webhook recovers
    tick = sensor.evaluate_tick(dg.build_sensor_context(cursor=cursor, resources=resources))
    assert f"sent {due} alert(s)" in tick.skip_message and "0 pending" in tick.skip_message
    after = sensor.evaluate_tick(dg.build_sensor_context(cursor=tick.cursor, resources=resources))
    assert "nothing new" in after.skip_message
    assert slack.answered == [500, 500, 200]
    delivered = slack.requests[-1].json()["text"]
    assert "(ci)" in delivered and "(smoke)" in delivered


def test_an_alert_is_given_up_past_its_bound_and_logged(two_profile_store, slack, capfd) -> None:
    sensor = make_regression_alert_sensor(bound=RetryBound(max_ticks=2))
    resources = _alert_resources(two_profile_store, slack)
    slack.default = Reply(500, body=b"outage")
    first = sensor.evaluate_tick(dg.build_sensor_context(resources=resources))
    second = sensor.evaluate_tick(dg.build_sensor_context(cursor=first.cursor, resources=resources))
    assert f"{len(_due(two_profile_store))} given up" in second.skip_message
    logged = capfd.readouterr().err  # the sensor's log, an error per alert given up
    assert "check_failed alert 01_message_soak (smoke) of 2026-11-22 given up after 2" in logged
    third = sensor.evaluate_tick(dg.build_sensor_context(cursor=second.cursor, resources=resources))
    assert "nothing new" in third.skip_message
    assert slack.answered == [500, 500]
