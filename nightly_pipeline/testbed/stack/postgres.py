"""PostgreSQL for the embedded stack: initdb (trust auth, no fsync, small buffers),
``postgres`` on a loopback port with its socket directory beside the data, readiness by
``SELECT 1`` over the wire, the database created, ``pg_ctl stop -m fast`` to stop.

Durability: ``fsync=off`` and ``full_page_writes=off`` (nothing waits for the disk; only
an OS crash or power loss could lose or tear data, which no test causes) but
``synchronous_commit=on``: a commit is acknowledged only once its WAL is written to the
kernel, so a kill -9 of the server keeps every acknowledged commit (the page cache
survives a process kill) and ``start()`` again on the same data directory runs crash
recovery (the chaos tests' restart). With ``synchronous_commit=off`` the last commits
live only in shared memory until the WAL writer runs: measured here, a kill -9 under a
commit loop lost 3-12 acknowledged rows each time; ``on`` lost none, at no measurable
cost (fsync is off, so it adds one ``write()``).

Layout of the PostgreSQL home (``<run_dir>/postgres`` unless it must live elsewhere,
see ``privileges``): ``data/`` (PGDATA) and ``sock/`` (unix socket).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from nightly_pipeline.testbed.stack.binaries import PostgresBinaries
from nightly_pipeline.testbed.stack.errors import StackError, StackStartError
from nightly_pipeline.testbed.stack.privileges import RunAs
from nightly_pipeline.testbed.stack.probes import HOST, pg_query
from nightly_pipeline.testbed.stack.procs import ManagedProcess
from nightly_pipeline.testbed.stack.spawn import die_with_parent

log = logging.getLogger(__name__)
SUPERUSER = "postgres"


@dataclass(frozen=True)
class PostgresSettings:
    port: int
    database: str = "nightly"
    max_connections: int = 200
    shared_buffers: str = "32MB"
    ready_timeout_s: float = 30.0
    stop_timeout_s: float = 10.0


class PostgresServer:
    def __init__(
        self,
        bins: PostgresBinaries,
        home: Path,
        settings: PostgresSettings,
        log_dir: Path,
        run_as: RunAs | None,
        on_spawn: Callable[[ManagedProcess], None] | None = None,
    ) -> None:
        self.bins = bins
        self._on_spawn = on_spawn
        self.home = home
        self.data = home / "data"
        self.sock = home / "sock"
        self.settings = settings
        self.log_dir = log_dir
        self.run_as = run_as
        self._kwargs = run_as.popen_kwargs() if run_as else {}
        self.process: ManagedProcess | None = None

    @property
    def dsn(self) -> str:
        return f"postgresql://{SUPERUSER}@{HOST}:{self.settings.port}/{self.settings.database}"

    def prepare(self) -> None:
        """Recover from a crashed run if needed, then initdb unless a clean cluster exists."""
        self._recover_stale()
        if (self.data / "PG_VERSION").is_file():
            log.info("reusing the PostgreSQL cluster in %s", self.data)
        else:
            if self.data.exists():
                log.info("removing an incomplete PostgreSQL data dir %s", self.data)
                shutil.rmtree(self.data)
            self._initdb()
        self.sock.mkdir(parents=True, exist_ok=True)
        if self.run_as is not None:
            self.run_as.chown_tree(self.home)

    def _recover_stale(self) -> None:
        pid_file = self.data / "postmaster.pid"
        if not pid_file.is_file():
            return
        try:
            pid = int(pid_file.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            pid = 0
        if pid > 0 and _is_postgres(pid):
            raise StackError(
                f"a postgres (pid {pid}) is still running on {self.data}; stop it with "
                f"`{self.bins.tool('pg_ctl')} stop -D {self.data} -m fast` or use another run dir"
            )
        log.warning(
            "recovering from a crashed run: %s names pid %d, which is not running; "
            "starting from a fresh data dir",
            pid_file,
            pid,
        )
        shutil.rmtree(self.data)

    def _initdb(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        if self.run_as is not None:
            self.run_as.chown_tree(self.home)
        argv = initdb_argv(self.bins, self.data)
        logfile = self.log_dir / "initdb.log"
        logfile.parent.mkdir(parents=True, exist_ok=True)
        with open(logfile, "ab") as out:
            try:
                done = subprocess.run(
                    argv,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=self.home,
                    timeout=120,
                    preexec_fn=die_with_parent(),  # the calling thread waits: it outlives it
                    **self._kwargs,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                raise StackStartError("initdb", str(exc), logfile, _tail(logfile)) from exc
        if done.returncode != 0:
            raise StackStartError(
                "initdb", f"exited with code {done.returncode}", logfile, _tail(logfile)
            )

    def start(self) -> None:
        s = self.settings
        argv = server_argv(self.bins, self.data, s, HOST, self.sock)
        self.process = ManagedProcess(
            "postgres",
            argv,
            self.log_dir / "postgres.log",
            cwd=self.home,
            popen_kwargs=self._kwargs,
            on_spawn=self._on_spawn,
        )
        self.process.start()
        self.process.wait_ready(
            lambda: answers_select_1(s.port), s.ready_timeout_s, "SELECT 1 answered"
        )
        create_database(s.port, s.database)

    def server_version(self) -> str:
        _, params = pg_query(self.settings.port, "SELECT 1", user=SUPERUSER, database="postgres")
        return params.get("server_version", "")

    def stop(self) -> list[int]:
        if self.process is None:
            return []
        return self.process.stop(self.settings.stop_timeout_s, graceful=self._pg_ctl_stop)

    def _pg_ctl_stop(self) -> None:
        argv = [str(self.bins.tool("pg_ctl")), "stop", "-D", str(self.data), "-m", "fast", "-w"]
        argv += ["-t", str(int(self.settings.stop_timeout_s))]
        subprocess.run(
            argv,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            cwd=self.home,
            timeout=self.settings.stop_timeout_s + 5,
            **self._kwargs,
        )

    def remove_data(self) -> None:
        shutil.rmtree(self.data, ignore_errors=True)


def server_argv(
    bins: PostgresBinaries, data: Path, settings: PostgresSettings, listen: str, sock: Path
) -> list[str]:
    """The ``postgres`` command line (the durability settings of the module docstring);
    the Docker platform's container runs the same one, listening on its network."""
    options = {
        "listen_addresses": listen,
        "unix_socket_directories": str(sock),
        "max_connections": str(settings.max_connections),
        "shared_buffers": settings.shared_buffers,
        "fsync": "off",
        "synchronous_commit": "on",
        "full_page_writes": "off",
        "logging_collector": "off",
        "log_min_messages": "warning",
    }
    argv = [str(bins.tool("postgres")), "-D", str(data), "-p", str(settings.port)]
    for key, value in options.items():
        argv += ["-c", f"{key}={value}"]
    return argv


