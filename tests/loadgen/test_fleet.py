"""The generator fleet end to end: two real Celery worker processes on the embedded
Redis, loading a real loopback HTTP server, merged by the coordinator.

No wall-clock bounds: the assertions are on what was sent and measured (the split of
the arrivals, per-second counts, the merged histogram against the one rebuilt from the
workers' raw values) and on the errors; every wait in the fleet is bounded by its
settings, so a lost worker ends in an error and never in a hang.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from nightly_pipeline.loadgen import ConstantArrivalRate, LoadTest, Recorder, RunBounds, run_load
from nightly_pipeline.loadgen.errors import TargetNotAllowedError
from nightly_pipeline.loadgen.fleet import FleetError
from nightly_pipeline.loadgen.fleet_wire import PREFIX, FleetSettings
from nightly_pipeline.loadgen.scenario import GetPath
from tests.loadgen.fleet_procs import fleet_redis, fleet_workers, start_worker
from tests.loadgen.scenarios import RecordsRaw
from tests.loadgen.servers import http_server

QUANTILES = (1, 5, 10, 25, 50, 75, 90, 95, 99, 99.9, 100)


@pytest.fixture(scope="module")
def fleet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fleet")


@pytest.fixture(scope="module")
def broker(fleet_dir: Path):
    with fleet_redis(fleet_dir / "redis") as url:
        yield url


@pytest.fixture(scope="module")
def workers(broker: str, fleet_dir: Path):
    with fleet_workers(broker, 2, fleet_dir) as procs:
        yield procs


@pytest.fixture(scope="module")
def server():
    with http_server() as srv:
        yield srv


def fleet_test(scenario, url: str, broker: str, rate: float, duration_s: float, **kw) -> LoadTest:
    settings = FleetSettings(broker, **kw)
    config = ConstantArrivalRate(rate=rate, bounds=RunBounds(duration_s), max_vus=50)
    return LoadTest(config, scenario, url, workers=2, fleet=settings)


def test_merged_figures_equal_the_one_host_figures_of_the_same_arrivals(
    workers, server, broker, tmp_path
) -> None:
    """Each worker takes every 2nd arrival: their scheduled offsets together are the
    schedule; the merged ``arrivals`` per second are the arrivals scheduled in that
    second; the merged ``http_req_duration`` (HdrHistograms streamed per second) equals
    the histogram one recorder builds from the union of the workers' raw values.
    10/s keeps every arrival 100 ms from a second's close (a later one would count in
    the next second)."""
    test = fleet_test(RecordsRaw(str(tmp_path)), server.url, broker, rate=10, duration_s=6)
    seen = []
    result = run_load(test, progress=seen.append)

    raws = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("raw-*.json"))]
    assert len(raws) == 2 and all(raw["offsets"] for raw in raws)
    offsets = sorted(o for raw in raws for o in raw["offsets"])
    scheduled = list(test.executor.offsets())
    assert len(offsets) == len(scheduled) == 60
    assert offsets == pytest.approx(scheduled, abs=1e-6)
    assert result.counts["started"] == 60 and result.counts["dropped"] == 0

    per_second = {
        r["second"]: r["value"] for r in result.recorder.series_rows() if r["metric"] == "arrivals"
    }
    assert per_second == dict(Counter(int(o) for o in offsets))

    one_host = Recorder(0.0)
    for value in (d for raw in raws for d in raw["durations"]):
        one_host.trend("http_req_duration", value, 0.5)
    one_host.close_all()
    merged, rebuilt = (
        result.recorder.stats("http_req_duration"),
        one_host.stats("http_req_duration"),
    )
    for key in ("count", "avg", "min", "med", "max"):
        assert merged[key] == rebuilt[key], key
    for q in QUANTILES:
        key = f"p({q})"
        assert merged[key] == rebuilt[key], key
    assert result.passed and seen, "progress is reported from the merged seconds"


def test_a_fleet_run_leaves_no_keys_in_redis(workers, server, broker) -> None:
    """The run's keys (test, out, start, stop) are deleted once every worker is done."""
    from redis import Redis

    run_load(fleet_test(GetPath("/"), server.url, broker, rate=20, duration_s=2))
    with Redis.from_url(broker) as redis:
        assert list(redis.scan_iter(f"{PREFIX}*")) == []


