"""History assets and alert sensors through real Dagster, on a seeded store."""

from __future__ import annotations

from datetime import date

import dagster as dg
import pytest

from nightly_pipeline.assets.history import baseline_snapshot, nightly_report, regressions
from nightly_pipeline.automation.sensors import (
    make_regression_alert_sensor,
    make_run_failure_alert_sensor,
)
from nightly_pipeline.resources import AlertsResource, MetricStoreResource
from tests.alerts.receiver import Receiver
from tests.dagster.history_fixture import STEP_NIGHT, seed_history

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


def test_a_failed_run_is_alerted(slack) -> None:
    with dg.instance_for_test() as instance:
        result = _failing_job.execute_in_process(instance=instance, raise_on_error=False)
        context = dg.build_run_status_sensor_context(
            sensor_name="run_failure_alert",
            dagster_instance=instance,
            dagster_run=result.dagster_run,
            dagster_event=result.get_run_failure_event(),
            resources={"alerts": AlertsResource(slack_webhook_url=slack.url)},
        ).for_run_failure()
        make_run_failure_alert_sensor()(context)
    (request,) = slack.requests
    assert "_failing_job" in request.body.decode()
