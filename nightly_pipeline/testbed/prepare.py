"""``python -m nightly_pipeline.testbed.prepare``: make a PostgreSQL and a Redis someone
else runs ready for the testbed's processes: apply the migrations, seed the users, write
the one config file the API, the dispatcher and the consumer read.

What ``embedded.PlatformProcesses`` does for the embedded stack, as a one-shot command
for platforms whose datastores are not ours to start (``compose.yaml``'s ``prepare``
service). No fault proxies: the datastores are reached directly.

    python -m nightly_pipeline.testbed.prepare --pg-dsn postgresql://postgres@postgres/postgres \\
        --redis-url redis://redis:6379/0 --http-host 0.0.0.0 --http-port 8080 \\
        --out /config/testbed.json [--users 100] [--password-hash-n 1024]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from nightly_pipeline.testbed import migrate
from nightly_pipeline.testbed.config import TestbedConfig
from nightly_pipeline.testbed.embedded import DEFAULT_PASSWORD
from nightly_pipeline.testbed.seed import seed_users


def prepare(
    pg_dsn: str, config: TestbedConfig, users: int, password: str = DEFAULT_PASSWORD
) -> TestbedConfig:
    """Migrate and seed through ``pg_dsn`` (a superuser); the config the processes read:
    ``config`` with the app role's DSN (row-level security applies to it)."""
    migrate.apply(pg_dsn)
    seed_users(pg_dsn, users, password, hash_n=config.password_hash_n)
    return dataclasses.replace(config, pg_dsn=migrate.app_dsn(pg_dsn))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nightly_pipeline.testbed.prepare")
    parser.add_argument("--pg-dsn", required=True, help="a superuser's DSN (trust auth)")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--http-host", default="127.0.0.1", help="where the API listens")
    parser.add_argument("--http-port", type=int, default=8080)
    parser.add_argument("--users", type=int, default=100, help="users to seed")
    parser.add_argument("--password-hash-n", type=int, default=2**10, help="scrypt cost")
    parser.add_argument("--out", type=Path, required=True, help="the config file to write")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    base = TestbedConfig(
        pg_dsn=ns.pg_dsn,
        redis_url=ns.redis_url,
        http_host=ns.http_host,
        http_port=ns.http_port,
        password_hash_n=ns.password_hash_n,
    )
    config = prepare(ns.pg_dsn, base, ns.users)
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(config.to_json())
    print(f"prepared: {ns.users} users seeded, config in {ns.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
