"""Schedules and the target-version sensor, evaluated with Dagster's test contexts."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from nightly_pipeline.automation.sensors import make_target_version_sensor
from nightly_pipeline.definitions import defs
from nightly_pipeline.resources import TargetVersionResource


def test_every_job_schedule_and_sensor_resolves() -> None:
    assert {j.name for j in defs.resolve_all_job_defs()} >= {
        "engine_selfcheck_job",
        "nightly_suite",
        "baseline_snapshot_job",
    }
    for name in ("nightly_suite_0210_utc", "baseline_snapshot_sunday"):
        assert defs.resolve_schedule_def(name)
    for name in ("run_failure_alert", "regression_alert", "target_version_change"):
        assert defs.resolve_sensor_def(name)


def _tick(schedule_name: str, when: datetime) -> list[dg.RunRequest]:
    schedule = defs.resolve_schedule_def(schedule_name)
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=when)
        return list(schedule.evaluate_tick(context).run_requests or [])


def test_the_suite_runs_at_0210_utc_for_the_night_that_just_ended() -> None:
    schedule = defs.resolve_schedule_def("nightly_suite_0210_utc")
    assert schedule.cron_schedule == "10 2 * * *"
    assert schedule.execution_timezone == "UTC"
    (request,) = _tick("nightly_suite_0210_utc", datetime(2026, 11, 24, 2, 10, tzinfo=UTC))
    assert request.partition_key == "2026-11-23"


def test_the_snapshot_runs_on_sundays_for_the_week_that_ended() -> None:
    schedule = defs.resolve_schedule_def("baseline_snapshot_sunday")
    assert schedule.cron_schedule == "0 6 * * 0"
    (request,) = _tick("baseline_snapshot_sunday", datetime(2026, 11, 22, 6, 0, tzinfo=UTC))
    assert request.partition_key == "2026-11-15"  # the week Sunday 15th to Saturday 21st


class _VersionServer:
    """A real loopback HTTP server reporting a version that the test can change."""

    def __init__(self) -> None:
        self.version = "1.0.0"
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps({"version": outer.version}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/version"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def version_server():
    server = _VersionServer()
    yield server
    server.close()


def test_a_new_target_version_requests_a_suite_run(version_server) -> None:
    sensor = make_target_version_sensor()
    resources = {"target_version": TargetVersionResource(url=version_server.url)}
    cursor = None

    def tick():
        nonlocal cursor
        context = dg.build_sensor_context(
            cursor=cursor, resources=resources, repository_def=defs.get_repository_def()
        )
        result = sensor.evaluate_tick(context)
        cursor = result.cursor
        return result

    first = tick()
    assert not first.run_requests and "first version seen: 1.0.0" in first.skip_message
    assert not tick().run_requests
    version_server.version = "1.1.0"
    (request,) = tick().run_requests
    assert request.tags["nightly/version"] == "1.1.0"
    assert request.run_key == "version-1.1.0"
    assert not tick().run_requests  # remembered


def test_version_sensor_skips_without_a_url_or_when_unreachable() -> None:
    sensor = make_target_version_sensor()
    none = sensor.evaluate_tick(
        dg.build_sensor_context(resources={"target_version": TargetVersionResource()})
    )
    assert "no target version URL" in none.skip_message
    down = sensor.evaluate_tick(
        dg.build_sensor_context(
            resources={"target_version": TargetVersionResource(url="http://127.0.0.1:9/version")}
        )
    )
    assert "unreachable" in down.skip_message
