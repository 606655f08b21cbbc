"""The datastore containers' command: prepare, then ``exec`` the server, so the server is
the container's main process (a ``docker kill`` or ``docker pause`` reaches it, not a
supervisor) and a restarted container starts it again on its own data.

    python -m nightly_pipeline.testbed.docker.entry postgres --port 5432 --database nightly
    python -m nightly_pipeline.testbed.docker.entry redis --port 6379
    python -m nightly_pipeline.testbed.docker.entry consumer -- --config FILE ...

The consumer's name in its group is ``<hostname>-<pid>`` by default: in a container
that is ``consumer-1`` at every start, where on the embedded stack each start is a new
name and the restarted consumer reclaims the dead one's entries (``XAUTOCLAIM``), as
Test 08 measures. So each start of the consumer container gets a new name here.

The servers' modules are imported by their commands only: the consumer's path execs
the consumer at once, without the launcher's imports.

PostgreSQL: ``initdb`` on the first start (as the embedded stack does), then every host
of the platform's private network trusted (``pg_hba.conf``) and ``postgres`` listening on
all the container's addresses; later starts run crash recovery on the same data. The
``CREATE DATABASE`` is the platform's job once the server answers.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

DATA_ROOT = Path("/var/lib/nightly")
HBA_LINE = "host all all 0.0.0.0/0 trust\n"


def run_postgres(port: int, max_connections: int, shared_buffers: str) -> None:
    from nightly_pipeline.testbed.stack.binaries import find_postgres
    from nightly_pipeline.testbed.stack.postgres import (
        PostgresSettings,
        initdb_argv,
        server_argv,
    )

    bins = find_postgres()
    data, sock = DATA_ROOT / "pg" / "data", DATA_ROOT / "pg" / "sock"
    if not (data / "PG_VERSION").is_file():
        data.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(initdb_argv(bins, data), check=True, stdout=sys.stderr)
        with open(data / "pg_hba.conf", "a") as hba:
            hba.write(HBA_LINE)
    sock.mkdir(parents=True, exist_ok=True)
    settings = PostgresSettings(
        port, max_connections=max_connections, shared_buffers=shared_buffers
    )
    argv = server_argv(bins, data, settings, "*", sock)
    os.execv(argv[0], argv)


def run_redis(port: int, appendfsync: str) -> None:
    from nightly_pipeline.testbed.stack.binaries import find_redis
    from nightly_pipeline.testbed.stack.redis import RedisSettings, config_text

    binary = find_redis()
    home = DATA_ROOT / "redis"
    home.mkdir(parents=True, exist_ok=True)
    conf = home / "redis.conf"
    conf.write_text(config_text(RedisSettings(port, appendfsync=appendfsync), home, "0.0.0.0"))
    os.execv(str(binary.path), [str(binary.path), str(conf)])


def run_consumer(args: list[str]) -> None:
    name = f"{socket.gethostname()}-{secrets.token_hex(4)}"
    argv = [sys.executable, "-m", "nightly_pipeline.testbed.consumer", *args, "--name", name]
    os.execv(sys.executable, argv)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m nightly_pipeline.testbed.docker.entry")
    parser.add_argument("server", choices=("postgres", "redis"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-connections", type=int, default=200)
    parser.add_argument("--shared-buffers", default="32MB")
    parser.add_argument("--appendfsync", default="always")
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] == ["consumer"]:
        run_consumer([a for a in args_in[1:] if a != "--"])
    args = parser.parse_args(args_in)
    if args.server == "postgres":
        run_postgres(args.port, args.max_connections, args.shared_buffers)
    else:
        run_redis(args.port, args.appendfsync)


if __name__ == "__main__":
    main()