def test_selfcheck_runs_on_the_fleet_from_the_cli(workers, broker, tmp_path, capsys) -> None:
    """``nightly selfcheck --workers 2 --fleet URL``: the CLI hands the broker to the
    engine, the two fleet workers send the load, the run is recorded with every request
    of the schedule and none failed. (Its verdict is not asserted: the self-check's
    thresholds are latencies, which a loaded machine may miss.)"""
    from nightly_pipeline.cli import main

    summary = tmp_path / "summary.json"
    argv = ["--store", str(tmp_path / "m.duckdb"), "selfcheck", "--rate", "50"]
    argv += ["--duration", "2", "--workers", "2", "--fleet", broker]
    argv += ["--night", "2026-11-21", "--summary-export", str(summary)]
    code = main(argv)
    out = capsys.readouterr().out
    assert code in (0, 1) and "engine_selfcheck: " in out, out
    metrics = json.loads(summary.read_text())["metrics"]
    assert metrics["http_reqs"]["count"] == 100
    assert metrics["http_req_failed"]["passes"] == 0


def test_non_loopback_target_is_refused_before_dispatch(broker) -> None:
    """The safety rule on the coordinator: nothing is sent to the workers."""
    with pytest.raises(TargetNotAllowedError):
        run_load(fleet_test(GetPath("/"), "http://192.0.2.1:80", broker, rate=10, duration_s=1))


def test_missing_workers_are_a_clear_error_not_a_hang(broker, server) -> None:
    """No worker consumes this queue: the error says how many are missing and how to
    start them, after ``ready_timeout_s``."""
    test = fleet_test(
        GetPath("/"), server.url, broker, rate=10, duration_s=1, queue="nobody", ready_timeout_s=2
    )
    with pytest.raises(FleetError, match=r"2 of 2 fleet workers not ready .* -Q nobody -c 1"):
        run_load(test)


def test_a_worker_killed_mid_run_is_an_error_naming_it(broker, server, fleet_dir) -> None:
    """Kill -9 one worker's process group once the merged seconds flow: the run ends in
    a FleetError that names the lost worker (its Celery node), after the silence limit."""
    queue = "kill-test"
    a = start_worker(broker, queue, "victim", fleet_dir)
    b = start_worker(broker, queue, "survivor", fleet_dir)
    try:
        killed = threading.Event()

        def kill_on_first_report(_progress) -> None:
            if not killed.is_set():
                killed.set()
                os.killpg(a.pid, signal.SIGKILL)  # its group: the worker and its pool child

        test = fleet_test(
            GetPath("/"), server.url, broker, rate=20, duration_s=30, queue=queue, silence_limit_s=5
        )
        with pytest.raises(
            FleetError, match=r"fleet worker \d of 2 \(host victim@.*\) lost: nothing from it"
        ):
            run_load(test, progress=kill_on_first_report)
        assert killed.is_set()
    finally:
        a.stop()
        b.stop()


def test_fleet_settings_are_checked_with_the_test() -> None:
    """A wrong broker URL and a silence limit shorter than the report interval are both
    named, before anything is dispatched."""
    from nightly_pipeline.loadgen import ConfigError

    bad = FleetSettings("amqp://x", silence_limit_s=1)
    with pytest.raises(ConfigError, match=r"redis:// URL(.|\n)*silence_limit_s must be >= 2"):
        run_load(
            fleet_test(GetPath("/"), "http://127.0.0.1:1", bad.broker_url, 10, 1, silence_limit_s=1)
        )