def initdb_argv(bins: PostgresBinaries, data: Path) -> list[str]:
    """``initdb``: trust authentication, UTF-8, C locale, no sync."""
    return [
        str(bins.tool("initdb")),
        "-D",
        str(data),
        "-U",
        SUPERUSER,
        "--auth=trust",
        "--encoding=UTF8",
        "--locale=C",
        "--no-sync",
    ]


def _is_postgres(pid: int) -> bool:
    try:
        return "postgres" in psutil.Process(pid).name()
    except psutil.Error:
        return False


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def answers_select_1(port: int) -> bool:
    """Whether the server on ``port`` answers ``SELECT 1`` as the superuser (ready)."""
    rows, _ = pg_query(port, "SELECT 1", user=SUPERUSER, database="postgres")
    return rows == [["1"]]


def create_database(port: int, name: str) -> None:
    """``CREATE DATABASE name`` unless it exists (PostgreSQL has no IF NOT EXISTS for it)."""
    literal = name.replace("'", "''")
    rows, _ = pg_query(
        port,
        f"SELECT 1 FROM pg_database WHERE datname = '{literal}'",
        user=SUPERUSER,
        database="postgres",
    )
    if not rows:
        ident = name.replace('"', '""')
        pg_query(port, f'CREATE DATABASE "{ident}"', user=SUPERUSER, database="postgres")
