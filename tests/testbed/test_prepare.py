"""``testbed.prepare`` (compose.yaml's one-shot service) against a real PostgreSQL and
Redis (the embedded stack's, no testbed processes): after it, the API, the dispatcher
and the consumer start from the one config file it wrote, and a seeded user logs in."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx

from nightly_pipeline.testbed import migrate, prepare
from nightly_pipeline.testbed.embedded import DEFAULT_PASSWORD
from nightly_pipeline.testbed.stack import EmbeddedStack, StackConfig
from nightly_pipeline.testbed.stack.probes import free_port
from nightly_pipeline.testbed.stack.procs import ManagedProcess


def test_prepared_datastores_serve_the_testbed_processes(
    stack_config: StackConfig, tmp_path: Path
) -> None:
    out = tmp_path / "config" / "testbed.json"
    port = free_port()
    with EmbeddedStack(stack_config) as ep:
        argv = ["--pg-dsn", ep.postgres_dsn, "--redis-url", ep.redis_url]
        argv += ["--http-port", str(port), "--users", "3", "--out", str(out)]
        assert prepare.main(argv) == 0
        config = json.loads(out.read_text())
        assert config["pg_dsn"] == migrate.app_dsn(ep.postgres_dsn)  # row-level security
        processes = []
        try:
            for kind in ("api", "dispatcher", "consumer"):
                extra = [] if kind == "api" else ["--metrics-port", str(free_port())]
                argv = [sys.executable, "-m", f"nightly_pipeline.testbed.{kind}"]
                process = ManagedProcess(
                    kind, [*argv, "--config", str(out), *extra], tmp_path / f"{kind}.log"
                )
                processes.append(process)
                process.start()
                process.wait_line(r"READY", 30)
            login = httpx.post(
                f"http://127.0.0.1:{port}/v1/auth/login",
                json={"username": "user0001", "password": DEFAULT_PASSWORD},
                timeout=10,
            )
            assert login.status_code == 200, login.text
            assert login.json()["access_token"]
        finally:
            left = [pid for p in processes for pid in p.stop(10)]
        assert left == []
