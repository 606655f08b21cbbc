"""Redis for the embedded stack: loopback only, readiness by PING, persistence by an
append-only file in its directory, so acknowledged writes survive a kill -9 and restart.

``appendonly yes`` with ``appendfsync always`` (the default; ``StackConfig.redis_appendfsync``
chooses another): Redis writes and fsyncs every write to the AOF before it replies, so a
kill -9 loses nothing that was acknowledged (and neither would an OS crash). ``everysec``
may lose up to a second or two: while a background fsync is slow it postpones the write
itself and replies anyway. ``no`` writes before replying (a process kill loses nothing,
the page cache survives it) but an OS crash may. No RDB snapshots (``save ""``).

A stack's first start begins empty (``start(fresh=True)`` removes an older run's AOF);
``restart()`` replays it. ``remove_data()`` deletes it (teardown, unless ``keep_data``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nightly_pipeline.testbed.stack.binaries import RedisBinary
from nightly_pipeline.testbed.stack.probes import HOST, redis_ping
from nightly_pipeline.testbed.stack.procs import ManagedProcess

log = logging.getLogger(__name__)
APPENDFSYNC = ("always", "everysec", "no")
_AOF = "appendonly.aof"


@dataclass(frozen=True)
class RedisSettings:
    port: int
    maxclients: int = 10000
    appendfsync: str = "always"
    ready_timeout_s: float = 30.0
    stop_timeout_s: float = 10.0


class RedisServer:
    def __init__(
        self,
        binary: RedisBinary,
        home: Path,
        settings: RedisSettings,
        log_dir: Path,
        on_spawn: Callable[[ManagedProcess], None] | None = None,
    ):
        self.binary = binary
        self._on_spawn = on_spawn
        self.home = home
        self.settings = settings
        self.log_dir = log_dir
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.settings.port}/0"

    def start(self, *, fresh: bool = False) -> None:
        """Spawn redis-server; ``wait_ready()`` then waits for its PING (which answers
        only once the AOF is loaded). ``fresh``: remove an earlier AOF first."""
        self.home.mkdir(parents=True, exist_ok=True)
        if fresh and self._data_files():
            log.info("removing an earlier run's Redis append-only file in %s", self.home)
            self.remove_data()
        conf = self.home / "redis.conf"
        conf.write_text(config_text(self.settings, self.home, HOST))
        self.process = ManagedProcess(
            "redis",
            [str(self.binary.path), str(conf)],
            self.log_dir / "redis.log",
            cwd=self.home,
            on_spawn=self._on_spawn,
        )
        self.process.start()

    def wait_ready(self) -> None:
        assert self.process is not None
        self.process.wait_ready(
            lambda: redis_ping(self.settings.port), self.settings.ready_timeout_s, "PING answered"
        )

    def restart(self) -> None:
        """Start again (after ``stop()``) on the same port and AOF; wait until ready."""
        self.start()
        self.wait_ready()

    def stop(self) -> list[int]:
        return self.process.stop(self.settings.stop_timeout_s) if self.process else []

    def remove_data(self) -> None:
        for path in self._data_files():
            path.unlink(missing_ok=True)

    def _data_files(self) -> list[Path]:
        if not self.home.is_dir():
            return []
        names = (_AOF, "temp-*.aof", "temp-*.rdb", "dump.rdb")
        return [p for pattern in names for p in self.home.glob(pattern)]


def config_text(settings: RedisSettings, home: Path, bind: str) -> str:
    """``redis.conf`` (the persistence of the module docstring); the Docker platform's
    container runs the same, bound to its network."""
    return "\n".join(
        [
            f"bind {bind}",
            f"port {settings.port}",
            "protected-mode no",
            "daemonize no",
            'save ""',
            "appendonly yes",
            f'appendfilename "{_AOF}"',
            f"appendfsync {settings.appendfsync}",
            "aof-load-truncated yes",
            f"dir {home}",
            'logfile ""',
            f"maxclients {settings.maxclients}",
            "",
        ]
    )