def test_messages_carry_second_snapshots_unchanged() -> None:
    """What a worker streams decodes to the snapshots it closed (encoded histograms)."""
    from nightly_pipeline.loadgen.fleet_wire import decode, encode

    rec = Recorder(0.0)
    for value in (1.0, 2.5, 900.0):
        rec.trend("http_req_duration", value, 0.2)
    snaps = rec.close_all()
    index, kind, payload = decode(encode(1, "seconds", (snaps, 1)))
    assert (index, kind, payload) == (1, "seconds", (snaps, 1))
    merged = Recorder(0.0)
    merged.ingest(payload[0])
    assert merged.stats("http_req_duration")["max"] == 900.0


def test_a_worker_refuses_a_non_loopback_target_itself(workers, broker) -> None:
    """The safety rule on the worker, whatever dispatched the task: a test for a
    non-loopback target put straight into Redis (no coordinator check) is refused on
    the worker, which reports the error before sending any request."""
    import pickle
    import uuid

    from celery import Celery
    from redis import Redis

    from nightly_pipeline.loadgen.fleet_task import configure
    from nightly_pipeline.loadgen.fleet_wire import TASK_NAME, FleetKeys, decode

    keys = FleetKeys(f"refused-{uuid.uuid4().hex}")
    config = ConstantArrivalRate(rate=10, bounds=RunBounds(1), max_vus=5)
    test = LoadTest(config, GetPath("/"), "http://192.0.2.1:80")
    app = configure(Celery("refusal-test", broker=broker, backend=broker))
    messages = []
    with Redis.from_url(broker) as redis:
        try:
            redis.set(keys.test, pickle.dumps(test), ex=120)
            app.send_task(TASK_NAME, args=[keys.run_id, 0, 1, 5.0], queue="nightly-loadgen")
            for _ in range(60):  # bounded: at most 60 one-second waits
                item = redis.blpop([keys.out], timeout=1)
                if item is not None:
                    messages.append(decode(item[1]))
                if any(kind == "error" for _, kind, _ in messages):
                    break
        finally:
            redis.delete(*keys.every(1))
            app.close()
    assert [kind for _, kind, _ in messages] == ["accepted", "error"]
    assert "TargetNotAllowedError" in messages[-1][2] and "192.0.2.1" in messages[-1][2]


COORDINATOR = """
import sys
from nightly_pipeline.loadgen import ConstantArrivalRate, LoadTest, RunBounds, run_load
from nightly_pipeline.loadgen.fleet_wire import FleetSettings
from nightly_pipeline.loadgen.scenario import GetPath

url, broker = sys.argv[1], sys.argv[2]
config = ConstantArrivalRate(rate=20, bounds=RunBounds(60), max_vus=10)
fleet = FleetSettings(broker, silence_limit_s=3)
test = LoadTest(config, GetPath("/"), url, workers=2, fleet=fleet)
run_load(test, progress=lambda _: print("running", flush=True))
"""


def test_a_killed_coordinator_leaves_no_load_running(workers, broker, server) -> None:
    """Kill -9 the coordinator (its own process) once the load runs: both workers find
    its heartbeat gone and stop their load, reporting far fewer iterations than the 60 s
    schedule's 1,200."""
    from redis import Redis

    from nightly_pipeline.loadgen.fleet_wire import FleetKeys, decode

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    argv = [sys.executable, "-c", COORDINATOR, server.url, broker]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, env=env, start_new_session=True)
    done = []
    try:
        # Bounded: the coordinator's own waits are bounded, and it exits (EOF) on error.
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"running"
        with Redis.from_url(broker) as redis:
            found = [k.decode() for k in redis.scan_iter(f"{PREFIX}*:test")]
            assert len(found) == 1
            keys = FleetKeys(found[0][len(PREFIX) : -len(":test")])
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            give_up = time.monotonic() + 60  # bounded; the workers' 60 s run would end then
            while len(done) < 2 and time.monotonic() < give_up:
                item = redis.blpop([keys.out], timeout=1)
                if item is not None and (message := decode(item[1]))[1] == "done":
                    done.append(message)
            redis.delete(*keys.every(2))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert sorted(index for index, _, _ in done) == [0, 1]
    started = sum(payload[1]["started"] for _, _, payload in done)
    assert 0 < started < 600
